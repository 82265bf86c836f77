"""Running a machine under a strategy: one decision at a time, all recorded.

CPUs run freely between visible operations; the strategy picks who performs the next
one and when memory-model choices happen (DESIGN.md section 5).  A run is a pure
function of (scenario, configuration, schedule): the recorded schedule replays it
exactly, down to the byte-identical ground-truth trace.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, cast

from unicorn import arm64_const as A

from . import fastpath, trace, walker
from .cpu import NO_COUNT, PSTATE_I, UNTIL, Stop
from .execute import resume
from .findings import Event, Finding, OracleName
from .machine import CpuState, Machine
from .schedule import Decision, Schedule, step
from .strategies.random_walk import RandomWalk
from .textside import cache_op, catch_up

if TYPE_CHECKING:
    from .strategies import Strategy

__all__ = ["RunResult", "run"]


@dataclass
class RunResult:
    """What one run did.  Holds the machine's logs of this run (reset() starts new ones)."""

    scenario: str
    schedule: Schedule
    findings: list[Finding]
    events: list[Event]
    decisions: int
    instructions: int
    finished: bool  # every CPU switched itself off
    logs: list[list[tuple[int, int, int]]] = field(repr=False)
    initial_text: bytes = field(repr=False)
    observations: dict[str, object] = field(default_factory=dict)
    # Why this run is no execution of the data-memory model (a promise left unfulfilled):
    # its findings are dropped.  "" for an execution.
    invalid: str = ""

    def ground_truth(self) -> list[list[trace.Entry]]:
        return trace.expand(self.initial_text, self.logs)

    def trace_digest(self) -> str:
        return trace.digest(self.ground_truth())


def _walker(m: Machine, strategy: Strategy) -> Callable[[list[Decision], int], int] | None:
    """The compiled walker (``_fastpath.walk``) for this run, where it applies: a
    ``RandomWalk``, under sc, with folded steps, no declared fetch liveness and no
    ``WFI`` in the image (``steppable`` is then the machine's list of runnable CPUs).
    It takes the decisions ``choose`` and ``apply`` would take, the same, as long as
    each is a step of a memory access, a ``DAIF`` write, a fetch no oracle has to
    judge, or an ``ISB``, ``DC`` or ``IC`` not followed by a foldable operation (the
    cache maintenance and a catch-up that changes something call ``textside``)
    (``tests/test_walker.py`` runs both on the same seeds)."""
    if not m.fastpath or type(strategy) is not RandomWalk or m.arm is not None \
            or not m.fold or m.has_fetch_liveness or m.promises or m.has_wfi \
            or type(strategy.rng) is not random.Random:
        return None
    if m.walk_function is None:  # (checked once per machine)
        m.walk_function = fastpath.walk_function() or False
    walk = m.walk_function
    if not walk:
        return None
    consts = (CpuState.RUNNABLE, Stop.VISIBLE, Stop.NONE, UNTIL, NO_COUNT,
              A.UC_ARM64_REG_PSTATE, PSTATE_I, cache_op, catch_up, resume)
    return partial(walk, m, tuple(m.cpus), tuple(c.fast for c in m.cpus), strategy.rng,
                   1.0 - strategy.p_model, tuple(step(i) for i in range(m.ncpus)), consts)


def _give_up(machine: Machine, max_decisions: int) -> None:
    """End a run that took ``max_decisions`` decisions without ending: a finding."""
    running = [c.index for c in machine.cpus if c.state is CpuState.RUNNABLE]
    machine.findings.append(Finding(
        OracleName.LIVENESS, f"no end after {max_decisions} decisions; CPUs still running: "
        + ", ".join(f"CPU{c}" for c in running), step=machine.step_no))
    machine.stopped = True


def run(machine: Machine, strategy: Strategy, *, scenario: str,
        max_decisions: int = 20_000) -> RunResult:
    """Reset ``machine`` to its baseline and run it to the end under ``strategy``."""
    machine.reset()
    strategy.begin(machine)
    decisions: list[Decision] = []
    append = decisions.append
    apply = machine.apply
    choose = strategy.choose
    walk = _walker(machine, strategy)
    if walk is None and walker.applies(machine, strategy):  # the pure path's walker
        machine.walked += walker.walk(machine, cast(RandomWalk, strategy), decisions,
                                      partial(_give_up, machine, max_decisions),
                                      max_decisions)
    else:
        while not machine.stopped:
            if walk is not None:  # the commonest decisions, in C, until the next is not one
                machine.walked += walk(decisions, max_decisions)
                if machine.stopped:
                    break
            d = choose(machine)
            if d is None:
                break
            if len(decisions) >= max_decisions:
                _give_up(machine, max_decisions)
                break
            apply(d, len(decisions))
            append(d)
    finished = all(c.state is CpuState.OFF for c in machine.cpus)
    if not finished and not machine.stopped and not machine.steppable() \
            and not machine.irq_choices():
        waiting = [c for c in machine.cpus if c.state is CpuState.RUNNABLE]
        asleep = [f"CPU{c.index}" for c in waiting if not c.parked]
        spin = [f"CPU{c.index} at {machine.image.symbolize(c.pc)}"
                for c in waiting if c.parked]
        if waiting:
            machine.findings.append(Finding(OracleName.LIVENESS, "deadlock: " + "; ".join(
                ([", ".join(asleep) + " wait for an interrupt that cannot come"]
                 if asleep else [])
                + ([", ".join(spin) + " spin on memory no CPU can write any more"]
                   if spin else [])), step=machine.step_no))
    schedule = Schedule(scenario, machine.image.digest, machine.config_dict(),
                        tuple(decisions), strategy.name,
                        getattr(strategy, "seed", None), strategy.describe())
    logs = machine.logs()
    return RunResult(scenario, schedule, machine.findings, machine.events, len(decisions),
                     machine.instructions(), finished, logs, machine.model.initial)
