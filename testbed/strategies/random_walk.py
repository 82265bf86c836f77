"""Uniform random walk over enabled decisions, seeded.

At each point: with probability ``p_irq`` a deliverable IRQ is taken (when there is
one); with probability ``p_model`` a memory-model choice (catch-up, fill, eviction,
write-back) is drawn uniformly among those that can change an outcome; otherwise a
uniformly chosen CPU performs its next visible operation.  The same seed gives the
same schedule on the same image.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..schedule import Decision, DecisionKind, step

if TYPE_CHECKING:
    from ..machine import Machine


class RandomWalk:
    name = "random"

    def __init__(self, seed: int, *, p_model: float = 0.05, p_irq: float = 0.25) -> None:
        if not (0 <= p_model <= 1 and 0 <= p_irq <= 1 and p_model + p_irq <= 1):
            raise ValueError("p_model and p_irq are probabilities whose sum is at most 1")
        self.seed = seed
        self.p_model = p_model
        self.p_irq = p_irq
        self.rng = random.Random(seed)
        self._fresh = True  # invariant: rng is in its seeded state and unused

    def begin(self, machine: Machine) -> None:
        if not self._fresh:
            self.rng.seed(self.seed)
        self._fresh = False

    def choose(self, machine: Machine) -> Decision | None:
        return self.decide(machine, self.rng.random())

    def decide(self, machine: Machine, r: float) -> Decision | None:
        """``choose``, its first draw ``r`` made (``walker.walk`` draws it)."""
        rng = self.rng
        irqs = machine.irq_choices() if any(machine.gic.pending) else []
        if irqs and r < self.p_irq:
            return Decision(DecisionKind.IRQ, rng.choice(irqs))
        if r >= 1.0 - self.p_model:
            choices = machine.model_choices()
            if choices:
                return rng.choice(choices)
        ready = machine.steppable()
        n = len(ready)
        if n == 1:
            return step(ready[0])
        if n:
            return step(ready[rng.randrange(n)])
        if irqs:
            return Decision(DecisionKind.IRQ, rng.choice(irqs))
        return None

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name, "seed": self.seed, "p_model": self.p_model,
                "p_irq": self.p_irq}
