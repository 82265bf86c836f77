"""PCT: probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte,
"A Randomized Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010).

Each run gives the CPUs random distinct priorities d, d+1, ..., d+n-1 and picks d-1
priority change points uniformly among the run's k expected steps; at the i-th change
point the running CPU's priority drops to i, below every initial priority.  The
highest-priority CPU that can step runs.  A bug of depth d is then found with
probability at least 1/(n k^(d-1)) per run.

Adaptations to this machine:
- k is the caller's: campaigns pass the longest run seen so far as ``k``.
- A CPU whose next operation is YIELD or WFE is spinning: it is demoted below every
  other CPU, so that a spin cannot starve the CPU it waits for.
- Memory-model choices (catch-up, fill, eviction, write-back) and IRQ delivery are
  drawn at the change points, and with small probabilities elsewhere.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..schedule import Decision, DecisionKind, step

if TYPE_CHECKING:
    from ..machine import Machine


class PCT:
    name = "pct"

    def __init__(self, seed: int, *, depth: int = 3, k: int = 200,
                 p_model: float = 0.02, p_irq: float = 0.2) -> None:
        if depth < 1:
            raise ValueError("PCT depth is at least 1")
        self.seed = seed
        self.depth = depth
        if k < 1:
            raise ValueError("PCT needs k >= 1 expected steps")
        self.k = k  # the expected number of steps of a run
        self.p_model = p_model
        self.p_irq = p_irq
        self.rng = random.Random(seed)
        self.priority: dict[int, int] = {}  # CPU -> priority; higher runs first
        self.change_points: set[int] = set()  # step numbers where a priority drops
        self.steps = 0  # decisions made in this run
        self._lowest = 0  # invariant: below every priority handed out so far

    def begin(self, machine: Machine) -> None:
        rng = self.rng = random.Random(self.seed)
        order = list(range(machine.ncpus))
        rng.shuffle(order)
        self.priority = {cpu: self.depth + i for i, cpu in enumerate(order)}
        self.change_points = set(rng.sample(range(1, self.k + 1),
                                            min(self.depth - 1, self.k)))
        self.steps = 0
        self._lowest = 0

    def choose(self, machine: Machine) -> Decision | None:
        rng = self.rng
        self.steps += 1
        at_change = self.steps in self.change_points
        irqs = machine.irq_choices() if any(machine.gic.pending) else []
        if irqs and (at_change or rng.random() < self.p_irq):
            return Decision(DecisionKind.IRQ, rng.choice(irqs))
        if at_change or rng.random() < self.p_model:
            choices = machine.model_choices()
            if choices:
                return rng.choice(choices)
        ready = machine.steppable()
        if not ready:
            return Decision(DecisionKind.IRQ, rng.choice(irqs)) if irqs else None
        best = max(ready, key=lambda c: self.priority[c])
        if machine.spinning(best) and len(ready) > 1:
            self._demote(best)  # let the CPU it waits for run
            best = max(ready, key=lambda c: self.priority[c])
        if at_change:
            # The d-1 change points: the running CPU drops below all initial priorities.
            self.priority[best] = len(self.change_points & set(range(self.steps + 1)))
        return step(best)

    def _demote(self, cpu: int) -> None:
        self._lowest -= 1
        self.priority[cpu] = self._lowest

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name, "seed": self.seed, "depth": self.depth, "k": self.k,
                "p_model": self.p_model, "p_irq": self.p_irq}
