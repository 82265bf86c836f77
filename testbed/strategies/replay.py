"""Replay: follow a recorded schedule decision by decision.

A decision that is not enabled when its turn comes raises ``InvalidDecision`` from
the machine (strict replay): a schedule is only meaningful on the image, scenario and
configuration it was recorded on, which ``Schedule.check_against`` verifies first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..schedule import Decision

if TYPE_CHECKING:
    from ..machine import Machine


class Replay:
    name = "replay"

    def __init__(self, decisions: Sequence[Decision]) -> None:
        self.decisions = tuple(decisions)
        self._next = 0  # invariant: index of the decision to hand out next

    def begin(self, machine: Machine) -> None:
        self._next = 0

    def choose(self, machine: Machine) -> Decision | None:
        if self._next >= len(self.decisions):
            return None
        d = self.decisions[self._next]
        self._next += 1
        return d

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name, "decisions": len(self.decisions)}
