"""Shrinking: smaller schedules that still give the same finding, and replay strictly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.cli import main
from testbed.scenario import Session, load_scenario
from testbed.schedule import Decision, DecisionKind
from testbed.shrink import LenientReplay, shrink
from testbed.strategies import RandomWalk


def failing(name: str, oracle: str) -> tuple[Session, object]:
    session = Session(load_scenario(name)())
    for seed in range(300):
        result = session.run(RandomWalk(seed, p_model=0.2))
        if any(f.oracle == oracle for f in result.findings):
            return session, result
    raise AssertionError(f"no {oracle} finding to shrink")


def test_lenient_replay_skips_impossible_decisions_and_completes() -> None:
    session = Session(load_scenario("nosync_isb")())
    junk = [Decision(DecisionKind.IRQ, 1), Decision(DecisionKind.CATCH_UP, 0),
            Decision(DecisionKind.STEP, 1)]
    result = session.run(LenientReplay(junk))
    assert result.finished and result.findings == []
    assert result.schedule.decisions[0] == Decision(DecisionKind.STEP, 1)


def test_shrunk_schedules_keep_the_finding_and_replay_strictly() -> None:
    for name, oracle in (("cmodx_violation", "cmodx-violation"),
                         ("nosync_stale", "stale-after-flush")):
        session, result = failing(name, oracle)
        original = result.schedule  # type: ignore[attr-defined]
        target = next(f for f in result.findings if f.oracle == oracle)  # type: ignore[attr-defined]
        res = shrink(session, original, oracle=oracle, addr=target.addr)
        assert len(res.shrunk.decisions) <= len(original.decisions)
        again = session.replay(res.shrunk)  # strict: every decision must be possible
        assert any(f.oracle == oracle and f.addr == target.addr for f in again.findings)


def test_shrink_makes_model_heavy_schedules_smaller() -> None:
    session, result = failing("nosync_stale", "stale-after-flush")
    original = result.schedule  # type: ignore[attr-defined]
    res = shrink(session, original)
    model_before = sum(d.is_model for d in original.decisions)
    model_after = sum(d.is_model for d in res.shrunk.decisions)
    assert model_after <= model_before
    assert len(res.shrunk.decisions) < len(original.decisions) or model_before == 0


def test_shrink_command(tmp_path: Path) -> None:
    out = tmp_path / "found"
    assert main(["run", "cmodx_violation", "--schedules", "50", "--out", str(out)]) == 1
    repro = next(out.glob("*.json"))
    small = tmp_path / "small.json"
    assert main(["shrink", str(repro), "-o", str(small)]) == 0
    assert main(["replay", str(small)]) == 1  # the finding reproduces from the shrunk file
    session = Session(load_scenario("nosync_isb")())
    nofinding = tmp_path / "nofinding.json"
    session.run(RandomWalk(1)).schedule.save(nofinding)
    proc = subprocess.run([sys.executable, "-m", "testbed", "shrink", str(nofinding), "-o",
                           str(tmp_path / "x.json")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and "produces no finding" in proc.stderr


def test_a_found_brk_single_slot_schedule_shrinks_and_replays() -> None:
    session, result = failing("brk_single_slot", "brk-emulation")
    original = result.schedule  # type: ignore[attr-defined]
    target = next(f for f in result.findings  # type: ignore[attr-defined]
                  if f.oracle == "brk-emulation")
    res = shrink(session, original, oracle="brk-emulation", addr=target.addr, max_runs=300)
    assert len(res.shrunk.decisions) < len(original.decisions)
    assert res.preemptions[1] <= res.preemptions[0]
    assert res.model_events[1] <= res.model_events[0]
    again = session.replay(res.shrunk)  # strict: every decision possible, same finding
    assert any(f.oracle == "brk-emulation" and f.addr == target.addr for f in again.findings)


def test_fewer_preemptions_at_the_same_length_is_progress() -> None:
    # A B A with the finding kept either way: the shrinker prefers A A B.
    session, result = failing("nosync_stale", "stale-after-flush")
    res = shrink(session, result.schedule)  # type: ignore[attr-defined]
    assert res.preemptions[1] <= res.preemptions[0]
    assert res.shrunk.meta["preemptions"] == res.preemptions[1]
    from testbed.search import preemptions
    assert preemptions(session.machine, res.shrunk.decisions) == res.preemptions[1]
