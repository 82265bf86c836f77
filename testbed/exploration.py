"""Exhaustive exploration: every interleaving and every model choice, each state once.

A depth-first search over the machine's state graph.  From each state every enabled
decision is tried: a CPU performing its next visible operation, a deliverable IRQ,
and every memory-model choice that can change an outcome (catch-up, fill, eviction,
write-back; ``Machine.model_choices`` only offers those).  States are identified by
``Machine.state_key`` (registers, shared memory, fetch-model state, interrupt
controller), so a state reached along several paths is expanded once and cycles (spin
loops) terminate.  A state where no CPU can run is final and its observation is
recorded.

Two reductions (``independence``): sleep sets prune transitions between states that
commuting decisions reach anyway (the same states), and a CPU that reaches its thread's
end stops at once, with the step that took it there (fewer states; every final state is
still reached but for the fetch model's state, which no observation reads).

Bounds are explicit and reported honestly: ``complete`` is true only if the whole
reachable graph was expanded; otherwise ``reason`` says which bound stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .findings import Finding
from .independence import Footprint, at_end, footprint, independent, kept, observed, reducible
from .machine import Machine, MachineState
from .schedule import Decision, DecisionKind, step

__all__ = ["Bounds", "Exploration", "enabled", "explore"]


@dataclass(frozen=True)
class Bounds:
    max_states: int = 200_000
    max_seconds: float = 60.0
    model_choices: bool = True  # False: interleavings of visible operations only
    sleep_sets: bool = True  # partial-order reduction (``independence``): same states
    # A CPU that reaches its thread's end stops at once (``independence.at_end``): fewer
    # states, the same observations and findings.
    end_at_once: bool = True


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
    """Explore from the machine's baseline; ``observe`` maps a final state to an outcome.

    With ``bounds.sleep_sets`` (the default) a decision independent of one already
    explored from the same state is not explored again after it (``independence``):
    fewer transitions, the same states, final states and findings."""
    t0 = time.perf_counter()
    deadline = t0 + bounds.max_seconds
    result = Exploration()
    m.reset()
    # Each visited state's key -> the sleep set it was stored with (Godefroid's state
    # caching with sleep sets: reached again with a sleep set that is not a superset,
    # the state explores the difference and keeps the intersection).
    seen: dict[bytes, frozenset[Decision]] = {m.state_key(): frozenset()}
    # Each entry: a saved state, the decisions that led to it (for witnesses), its sleep
    # set (each sleeping decision with its footprint) and, for a state reached again,
    # the only decisions still to explore from it.
    stack: list[tuple[MachineState, tuple[Decision, ...], dict[Decision, Footprint | None],
                      frozenset[Decision] | None]] = [(m.save(), (), {}, None)]
    result.states = 1
    reduce = bounds.sleep_sets
    # The saved state the machine is still in (saved last, nothing done since): the
    # state pushed last is the next popped, and it need not be loaded.
    held: MachineState | None = None
    while stack:
        if result.states >= bounds.max_states:
            result.reason = f"state bound ({bounds.max_states} states) reached"
            break
        if time.perf_counter() > deadline:
            result.reason = f"time bound ({bounds.max_seconds:g} s) reached"
            break
        saved, path, sleep, only = stack.pop()
        if saved is not held:
            m.load(saved)
        held = None
        choices = enabled(m, bounds.model_choices)
        if not choices:
            if only is not None:  # a final state reached again: recorded already
                continue
            if not m.valid:  # a promise left unfulfilled: not an execution (P3)
                continue
            obs = observe(m)
            result.finals[obs] = result.finals.get(obs, 0) + 1
            result.witnesses.setdefault(obs, path)
            for f in m.findings:
                result.findings.setdefault(f.signature(), f)
            continue
        todo = [d for d in choices if d not in sleep] if only is None else \
            [d for d in choices if d in only]
        here = reduce and reducible(m)
        prints = {d: footprint(m, d) for d in todo} if here else {}
        if here:  # what sleeps has its footprint from where it was explored
            sleep = dict(sleep)
        # What a footprint cannot say in advance: a decision that changes any of these
        # depends on every other (``independence``), as its successor and as a sibling.
        before = observed(m) if here else ()
        first = True
        for d in todo:
            if not first:
                m.load(saved)
            first = False
            m.apply(d)
            held = None
            result.transitions += 1
            end = at_end(m, d) if bounds.end_at_once else None
            if end is not None:
                m.apply(end)  # (one transition: its CPU's end, taken with it)
            then = (*path, d) if end is None else (*path, d, end)
            fp = prints.get(d)
            if fp is not None and not kept(m, d, before):
                fp = None
            if fp is None:
                asleep: dict[Decision, Footprint | None] = {}
            else:
                asleep = {t: f for t, f in sleep.items() if independent(f, fp)}
            key = m.state_key()
            stored = seen.get(key)
            if stored is None:
                seen[key] = frozenset(asleep)
                result.states += 1
                held = m.save()
                stack.append((held, then, asleep, None))
            else:
                missing = stored.difference(asleep)
                if missing:
                    seen[key] = stored.intersection(asleep)
                    held = m.save()
                    stack.append((held, then, asleep, missing))
            if here:
                sleep[d] = fp
    else:
        result.complete = True
    result.seconds = time.perf_counter() - t0
    return result
