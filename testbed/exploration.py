"""Exhaustive exploration: every interleaving and every model choice, each state once.

A depth-first search over the machine's state graph.  From each state every enabled
decision is tried: a CPU performing its next visible operation, a deliverable IRQ,
and every memory-model choice that can change an outcome (catch-up, fill, eviction,
write-back; ``Machine.model_choices`` only offers those).  States are identified by
``Machine.state_key`` (registers, shared memory, fetch-model state, interrupt
controller), so a state reached along several paths is expanded once and cycles (spin
loops) terminate.  A state where no CPU can run is final and its observation is
recorded.

Bounds are explicit and reported honestly: ``complete`` is true only if the whole
reachable graph was expanded; otherwise ``reason`` says which bound stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .findings import Finding
from .machine import Machine, MachineState
from .schedule import Decision, DecisionKind, step

__all__ = ["Bounds", "Exploration", "enabled", "explore"]


@dataclass(frozen=True)
class Bounds:
    max_states: int = 200_000
    max_seconds: float = 60.0
    model_choices: bool = True  # False: interleavings of visible operations only


@dataclass
class Exploration:
    finals: dict[Hashable, int] = field(default_factory=dict)  # observation -> final states
    findings: dict[tuple[str, int, tuple[int, ...]], Finding] = field(default_factory=dict)
    states: int = 0  # distinct states reached
    transitions: int = 0  # decisions applied
    complete: bool = False
    reason: str = ""  # why it is not complete
    seconds: float = 0.0
    # One schedule (list of decisions from the initial state) reaching each observation.
    witnesses: dict[Hashable, tuple[Decision, ...]] = field(default_factory=dict)


def enabled(m: Machine, model_choices: bool = True) -> list[Decision]:
    """Every decision possible in the machine's current state (empty when final)."""
    if m.stopped:
        return []
    out: list[Decision] = [step(c) for c in m.steppable()]
    out += [Decision(DecisionKind.IRQ, c) for c in m.irq_choices()]
    if out and model_choices:
        out += m.model_choices(compact=True)
    return out


def explore(m: Machine, observe: Callable[[Machine], Hashable],
            bounds: Bounds = Bounds()) -> Exploration:
    """Explore from the machine's baseline; ``observe`` maps a final state to an outcome."""
    t0 = time.perf_counter()
    deadline = t0 + bounds.max_seconds
    result = Exploration()
    m.reset()
    seen = {m.state_key()}
    # Each entry: a saved state and the decisions that led to it (for witnesses).
    stack: list[tuple[MachineState, tuple[Decision, ...]]] = [(m.save(), ())]
    result.states = 1
    while stack:
        if result.states >= bounds.max_states:
            result.reason = f"state bound ({bounds.max_states} states) reached"
            break
        if time.perf_counter() > deadline:
            result.reason = f"time bound ({bounds.max_seconds:g} s) reached"
            break
        saved, path = stack.pop()
        m.load(saved)
        choices = enabled(m, bounds.model_choices)
        if not choices:
            if not m.valid:  # a promise left unfulfilled: not an execution (P3)
                continue
            obs = observe(m)
            result.finals[obs] = result.finals.get(obs, 0) + 1
            result.witnesses.setdefault(obs, path)
            for f in m.findings:
                result.findings.setdefault(f.signature(), f)
            continue
        first = True
        for d in choices:
            if not first:
                m.load(saved)
            first = False
            m.apply(d)
            result.transitions += 1
            key = m.state_key()
            if key in seen:
                continue
            seen.add(key)
            result.states += 1
            stack.append((m.save(), (*path, d)))
    else:
        result.complete = True
    result.seconds = time.perf_counter() - t0
    return result
