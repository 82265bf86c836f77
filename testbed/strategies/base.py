"""The strategy interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..machine import Machine
    from ..schedule import Decision


class Strategy(Protocol):
    name: str

    def begin(self, machine: Machine) -> None:
        """A new run starts (the machine is at its baseline)."""

    def choose(self, machine: Machine) -> Decision | None:
        """The next decision, or ``None`` to end the run here."""

    def describe(self) -> dict[str, object]:
        """Parameters that re-create this strategy (recorded in schedules)."""


def held(m: Machine, last: int) -> bool:
    """Whether running another CPU than ``last`` now is a preemption (CHESS's count):
    ``last`` could go on and is not spinning.  The one preemption rule: the search's
    bound, its ``preemptions()`` and the shrinker's replay all count with it."""
    return last >= 0 and last in m.steppable() and not m.spinning(last)
