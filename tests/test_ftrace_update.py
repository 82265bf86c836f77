"""Two ftrace updates of one callsite, under text_mutex or not (scenarios/ftrace.py,
kernels/ftrace_update.S), and the not-linearizable check they are judged by."""

from __future__ import annotations

import pytest

from testbed.findings import OracleName
from testbed.machine import Machine
from testbed.scenario import Session, load_scenario
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import RandomWalk

NL = OracleName.NOT_LINEARIZABLE


def _search(name: str, memory: str) -> tuple[set[str], set[object], Session]:
    s = Session(load_scenario(name)(), memory=memory)
    sc = s.scenario

    def observe(m: Machine) -> tuple[int, int, int, int]:
        return sc._final(m)  # type: ignore[attr-defined,no-any-return]

    res = search(s, SearchBounds(2, 1, max_seconds=300), observe=observe)
    assert res.covered
    return {f.oracle for f, _ in res.findings.values()}, set(res.observations), s


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_under_text_mutex_the_outcomes_are_exactly_the_two_serial_orders(memory: str) -> None:
    """The check's serial outcomes are not guessed: the locked updates reach them and
    nothing else, under both data models."""
    found, outcomes, s = _search("ftrace_update_locked", memory)
    assert found == set()
    assert outcomes == s.scenario._serial(s.machine)  # type: ignore[attr-defined]


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_without_it_an_update_is_lost(memory: str) -> None:
    found, outcomes, s = _search("ftrace_update_no_mutex", memory)
    assert found == {NL}
    serial = s.scenario._serial(s.machine)  # type: ignore[attr-defined]
    assert serial < outcomes  # the serial ones, and others
    m = s.machine
    bl_nop_ops = [o for o in outcomes if o not in serial]
    call = next(o for o in serial if o[3] == -22)[0]  # the BL
    # an enabled callsite whose literal says ftrace_nop_ops: the tracer's calls lost
    assert any(o[0] == call and o[1] == m.addr("ftrace_nop_ops") for o in bl_nop_ops)


def test_the_finding_replays_and_shrinks() -> None:
    s = Session(load_scenario("ftrace_update_no_mutex")())
    r = next(r for r in (s.run(RandomWalk(seed)) for seed in range(300))
             if any(f.oracle == NL for f in r.findings))
    target = next(f for f in r.findings if f.oracle == NL)
    res = shrink(s, r.schedule, oracle=NL, addr=target.addr, max_runs=400)
    assert len(res.shrunk.decisions) <= len(r.schedule.decisions)
    assert any(f.oracle == NL for f in s.replay(res.shrunk).findings)
