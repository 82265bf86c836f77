"""The pure path's walker (``testbed/walker.py``) and its code hooks installed as code
first runs (``cpu._block_hook``, ``Stop.HOOKED``) must leave random walks exactly as the
plain loop (``RandomWalk.choose`` and ``Machine.apply``) and the compiled path leave
them: the same schedules, traces, events, findings and final machine states.

Every scenario runs the same seeds with the walker and without it (``TESTBED_WALKER=0``),
both on the pure path (``TESTBED_FASTPATH=0``); then the pure path is compared with the
compiled one (when it was built), which hooks code as it first runs too, in C; and
runs that stop to hook code with the same runs with every hook installed up front.
Runs start on fresh sessions, so that the first runs hook their code as they go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import corpus
import pytest

from testbed import fastpath
from testbed.cpu import ranges
from testbed.scenario import Session, list_scenarios, load_scenario
from testbed.schedule import step
from testbed.strategies import RandomWalk, Replay

SEEDS = range(6)
HOP = str(Path(__file__).parent / "data" / "private" / "private_hop.py")


def _runs(name: str, monkeypatch: pytest.MonkeyPatch, *, walker: bool = True,
          compiled: bool = False, seeds: range = SEEDS, budget: int = 200_000,
          max_decisions: int | None = None, memory: str = "sc", up_front: bool = False,
          **walk: float) -> tuple[list[dict[str, Any]], int]:
    """Each seed's digests (and what the CPUs hold at the end), and the decisions a
    walker took, on a fresh session (``up_front``: with a code hook on every visible
    instruction of the text before the first run, as before code was hooked as it ran)."""
    monkeypatch.setenv("TESTBED_FASTPATH", "1" if compiled else "0")
    monkeypatch.setenv("TESTBED_WALKER", "1" if walker else "0")
    s = Session(load_scenario(name)(), memory=memory, budget=budget)
    assert s.machine.fastpath == compiled
    if up_front:
        for c in s.machine.cpus:
            for lo, hi in ranges(sorted(s.machine.static_kinds)):
                c.code_hook(lo, hi)
    out = []
    for seed in seeds:
        r = s.run(RandomWalk(seed, **walk), max_decisions=max_decisions)
        out.append({"schedule": r.schedule.decisions, **corpus.run_digests(r, s.machine),
                    "cpus": [(c.pc, c.last_cse, c.irq_masked, c.spun, c.parked, c.state)
                             for c in s.machine.cpus]})
    return out, s.machine.walked


@pytest.mark.parametrize("name", sorted(list_scenarios()))
def test_the_python_walker_takes_the_decisions_the_plain_loop_takes(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, walked = _runs(name, monkeypatch)
    slow, none = _runs(name, monkeypatch, walker=False)
    assert fast == slow
    assert walked > 0 and none == 0


@pytest.mark.parametrize("walk", [{"p_model": 0.4, "p_irq": 0.1}, {"p_model": 0.0, "p_irq": 0.0},
                                  {"p_model": 0.0, "p_irq": 1.0}, {"p_model": 1.0, "p_irq": 0.0}])
def test_model_choices_and_interrupts_are_drawn_as_the_plain_loop_draws_them(
        walk: dict[str, float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Other probabilities move where the draws fall: an IRQ, a model choice, or a model
    draw that finds no choice and steps a CPU (which the walker then performs)."""
    for name in ("stop_machine_patch", "jump_label_kick", "missing_dc"):
        fast, walked = _runs(name, monkeypatch, **walk)
        slow, _ = _runs(name, monkeypatch, walker=False, **walk)
        assert fast == slow
        assert walked > 0


@pytest.mark.parametrize(("name", "budget"), [("stop_machine_patch", 12),
                                              ("stop_machine_patch", 21),
                                              ("brk_refcount_sync", 15),
                                              ("brk_refcount_sync", 30)])
