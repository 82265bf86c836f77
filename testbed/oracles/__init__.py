"""Oracles: turn what a run did into findings, each behind one interface (``base``).

- the machine's own (``machine_oracles``): CMODX violation, torn word, guest fault,
  kernel death, liveness, fetch scope;
- the scenario's own check (``scenario_check``), which may call the property oracles
  here: static-key incoherence (``static_key``), BRK emulation (``brk``);
- the trace decoder (``decode``), for scenarios that ask for it.

``default_oracles(scenario)`` is what a session runs unless told otherwise;
``select`` keeps the named ones.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .base import Oracle
from .brk import brk_emulation
from .decode import TraceDecode, decode_check
from .machine_oracles import MACHINE_ORACLES, MachineOracle
from .scenario_check import SCENARIO_CHECK, ScenarioCheck
from .static_key import SiteLog, static_key_incoherence

__all__ = ["MACHINE_ORACLES", "SCENARIO_CHECK", "MachineOracle", "Oracle", "ScenarioCheck",
           "SiteLog", "TraceDecode", "brk_emulation", "decode_check", "default_oracles",
           "oracle_names", "select", "static_key_incoherence"]


def default_oracles(scenario: Any) -> list[Oracle]:
    """Every oracle that applies to ``scenario`` (a ``testbed.scenario.Scenario``)."""
    out: list[Oracle] = [*MACHINE_ORACLES, ScenarioCheck(scenario)]
    if scenario.trace_decode:
        out.append(TraceDecode())
    return out


def oracle_names(scenario: Any) -> list[str]:
    return [o.name for o in default_oracles(scenario)]


def select(scenario: Any, names: Collection[str]) -> list[Oracle]:
    """The oracles of ``scenario`` named in ``names`` (``ValueError`` on a name that is
    not one of them)."""
    every = default_oracles(scenario)
    known = {o.name for o in every}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown oracle {unknown[0]!r} for scenario {scenario.name!r} "
                         f"(it has: {', '.join(sorted(known))})")
    return [o for o in every if o.name in names]
