"""Shrinking a failing schedule: delta debugging over its decisions.

A candidate schedule is run with a lenient replay: a decision that has become
impossible (the CPU cannot step, the IRQ is not pending, the model choice would change
nothing) is skipped, and when the list runs out the run is completed without preemption
(the last CPU keeps running while it can; pending IRQs are taken first).  The schedule
that actually ran is what is kept, so every shrunk schedule replays strictly.  A
candidate is kept when it reproduces the same finding: same oracle, same address.

Order: ddmin over all decisions (Zeller and Hildebrandt, "Simplifying and Isolating
Failure-Inducing Input", TSE 2002), then each remaining model choice alone, then again
ddmin until nothing more can go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .schedule import Decision, DecisionKind, Schedule, step

if TYPE_CHECKING:
    from .machine import Machine
    from .scenario import Session
    from .scheduler import RunResult

__all__ = ["LenientReplay", "ShrinkResult", "shrink"]


class LenientReplay:
    """Replay that skips impossible decisions and completes without preemption."""

    name = "lenient-replay"

    def __init__(self, decisions: Sequence[Decision]) -> None:
        self.decisions = tuple(decisions)
        self._next = 0
        self._last = -1

    def begin(self, machine: Machine) -> None:
        self._next = 0
        self._last = -1

    def _possible(self, m: Machine, d: Decision) -> bool:
        if d.kind is DecisionKind.STEP:
            return d.cpu in m.steppable()
        if d.kind is DecisionKind.IRQ:
            return d.cpu in m.irq_choices()
        return d in m.model_choices()

    def choose(self, machine: Machine) -> Decision | None:
        while self._next < len(self.decisions):
            d = self.decisions[self._next]
            self._next += 1
            if self._possible(machine, d):
                if d.kind is DecisionKind.STEP:
                    self._last = d.cpu
                return d
        irqs = machine.irq_choices()
        if irqs:
            return Decision(DecisionKind.IRQ, irqs[0])
        ready = machine.steppable()
        if not ready:
            return None
        cpu = self._last if self._last in ready else ready[0]
        self._last = cpu
        return step(cpu)

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name}


@dataclass
class ShrinkResult:
    original: Schedule
    shrunk: Schedule
    result: RunResult
    runs: int  # candidate runs tried


def _target(result: RunResult, oracle: str, addr: int) -> bool:
    return any(f.oracle == oracle and f.addr == addr for f in result.findings)


def shrink(session: Session, schedule: Schedule, *, oracle: str = "", addr: int = -1,
           max_runs: int = 2000) -> ShrinkResult:
    """Shrink ``schedule`` keeping its finding (the first one, or ``oracle``/``addr``)."""
    first = session.replay(schedule)
    if not oracle:
        if not first.findings:
            raise ValueError("the schedule produces no finding to keep")
        oracle, addr = first.findings[0].oracle, first.findings[0].addr
    elif not _target(first, oracle, addr):
        raise ValueError(f"the schedule does not produce a {oracle} finding at {addr:#x}")
    runs = 0
    best = list(schedule.decisions)
    best_result = first
    limit = max(len(best) * 3, 2000)

    def attempt(candidate: list[Decision]) -> bool:
        nonlocal runs, best, best_result
        runs += 1
        result = session.run(LenientReplay(candidate), max_decisions=limit)
        ran = list(result.schedule.decisions)
        if _target(result, oracle, addr) and len(ran) < len(best):
            best, best_result = ran, result
            return True
        return False

    changed = True
    while changed and runs < max_runs:
        changed = False
        # ddmin: remove chunks of decreasing size.
        n = 2
        while len(best) >= 2 and runs < max_runs:
            chunk = max(1, len(best) // n)
            removed = False
            for start in range(0, len(best), chunk):
                candidate = best[:start] + best[start + chunk:]
                if candidate and attempt(candidate):
                    n = max(n - 1, 2)
                    removed = changed = True
                    break
            if not removed:
                if chunk == 1:
                    break
                n = min(n * 2, len(best))
        # Then each model choice alone.
        for i in reversed(range(len(best))):
            if runs >= max_runs:
                break
            if i < len(best) and best[i].is_model and attempt(best[:i] + best[i + 1:]):
                changed = True
    shrunk = Schedule(schedule.scenario, schedule.image_digest, schedule.config,
                      tuple(best), "shrunk", schedule.seed,
                      {**dict(schedule.meta), "shrunk_from": len(schedule.decisions)})
    return ShrinkResult(schedule, shrunk, best_result, runs)
