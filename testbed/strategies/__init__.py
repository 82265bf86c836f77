"""Scheduling strategies: each decides, at every point, which enabled decision comes next.

A strategy is a small interface (after awslabs/shuttle): ``begin`` a new run, then
``choose`` the next decision from what the machine says is enabled, or ``None`` to
stop.  Each strategy lives in its own module whose docstring says what it does.

``StrategySpec`` is the one place a strategy is built from its name and options: the
command line, campaigns, the pytest plugin and the demos all go through it, so a name
or an option that makes no sense is refused in one way everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .base import Strategy, held
from .lenient_replay import LenientReplay
from .pct import PCT
from .random_walk import RandomWalk
from .replay import Replay
from .round_robin import RoundRobin

__all__ = ["NAMES", "PCT", "LenientReplay", "RandomWalk", "Replay", "RoundRobin", "Strategy",
           "StrategySpec", "held"]

# The strategies a run can be asked for by name; "rr" is round-robin's short name.
NAMES = ("random", "pct", "round-robin")
_ALIASES = {"rr": "round-robin"}


@dataclass(frozen=True)
class StrategySpec:
    """A strategy by name, with its options; ``make(seed)`` builds the run's strategy.

    Raises ``ValueError`` (with the option as the command line spells it) when the name
    is unknown or an option is out of range."""

    name: str = "random"
    depth: int = 3  # PCT's bug depth d
    k: int = 200  # PCT's expected steps per run
    p_model: float = 0.05  # random walk: probability of a model choice per decision

    def __post_init__(self) -> None:
        name = _ALIASES.get(self.name, self.name)
        if name not in NAMES:
            raise ValueError(f"--strategy: unknown strategy {self.name!r} "
                             f"(known: {', '.join(NAMES)})")
        object.__setattr__(self, "name", name)
        for field, value in (("depth", self.depth), ("k", self.k)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{field}: must be an integer >= 1, not {value!r}")
        p = self.p_model
        if not isinstance(p, (int, float)) or isinstance(p, bool) or math.isnan(p) \
                or not 0 <= p <= 0.75:
            raise ValueError(f"--p-model: a probability from 0 to 0.75, not {p!r}")

    def make(self, seed: int) -> Strategy:
        if self.name == "pct":
            return PCT(seed, depth=self.depth, k=self.k)
        if self.name == "round-robin":
            return RoundRobin()
        return RandomWalk(seed, p_model=self.p_model)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
