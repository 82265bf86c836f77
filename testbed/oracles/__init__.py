"""Oracles: turn what a run did into findings.

The machine itself reports torn words executed, guest faults, kernel deaths and
liveness (instruction and decision budgets).  The oracles here read a run's final
state and ground truth for properties a scenario declares.
"""

from .brk import brk_emulation
from .static_key import SiteLog, static_key_incoherence

__all__ = ["SiteLog", "brk_emulation", "static_key_incoherence"]
