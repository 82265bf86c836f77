"""Scheduling strategies: each decides, at every point, which enabled decision comes next.

A strategy is a small interface (after awslabs/shuttle): ``begin`` a new run, then
``choose`` the next decision from what the machine says is enabled, or ``None`` to
stop.  Each strategy lives in its own module whose docstring says what it does.
"""

from .base import Strategy
from .pct import PCT
from .random_walk import RandomWalk
from .replay import Replay
from .round_robin import RoundRobin

__all__ = ["PCT", "RandomWalk", "Replay", "RoundRobin", "Strategy"]
