"""PCT: probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte,
"A Randomized Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010).

Each run gives the CPUs random distinct priorities d, d+1, ..., d+n-1 and picks d-1
priority change points uniformly among the run's k expected steps; at the i-th change
point the running CPU's priority drops to i, below every initial priority.  The
highest-priority CPU that can step runs.  A bug of depth d is then found with
probability at least 1/(n k^(d-1)) per run.

Adaptations to this machine:
- k is the caller's: campaigns pass the longest run seen so far as ``k``.
- A CPU whose next operation is YIELD or WFE is spinning: it gives one step to the
  highest-priority CPU that does not spin, then goes round its loop again at its own
  priority, so that a spin cannot starve the CPU it waits for and the spinner notices
  at once when its wait is over.  (A permanent demotion puts the spinner below every
  change point's priority: a CPU that kicked the others then never ran again before
  they finished, and PCT never found the races of ``missing_dc`` and
  ``brk_single_slot`` in 3000 runs on 20 seeds.)
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
        self._yielded = -1  # the spinning CPU that gave the last step away
        self._ran: dict[int, int] = {}  # CPU -> the step it last ran

    def begin(self, machine: Machine) -> None:
        rng = self.rng = random.Random(self.seed)
        order = list(range(machine.ncpus))
        rng.shuffle(order)
        self.priority = {cpu: self.depth + i for i, cpu in enumerate(order)}
        self.change_points = set(rng.sample(range(1, self.k + 1),
                                            min(self.depth - 1, self.k)))
        self.steps = 0
        self._yielded = -1
        self._ran = dict.fromkeys(range(machine.ncpus), 0)

    def choose(self, machine: Machine) -> Decision | None:
        rng = self.rng
        self.steps += 1
        at_change = self.steps in self.change_points
        if at_change:
            # The i-th of the d-1 change points: the CPU that runs now drops to priority
            # i, below every initial priority (before any IRQ or model choice drawn here:
            # a change point that drew one used to skip the drop).
            ready = machine.steppable()
            if ready:
                runner = max(ready, key=self.priority.__getitem__)
                self.priority[runner] = len(self.change_points & set(range(self.steps + 1)))
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
        prio = self.priority
        best = max(ready, key=prio.__getitem__)
        if len(ready) > 1 and best != self._yielded and machine.spinning(best):
            # A spinning CPU yields one step to the best CPU that is not spinning, then
            # goes round its loop again at its own priority: it notices at once that
            # what it waits for has happened.
            others = [c for c in ready if c != best and not machine.spinning(c)]
            self._yielded = best
            if others:
                best = max(others, key=prio.__getitem__)
            else:  # every CPU spins: the one that waited longest goes round its loop
                best = min((c for c in ready if c != best), key=self._ran.__getitem__)
        else:
            self._yielded = -1
        self._ran[best] = self.steps
        return step(best)

    def describe(self) -> dict[str, object]:
        return {"strategy": self.name, "seed": self.seed, "depth": self.depth, "k": self.k,
                "p_model": self.p_model, "p_irq": self.p_irq}
