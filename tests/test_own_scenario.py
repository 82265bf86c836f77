"""A scenario of one's own, kept outside the project with its own ``.S`` beside it, is
first class: run, found, replayed with the command printed, shrunk, searched, fuzzed
into ``OUT/findings/`` and collected by pytest; and its reproducers never make the
testbed import the file unless the user names it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "own_scenario"


def cli(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESTBED_DB": str(cwd / "db")}
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def printed(out: str, prefix: str) -> list[str]:
    """The command a line of ``out`` prints after ``prefix``, as words."""
    line = next(ln for ln in out.splitlines() if ln.strip().startswith(prefix))
    return shlex.split(line.strip()[len(prefix):].strip())


def test_an_out_of_tree_scenario_is_first_class(tmp_path: Path) -> None:
    mine = tmp_path / "my"
    mine.mkdir()
    for name in ("ftrace_race.py", "ftrace_race.S"):
        shutil.copy(DATA / name, mine / name)
    work = tmp_path / "work"
    work.mkdir()
    scen = "../my/ftrace_race.py"

    # run: found, with a reproducer and a replay command that names the file.
    run = cli(work, "run", f"{scen}:ftrace_nolock", "--schedules", "40", "--out", "found")
    assert run.returncode == 1, run.stderr
    assert "[ftrace-stale]" in run.stdout
    cmd = printed(run.stdout, "reproduce:")
    assert cmd[:2] == ["testbed", "replay"] and "--scenario" in cmd
    repro = work / cmd[2]
    doc = json.loads(repro.read_text())
    assert doc["scenario"] == "ftrace_nolock"
    assert doc["source"]["file"] == str((mine / "ftrace_race.py").resolve())
    assert len(doc["source"]["sha256"]) == 64

    # replay, exactly as printed.
    rep = cli(work, *cmd[1:])
    assert rep.returncode == 1, rep.stderr
    assert "[ftrace-stale]" in rep.stdout

    # without the file named: refused in one line that says what to type.
    bare = cli(work, "replay", cmd[2])
    assert bare.returncode == 2 and bare.stderr.count("\n") == 1
    assert "--scenario" in bare.stderr and "Traceback" not in bare.stderr

    # shrink, then the printed replay command of the shrunk schedule.
    sh = cli(work, "shrink", cmd[2], "-o", "small.json", "--scenario", scen,
                 "--max-runs", "150")
    assert sh.returncode == 0, sh.stderr
    again = cli(work, *printed(sh.stdout, "replay it:")[1:])
    assert again.returncode == 1 and "[ftrace-stale]" in again.stdout

    # search: the bounded search finds it on the scenario's search scope.
    se = cli(work, "search", scen, "--preemptions", "1", "--out", "searched")
    assert se.returncode == 1, se.stderr
    assert list((work / "searched").glob("ftrace_nolock-*.json"))

    # fuzz: reproducers go into OUT/findings/, named after the scenario, not its path.
    fz = cli(work, "fuzz", scen, "--schedules", "60", "--batch", "20", "--workers", "1",
                 "--out", "camp")
    assert fz.returncode == 1, fz.stderr
    found = list((work / "camp" / "findings").glob("*.json"))
    assert found and all(p.name.startswith("ftrace_nolock-ftrace-stale-") for p in found)
    assert cli(work, *printed(fz.stdout, "reproduce:")[1:]).returncode == 1
    # and the campaign resumes only with the file named.
    res = cli(work, "fuzz", scen, "--schedules", "80", "--out", "camp", "--resume",
                  "--workers", "1")
    assert res.returncode == 1, res.stderr

    # pytest collects the file when it is named on the command line.
    py = subprocess.run([sys.executable, "-m", "pytest", str(mine / "ftrace_race.py"),
                         "-p", "no:xdist", "-p", "no:cacheprovider",
                         "--testbed-schedules", "50"], cwd=work, capture_output=True,
                        text=True, timeout=240, check=False,
                        env={**os.environ, "TESTBED_DB": "off"})
    assert py.returncode == 0, py.stdout + py.stderr
    assert "1 passed" in py.stdout


def test_a_changed_scenario_file_is_refused(tmp_path: Path) -> None:
    for name in ("ftrace_race.py", "ftrace_race.S"):
        shutil.copy(DATA / name, tmp_path / name)
    run = cli(tmp_path, "run", "ftrace_race.py", "--schedules", "40", "--out", "f",
                  "--no-db")
    assert run.returncode == 1
    cmd = printed(run.stdout, "reproduce:")
    with open(tmp_path / "ftrace_race.py", "a") as f:
        f.write("\n# changed\n")
    rep = cli(tmp_path, *cmd[1:])
    assert rep.returncode == 2 and "sha256" in rep.stderr
    assert rep.stderr.count("\n") == 1


def test_configured_folders_are_collected(tmp_path: Path) -> None:
    races = tmp_path / "races"
    races.mkdir()
    for name in ("ftrace_race.py", "ftrace_race.S"):
        shutil.copy(DATA / name, races / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestbed_scenarios = races\n")
    py = subprocess.run([sys.executable, "-m", "pytest", "races", "-p", "no:xdist",
                         "-p", "no:cacheprovider", "--testbed-schedules", "50"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=240,
                        check=False, env={**os.environ, "TESTBED_DB": "off"})
    assert py.returncode == 0, py.stdout + py.stderr
    assert "1 passed" in py.stdout


def test_a_raising_scenario_is_an_error_not_a_failure(tmp_path: Path) -> None:
    (tmp_path / "ftrace_race.S").write_text((DATA / "ftrace_race.S").read_text())
    src = (DATA / "ftrace_race.py").read_text().replace(
        "        raw = m.read(", "        raise ZeroDivisionError('oops')\n        raw = m.read(")
    (tmp_path / "broken.py").write_text(src)
    py = subprocess.run([sys.executable, "-m", "pytest", "broken.py", "-p", "no:xdist",
                         "-p", "no:cacheprovider", "--testbed-schedules", "5"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=240,
                        check=False, env={**os.environ, "TESTBED_DB": "off"})
    assert "1 error" in py.stdout and "failed" not in py.stdout, py.stdout
    assert "ZeroDivisionError" in py.stdout
    proc = cli(tmp_path, "run", "broken.py", "--schedules", "3", "--no-db")
    assert proc.returncode == 3
    assert "broken.py:" in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
