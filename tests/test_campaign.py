"""Fuzz campaigns: deterministic per-run seeds, findings on disk before they are reported,
resume after SIGINT and SIGKILL, worker crashes survived, Dask = local, failure database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.campaign import FAULT_ENV, Campaign, CampaignError, CampaignSpec, derive_seed
from testbed.cli import main
from testbed.faildb import FailureDB
from testbed.runs import replay_known
from testbed.scenario import Session, load_scenario
from testbed.schedule import Schedule
from testbed.strategies import RandomWalk


def campaign(out: Path, scenario: str = "nosync_stale", **kw: object) -> Campaign:
    c = Campaign(out)
    c.create(CampaignSpec(scenario, **kw))  # type: ignore[arg-type]
    c.on_finding = lambda *a: None
    return c


def batch_lines(out: Path) -> list[dict[str, object]]:
    lines = []
    for line in (out / "batches.jsonl").read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line (a kill)
            lines.append(json.loads(line))
    return lines


def signatures(out: Path) -> set[str]:
    return {json.loads(p.read_text())["meta"]["signature"]
            for p in (out / "findings").glob("*.json")}


def test_run_seeds_are_deterministic_and_independent_of_batching() -> None:
    assert derive_seed(7, 3) == derive_seed(7, 3)
    seeds = {derive_seed(7, i) for i in range(10_000)} | {derive_seed(8, i) for i in range(100)}
    assert len(seeds) == 10_100 and all(0 <= s < 2**63 for s in seeds)


def test_a_campaign_finds_records_and_any_run_can_be_recreated_alone(tmp_path: Path) -> None:
    c = campaign(tmp_path / "c", strategy="pct", batch=50)
    stats = c.run(schedules=300, workers=2)
    assert stats["state"] == "done" and stats["schedules"] == 300 and stats["batches"] == 6
    assert stats["findings"] >= 1 and stats["decisions"] > 0 and stats["instructions"] > 0
    assert stats["schedules_per_second"] > 0 and stats["first_finding"]["schedules"] >= 1
    saved = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert saved["schedules"] == 300
    # A reproducer replays to its finding, and its run re-created alone from the campaign
    # seed gives the very same schedule.
    repro = next((tmp_path / "c" / "findings").glob("*.json"))
    sched = Schedule.load(repro)
    assert main(["replay", str(repro)]) == 1
    run = sched.meta["campaign"]["run"]
    spec = c.spec
    assert spec is not None and spec.k > 0  # PCT's k was calibrated
    session = Session(load_scenario("nosync_stale")())
    assert session.run(spec.strategy_for(run)).schedule.decisions == sched.decisions


def test_worker_count_does_not_change_what_is_found(tmp_path: Path) -> None:
    one = campaign(tmp_path / "one", strategy="random", batch=40).run(schedules=200, workers=1)
    two = campaign(tmp_path / "two", strategy="random", batch=40).run(schedules=200, workers=2)
    assert (one["decisions"], one["instructions"]) == (two["decisions"], two["instructions"])
    assert signatures(tmp_path / "one") == signatures(tmp_path / "two")


@pytest.mark.parametrize("fault", ["segv", "raise"])
def test_a_crashing_worker_loses_only_its_batch(tmp_path: Path, fault: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    problems: list[str] = []
    monkeypatch.setenv(FAULT_ENV, f"{fault}:2:once")  # fails once, then works
    c = campaign(tmp_path / "once", batch=30)
    c.on_problem = problems.append
    stats = c.run(schedules=180, workers=2)
    assert stats["schedules"] == 180 and stats["lost_batches"] == []
    assert 2 in stats["retried_batches"] and any("batch 2" in p for p in problems)
    monkeypatch.setenv(FAULT_ENV, f"{fault}:2")  # fails every time
    c = campaign(tmp_path / "always", batch=30)
    c.on_problem = problems.append
    stats = c.run(schedules=180, workers=2)
    assert stats["lost_batches"] == [2] and stats["schedules"] == 150
    assert any("lost" in p for p in problems)
    indices = [rec["index"] for rec in batch_lines(tmp_path / "always")]
    assert sorted(indices) == list(range(6))  # the lost one is recorded, not redone


def _interruptible() -> None:
    # A child inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt
    # handler, so the campaign never stops. Twice in CI (2026-12-01) the fuzz process
    # ignored SIGINT as it does when started that way (reproduced by ignoring it here);
    # the test process may have inherited or been left with an ignored SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed", "fuzz", "nosync_stale", "--out", str(out),
         "--workers", "2", "--batch", "40", "--schedules", "400000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_interruptible)


def _wait_for_batches(out: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        path = out / "batches.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the campaign made no progress")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_resume_after_a_kill_loses_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "c"
    proc = _start(out)
    _wait_for_batches(out, 4, proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "--resume" in stderr
        assert json.loads((out / "stats.json").read_text())["state"] == "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
    before = signatures(out)
    reported = {line.split("testbed replay ")[1] for line in stdout.splitlines()
                if "testbed replay " in line}
    assert before and all(Path(p).exists() for p in reported)  # nothing reported is lost
    done = {rec["index"] for rec in batch_lines(out)}
    total = 40 * (max(done) + 3)  # resume to a target just past what was done
    rc = main(["fuzz", "nosync_stale", "--out", str(out), "--resume", "--schedules",
               str(total), "--workers", "2"])
    assert rc == 1
    indices = [rec["index"] for rec in batch_lines(out)]
    assert sorted(indices) == list(range(total // 40))  # each batch once, none redone
    assert before <= signatures(out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["schedules"] == total and stats["state"] == "done"


def test_resume_refuses_another_kernel_and_bad_folders(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    campaign(out, batch=20).run(schedules=40, workers=1)
    assert main(["fuzz", "nosync_stale", "--out", str(out), "--schedules", "40"]) == 2
    assert "--resume" in capsys.readouterr().err  # a campaign is already there
    doc = json.loads((out / "campaign.json").read_text())
    doc["image"] = "0" * 64
    (out / "campaign.json").write_text(json.dumps(doc))
    with pytest.raises(CampaignError, match="kernel image 000000000000"):
        Campaign(out).load()
    assert main(["fuzz", "nosync_stale", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no campaign to resume" in capsys.readouterr().err
    assert main(["fuzz", "nosync_stale", "--out", str(tmp_path / "x")]) == 2
    assert "--schedules" in capsys.readouterr().err


def test_dask_finds_what_local_workers_find(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    local = campaign(tmp_path / "local", batch=50).run(schedules=300, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = campaign(tmp_path / "dask", batch=50).run(schedules=300,
                                                           dask=cluster.scheduler_address)
    assert remote["backend"] == "dask" and remote["schedules"] == 300
    assert (remote["decisions"], remote["instructions"]) == \
        (local["decisions"], local["instructions"])
    assert signatures(tmp_path / "dask") == signatures(tmp_path / "local") != set()


def test_the_failure_database_is_tried_first_and_pruned(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_DB", str(tmp_path / "db"))
    out = str(tmp_path / "found")
    assert main(["run", "nosync_stale", "--schedules", "30", "--out", out]) == 1
    stored = list((tmp_path / "db" / "failures" / "nosync_stale").glob("*.json"))
    assert stored
    capsys.readouterr()
    # No new schedules at all: the known failure alone is found again.
    assert main(["run", "nosync_stale", "--schedules", "0", "--out", out]) == 1
    assert "known failure" in capsys.readouterr().out
    # A stored schedule that no longer fails (here: one that never did) is pruned.
    db = FailureDB(tmp_path / "db")
    session = Session(load_scenario("nosync_isb")())
    path = db.save(session.run(RandomWalk(3)).schedule)
    assert path is not None and path.exists()
    assert list(replay_known(session, db, warn=print)) == [] and not path.exists()
    # Without the database, no schedules is nothing to do: refused as bad usage.
    assert main(["run", "nosync_stale", "--schedules", "0", "--no-db", "--out", out]) == 2


def test_fuzz_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "c"
    proc = subprocess.run(
        [sys.executable, "-m", "testbed", "fuzz", "jump_label_nosync", "--workers", "2",
         "--schedules", "400", "--out", str(out)], capture_output=True, text=True,
        env={**os.environ, "TESTBED_DB": "off"}, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "static-key-incoherence" in proc.stdout and "schedules/s" in proc.stdout
    assert "\x1b[" not in proc.stdout + proc.stderr  # no progress bar off a terminal
    stats = json.loads((out / "stats.json").read_text())
    assert stats["schedules"] == 400 and stats["findings_by_oracle"]["static-key-incoherence"]


def test_a_campaign_run_is_recreated_by_testbed_run(tmp_path: Path) -> None:
    c = campaign(tmp_path / "c", scenario="jump_label_nosync", strategy="pct", batch=20)
    c.run(schedules=40, workers=1)
    repro = Schedule.load(next((tmp_path / "c" / "findings").glob("*.json")))
    spec = c.spec
    assert spec is not None
    seed = derive_seed(spec.seed, repro.meta["campaign"]["run"])
    out = tmp_path / "again"
    assert main(["run", "jump_label_nosync", "--strategy", "pct", "--seed", str(seed),
                 "--k", str(spec.k), "--schedules", "1", "--out", str(out), "--no-db"]) == 1
    again = Schedule.load(next(out.glob("*.json")))
    assert again.decisions == repro.decisions


def test_a_timed_campaign_and_a_resume_that_remembers_its_target(tmp_path: Path) -> None:
    stats = campaign(tmp_path / "t", batch=50).run(seconds=1.0, workers=1)
    assert stats["state"] == "done" and stats["schedules"] >= 50
    assert stats["schedules"] % 50 == 0  # whole batches
    out = tmp_path / "c"
    proc = _start(out)  # asked for 400000 schedules
    _wait_for_batches(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert json.loads((out / "stats.json").read_text())["target_schedules"] == 400000
    c = Campaign(out)
    c.load()
    assert c.target == 400000


def test_on_a_terminal_a_progress_bar_shows_rate_and_findings(tmp_path: Path) -> None:
    import pty
    import re
    import select
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed", "fuzz", "nosync_stale", "--workers", "1",
         "--schedules", "3000", "--batch", "100", "--out", str(tmp_path / "c")],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TESTBED_DB": "off"})
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    assert "\x1b[" in seen.decode(errors="replace")  # it drew on the terminal
    assert re.search(r"3,000 schedules\s+[\d,]+/s\s+\d+ findings", text), text[-2000:]
