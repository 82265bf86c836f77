"""Round-robin: CPUs take turns, one visible operation each; no memory-model choices.

Deliverable IRQs are taken first.  With only forced catch-ups (ISB, exceptions,
ERET) this is the most "sequential-looking" schedule, useful as a smoke test and as
the baseline a scenario must pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..schedule import Decision, DecisionKind, step

if TYPE_CHECKING:
    from ..machine import Machine


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._last = -1  # invariant: the CPU that stepped last (-1 before the first)

    def begin(self, machine: Machine) -> None:
        self._last = -1

    def choose(self, machine: Machine) -> Decision | None:
        irqs = machine.irq_choices()
        if irqs:
            return Decision(DecisionKind.IRQ, irqs[0])
        ready = machine.steppable()
        if not ready:
            return None
        for cpu in ready:
            if cpu > self._last:
                break
        else:
            cpu = ready[0]
        self._last = cpu
        return step(cpu)

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name}
