"""kprobes' XOL slot and FEAT_ExS (``scenarios/kprobes.py``, ``kernels/kprobes.S``)."""

from __future__ import annotations

import pytest

from testbed.findings import OracleName
from testbed.scenario import Session, load_scenario
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import RandomWalk

CMODX, XOL = OracleName.CMODX_VIOLATION, OracleName.KPROBE_XOL


def _session(name: str, memory: str = "sc", oracles: list[str] | None = None,
             **params: int) -> Session:
    cls = load_scenario(name)
    return Session(cls(), params={**cls.search_scope, **params}, memory=memory,
                   oracles=oracles)


def _search(name: str, memory: str = "sc", **params: int) -> set[str]:
    res = search(_session(name, memory, **params), SearchBounds(2, 1, max_seconds=300))
    assert res.covered and res.finals > 0
    return {f.oracle for f, _ in res.findings.values()}


@pytest.mark.parametrize(("name", "params", "found"), [
    ("kprobe_xol", {}, set()),
    ("kprobe_xol", {"exs": 0}, set()),  # stop_machine's ISB and fetch order suffice
    ("kprobe_xol_nosync", {}, set()),  # the BRK exception synchronizes
    ("kprobe_xol_nosync_noexs", {}, {CMODX}),
    ("kprobe_xol_nosync_noexs", {"exs": 1}, set()),  # the same CPU with EIS and EOS
])
def test_the_xol_slot_within_two_preemptions(name: str, params: dict[str, int],
                                             found: set[str]) -> None:
    assert _search(name, **params) == found


def test_under_arm_too() -> None:
    assert _search("kprobe_xol_nosync_noexs", "arm") == {CMODX}


def _hit(session: Session, oracle: str) -> object:
    for seed in range(600):
        r = session.run(RandomWalk(seed))
        if any(f.oracle == oracle for f in r.findings):
            return r
    raise AssertionError(f"no {oracle} in 600 schedules")


def test_with_the_cmodx_oracle_off_the_stale_slot_returns_the_wrong_value() -> None:
    """The scenario's own check sees what the stale slot did: kprobe_target(i) returned
    0 (the old MOV X0, #-1 stepped in place of the probed NOP, then the ADD)."""
    cls = load_scenario("kprobe_xol_nosync_noexs")
    others = [o.name for o in Session(cls()).oracles if o.name != CMODX]
    session = Session(cls(), oracles=others)
    r = _hit(session, XOL)
    xol = next(f for f in r.findings if f.oracle == XOL)  # type: ignore[attr-defined]
    m = session.machine
    assert "returned 0x0" in xol.message and m.read_u64("kprobe_wrong") == 0
    assert m.read_u64(m.addr("kprobe_wrong") + 8) >= 1
    assert session.machine.image.symbolize(xol.addr) == "kprobe_slot1"
    clean = Session(load_scenario("kprobe_xol_nosync")(), oracles=others)
    for seed in range(300):
        assert clean.run(RandomWalk(seed)).findings == []


def test_the_broken_twins_finding_replays_and_shrinks() -> None:
    session = Session(load_scenario("kprobe_xol_nosync_noexs")())
    r = _hit(session, CMODX)
    target = next(f for f in r.findings if f.oracle == CMODX)  # type: ignore[attr-defined]
    res = shrink(session, r.schedule, oracle=CMODX, addr=target.addr,  # type: ignore[attr-defined]
                 max_runs=400)
    assert len(res.shrunk.decisions) <= len(r.schedule.decisions)  # type: ignore[attr-defined]
    again = session.replay(res.shrunk)
    assert any(f.oracle == CMODX and f.addr == target.addr for f in again.findings)
    assert session.machine.image.symbolize(target.addr) == "kprobe_slot1"
