"""Running a machine under a strategy: one decision at a time, all recorded.

CPUs run freely between visible operations; the strategy picks who performs the next
one and when memory-model choices happen (DESIGN.md section 5).  A run is a pure
function of (scenario, configuration, schedule): the recorded schedule replays it
exactly, down to the byte-identical ground-truth trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import trace
from .findings import Event, Finding, OracleName
from .machine import CpuState, Machine
from .schedule import Decision, Schedule

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


def run(machine: Machine, strategy: Strategy, *, scenario: str,
        max_decisions: int = 20_000) -> RunResult:
    """Reset ``machine`` to its baseline and run it to the end under ``strategy``."""
    machine.reset()
    strategy.begin(machine)
    decisions: list[Decision] = []
    append = decisions.append
    apply = machine.apply
    choose = strategy.choose
    while not machine.stopped:
        d = choose(machine)
        if d is None:
            break
        if len(decisions) >= max_decisions:
            running = [c.index for c in machine.cpus if c.state is CpuState.RUNNABLE]
            machine.findings.append(Finding(
                OracleName.LIVENESS, f"no end after {max_decisions} decisions; CPUs still running: "
                + ", ".join(f"CPU{c}" for c in running), step=machine.step_no))
            machine.stopped = True
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
                     trace.instructions(logs), finished, logs, machine.model.initial)
