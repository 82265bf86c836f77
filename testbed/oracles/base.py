"""The oracle interface: one object per oracle, chosen per session.

An oracle turns what a run did into findings.  Two stages:

- ``machine``: judged by the machine while the CPUs run (a torn word must stop the CPU
  that fetched it); the machine records the finding, the oracle object decides whether
  the session reports it, and may switch the costly detection off (``configure``).
- ``final``: judged on a finished run, from its final state and history.

A ``Session`` holds the list of oracles it runs (by default: the machine's, the
scenario's own check, and the trace decoder when the scenario asks for it); a caller
that wants fewer (the demos' searches drop the decoder) names them, instead of deriving
a scenario class at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..findings import Finding
    from ..machine import Machine
    from ..scheduler import RunResult

__all__ = ["Oracle"]


class Oracle(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def stage(self) -> str:
        """ "machine" or "final"."""

    @property
    def description(self) -> str: ...

    def configure(self, machine: Machine, enabled: bool) -> None:
        """Switch the machine's detection of this oracle on or off (machine stage)."""

    def check(self, machine: Machine, result: RunResult,
              raised: Sequence[Finding]) -> list[Finding]:
        """This oracle's findings for a finished run.  ``raised``: what the machine
        recorded while it ran (the machine-stage oracles pick theirs from it)."""
