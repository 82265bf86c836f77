"""The command line: version, help, run -> reproducer -> replay, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import __version__
from testbed.cli import main


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"testbed {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("list", "run", "replay", "demo", "disasm"):
        assert f"    {command}" in out


def test_run_saves_a_reproducer_that_replays(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nosync_stale", "--schedules", "40", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[stale-after-flush]" in out and "reproduce: testbed replay" in out
    saved = sorted(tmp_path.glob("nosync_stale-stale-after-flush-*.json"))
    assert len(saved) == 1
    assert main(["replay", str(saved[0]), "--timeline"]) == 1  # the finding reproduces
    out = capsys.readouterr().out
    assert "[stale-after-flush]" in out and "<== FINDING" in out
    assert main(["run", "nosync_isb", "--schedules", "40", "--out", str(tmp_path)]) == 0


def test_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "jump_label_nosync", "--schedules", "300", "--seed", "1", "--json",
                 "--out", str(tmp_path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "jump_label_nosync" and doc["schedules_run"] == 300
    assert doc["decisions"] > 0 and doc["instructions"] > doc["decisions"]
    f = doc["findings"][0]
    assert f["oracle"] == "static-key-incoherence" and f["symbol"].startswith("jl_")
    assert Path(f["reproducer"]).is_file()
    assert main(["replay", f["reproducer"]]) == 1


def test_demo_lists_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "nosync-stale" in capsys.readouterr().out
    assert main(["demo", "nosync-stale", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert any(line.lstrip(" 0123456789").startswith("@  nop") and
               line.endswith("patch_site  <== OLD, stale") for line in out.splitlines())
    assert "!! stale-after-flush  <== FINDING" in out
    saved = next(tmp_path.glob("nosync_stale-demo-*.json"))
    assert f"Replay it: testbed replay {saved} --timeline" in out


def test_errors_are_one_line_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  nope\n}\n")
    cases = [["replay", str(bad)], ["run", "no_such_scenario"], ["demo", "nope"]]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "testbed", *argv],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 2, argv
        assert proc.stderr.startswith("testbed: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "testbed", "replay", str(bad)],
                          capture_output=True, text=True, check=False)
    assert f"{bad}:2: not JSON" in proc.stderr


def test_run_takes_scenario_parameters(tmp_path: Path) -> None:
    """``testbed run --set``: the runs take the parameter, and each reproducer records it
    (with the private data it turns on) and replays."""
    out = tmp_path / "found"
    assert main(["run", "jump_label_nosync", "--set", "private_logs=1", "--memory", "sc",
                 "--schedules", "60", "--no-db", "--out", str(out)]) == 1
    repro = sorted(out.glob("*.json"))[0]
    config = json.loads(repro.read_text())["config"]
    assert config["params"] == {"private_logs": 1} and config["private"] is True
    assert main(["replay", str(repro)]) == 1
