"""Lenient replay: a recorded schedule used as hints.

A decision that has become impossible (the CPU cannot step, the IRQ is not pending,
the model choice would change nothing) is skipped, and when the list runs out the run
is completed without preemption (the last CPU keeps running while it can; pending IRQs
are taken first).  The schedule that actually ran is what the run records, so it
replays strictly.  Shrinking runs its candidates with it; the failure database replays
schedules recorded on another image or configuration with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..schedule import Decision, DecisionKind, step
from .base import held

if TYPE_CHECKING:
    from ..machine import Machine


class LenientReplay:
    """Replay that skips impossible decisions and completes without preemption."""

    name = "lenient-replay"

    def __init__(self, decisions: Sequence[Decision]) -> None:
        self.decisions = tuple(decisions)
        self._next = 0
        self._last = -1
        self.preemptions = 0  # of the run as it went (CHESS's count, as in search.py)

    def begin(self, machine: Machine) -> None:
        self._next = 0
        self._last = -1
        self.preemptions = 0

    def _ran(self, m: Machine, cpu: int) -> None:
        self.preemptions += cpu != self._last and held(m, self._last)
        self._last = cpu

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
                if not d.is_model:
                    self._ran(machine, d.cpu)
                return d
        irqs = machine.irq_choices()
        if irqs:
            cpu = self._last if self._last in irqs else irqs[0]
            self._ran(machine, cpu)
            return Decision(DecisionKind.IRQ, cpu)
        ready = machine.steppable()
        if not ready:
            return None
        cpu = self._last if self._last in ready else ready[0]
        self._ran(machine, cpu)
        return step(cpu)

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name}