def test_a_run_out_of_budget_is_the_same_liveness_finding(
        name: str, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of a few dozen instructions ends runs in liveness findings; a run that
    stopped to hook a block (``Stop.HOOKED``) must go on with the budget it had left,
    as the compiled path's (all hooked up front) does."""
    fast, walked = _runs(name, monkeypatch, budget=budget, seeds=range(4))
    slow, _ = _runs(name, monkeypatch, walker=False, budget=budget, seeds=range(4))
    assert fast == slow
    assert walked > 0
    assert any(f[0] == "liveness" and run["decisions"] > 5 for run in fast
               for f in run["findings"])
    if fastpath.available():
        compiled, _ = _runs(name, monkeypatch, compiled=True, budget=budget, seeds=range(4))
        assert fast == compiled


@pytest.mark.parametrize("compiled", [False, True], ids=["pure", "compiled"])
@pytest.mark.parametrize(("name", "budget"), [("jump_label_nosync", 12),
                                              ("stop_machine_patch", 21),
                                              ("brk_refcount_sync", 15)])
def test_runs_that_stop_to_hook_code_run_as_with_every_hook_up_front(
        name: str, budget: int, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the scheme before it (the corpus checks the same at the usual budget):
    a run that stops to hook a block and starts again from it keeps its skip and the
    budget it had left, on either path."""
    if compiled and not fastpath.available():
        pytest.skip("the compiled fast path was not built here")
    lazy, _ = _runs(name, monkeypatch, compiled=compiled, budget=budget, seeds=range(4))
    eager, _ = _runs(name, monkeypatch, compiled=compiled, budget=budget, seeds=range(4),
                     up_front=True)
    assert lazy == eager
    assert any(f[0] == "liveness" for run in lazy for f in run["findings"])


@pytest.mark.parametrize("memory", ["sc", "arm"])
@pytest.mark.parametrize("compiled", [False, True], ids=["pure", "compiled"])
def test_a_run_started_again_from_a_hooked_block_still_stops_where_it_began(
        memory: str, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU1's run starts at a visible load-acquire (let through once: the skip), hooks
    the block of private accesses it branches to, starts again from that block and
    comes round to the acquire: it must stop there, the skip spent (a restart that
    restored the skip let the acquire through twice and counted 5)."""
    if compiled and not fastpath.available():
        pytest.skip("the compiled fast path was not built here")
    monkeypatch.setenv("TESTBED_FASTPATH", "1" if compiled else "0")
    s = Session(load_scenario(HOP)(), memory=memory)
    r = s.run(Replay([step(1)] * 4 + [step(0)] * 3 + [step(1)] * 2))
    assert (r.decisions, r.observations, r.findings) == (9, {"count": 4}, [])


def test_a_run_cut_at_max_decisions_is_the_same_finding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = _runs("jump_label_nosync", monkeypatch, max_decisions=40)
    slow, _ = _runs("jump_label_nosync", monkeypatch, walker=False, max_decisions=40)
    assert fast == slow
    assert all(any("no end after 40 decisions" in f[1] for f in run["findings"])
               for run in fast)


@pytest.mark.skipif(not fastpath.available(), reason="the compiled fast path was not built here")
@pytest.mark.parametrize("memory", ["sc", "arm"])
@pytest.mark.parametrize("name", sorted(list_scenarios()))
def test_the_pure_path_runs_as_the_compiled_path(
        name: str, memory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure path (its walker under sc, its code hooked as it first runs) against the
    compiled one (its walker, its code hooked as it first runs in C), on fresh
    sessions.  (Both against the code hooked up front: tests/test_corpus.py.)"""
    pure, _ = _runs(name, monkeypatch, memory=memory, seeds=range(4))
    compiled, _ = _runs(name, monkeypatch, memory=memory, seeds=range(4), compiled=True)
    assert pure == compiled


@pytest.mark.parametrize("compiled", [False, True], ids=["pure", "compiled"])
def test_code_is_hooked_as_it_first_runs(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine has no code hook on the kernels' visible instructions; after
    runs, every one that ran has one, and far fewer are hooked than the eager scheme
    hooked (every visible instruction of the text): on the pure path (``Cpu.hooked``)
    and the compiled one (``_fastpath.c``'s block hook; ``_fastpath.hooked``).  (That a
    block without its hooks stops the run before it is what the comparisons with the
    path above and with the corpus, recorded with every hook up front, check: a visible
    operation run unhooked changes the schedule.)"""
    if compiled and not fastpath.available():
        pytest.skip("the compiled fast path was not built here")
    monkeypatch.setenv("TESTBED_FASTPATH", "1" if compiled else "0")
    s = Session(load_scenario("jump_label_nosync")(), memory="sc")
    m = s.machine
    assert m.fastpath == compiled

    def hooked(c: Any) -> set[int]:
        return set(fastpath.function("hooked")(c.fast)) if compiled else c.hooked

    static = set(m.static_kinds)
    assert all(not (hooked(c) & static) for c in m.cpus)
    assert compiled or not any(c.verified for c in m.cpus)
    runs = [s.run(RandomWalk(seed)) for seed in range(20)]
    for i, c in enumerate(m.cpus):
        executed = {addr for r in runs for _, addr, _ in r.ground_truth()[i]}
        now = hooked(c)
        assert executed & static
        assert executed & static <= now
        assert len(now & static) < len(static) // 2
        assert compiled or c.verified
