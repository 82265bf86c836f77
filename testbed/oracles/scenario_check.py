"""The scenario's own check: what must hold after a run, as the scenario says.

``Scenario.check(machine)`` returns findings under names of its own choosing (the
project's scenarios use ``stale-after-flush``, and call ``static_key_incoherence`` and
``brk_emulation`` from this package).  A check that raises is the scenario's code
failing: ``ScenarioCodeError``, never a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import scenario_code_error
from ..findings import Finding

if TYPE_CHECKING:
    from ..machine import Machine
    from ..scheduler import RunResult

__all__ = ["SCENARIO_CHECK", "ScenarioCheck"]

SCENARIO_CHECK = "scenario-check"


@dataclass(frozen=True)
class ScenarioCheck:
    scenario: Any  # a testbed.scenario.Scenario (not imported: scenario.py imports us)
    name: str = SCENARIO_CHECK
    description: str = "the scenario's own check() of the final state"
    stage: str = "final"

    def configure(self, machine: Machine, enabled: bool) -> None:
        pass

    def check(self, machine: Machine, result: RunResult,
              raised: Sequence[Finding]) -> list[Finding]:
        try:
            found = self.scenario.check(machine)
        except Exception as e:
            raise scenario_code_error(self.scenario.name, "check", e) from e
        if not isinstance(found, list) or not all(isinstance(f, Finding) for f in found):
            raise scenario_code_error(self.scenario.name, "check", TypeError(
                f"check() must return a list of Finding, not {type(found).__name__}"))
        return found
