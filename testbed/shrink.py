"""Shrinking a failing schedule: delta debugging over its decisions.

A candidate schedule is run with a lenient replay: a decision that has become
impossible (the CPU cannot step, the IRQ is not pending, the model choice would change
nothing) is skipped, and when the list runs out the run is completed without preemption
(the last CPU keeps running while it can; pending IRQs are taken first).  The schedule
that actually ran is what is kept, so every shrunk schedule replays strictly.  A
candidate is kept when it reproduces the same finding: same oracle, same address.

Order: ddmin over all decisions (Zeller and Hildebrandt, "Simplifying and Isolating
Failure-Inducing Input", TSE 2002), then fewer preemptions (a stretch of one CPU is
moved next to its previous stretch), then each remaining model choice alone, and again
until nothing improves.  Candidates compare by (decisions, preemptions, model events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .schedule import Decision, Schedule
from .strategies import LenientReplay

if TYPE_CHECKING:
    from .scenario import Session
    from .scheduler import RunResult

__all__ = ["LenientReplay", "ShrinkResult", "shrink"]  # LenientReplay: re-exported


@dataclass
class ShrinkResult:
    original: Schedule
    shrunk: Schedule
    result: RunResult
    runs: int  # candidate runs tried
    preemptions: tuple[int, int]  # before, after
    model_events: tuple[int, int]  # before, after


def _target(result: RunResult, oracle: str, addr: int) -> bool:
    return any(f.oracle == oracle and f.addr == addr for f in result.findings)


def _blocks(decisions: Sequence[Decision]) -> list[list[Decision]]:
    """Runs of consecutive decisions of one CPU (model choices stay where they are)."""
    blocks: list[list[Decision]] = []
    cpu = -2
    for d in decisions:
        if not d.is_model and d.cpu != cpu:
            blocks.append([])
            cpu = d.cpu
        if not blocks:
            blocks.append([])
        blocks[-1].append(d)
    return blocks


def _who(block: list[Decision]) -> int:
    return next((d.cpu for d in block if not d.is_model), -1)


def shrink(session: Session, schedule: Schedule, *, oracle: str = "", addr: int = -1,
           max_runs: int = 2000) -> ShrinkResult:
    """Shrink ``schedule`` keeping its finding (the first one, or ``oracle``/``addr``).

    Candidates are compared by (decisions, preemptions, model events): shorter first,
    then fewer preemptions at the same length, then fewer model events.
    """
    session.learning = False  # candidates must all run with the schedule's fetch points
    first = session.replay(schedule)
    if not oracle:
        if not first.findings:
            raise ValueError("the schedule produces no finding to keep")
        oracle, addr = first.findings[0].oracle, first.findings[0].addr
    elif not _target(first, oracle, addr):
        raise ValueError(f"the schedule does not produce a {oracle} finding at {addr:#x}")
    runs = 0
    limit = max(len(schedule.decisions) * 3, 2000)
    probe = LenientReplay(schedule.decisions)
    session.run(probe, max_decisions=limit)
    start_pre = probe.preemptions
    best = list(schedule.decisions)
    best_result = first

    def key(ds: Sequence[Decision], pre: int) -> tuple[int, int, int]:
        return (len(ds), pre, sum(d.is_model for d in ds))

    best_key = key(best, start_pre)

    def attempt(candidate: list[Decision]) -> bool:
        nonlocal runs, best, best_result, best_key
        runs += 1
        strategy = LenientReplay(candidate)
        result = session.run(strategy, max_decisions=limit)
        ran = list(result.schedule.decisions)
        k = key(ran, strategy.preemptions)
        if _target(result, oracle, addr) and k < best_key:
            best, best_result, best_key = ran, result, k
            return True
        return False

    changed = True
    while changed and runs < max_runs:
        changed = False
        # ddmin: remove chunks of decreasing size.
        n = 2
        while len(best) >= 2 and runs < max_runs:
            chunk = max(1, len(best) // n)
            removed = False
            for start in range(0, len(best), chunk):
                candidate = best[:start] + best[start + chunk:]
                if candidate and attempt(candidate):
                    n = max(n - 1, 2)
                    removed = changed = True
                    break
            if not removed:
                if chunk == 1:
                    break
                n = min(n * 2, len(best))
        # Fewer preemptions: in A B A, run the second A right after the first, or B
        # after the second A.
        i = 0
        while runs < max_runs:
            blocks = _blocks(best)
            if i + 2 >= len(blocks):
                break
            a, b, c = blocks[i], blocks[i + 1], blocks[i + 2]
            if _who(a) == _who(c) != _who(b):
                head, tail = blocks[:i], blocks[i + 3:]
                flat = [d for blk in head for d in blk]
                rest = [d for blk in tail for d in blk]
                if attempt(flat + a + c + b + rest) or attempt(flat + b + a + c + rest):
                    changed = True
                    continue  # the same position again, on the new blocks
            i += 1
        # Then each model choice alone.
        for j in reversed(range(len(best))):
            if runs >= max_runs:
                break
            if j < len(best) and best[j].is_model and attempt(best[:j] + best[j + 1:]):
                changed = True
    shrunk = Schedule(schedule.scenario, schedule.image_digest, schedule.config,
                      tuple(best), "shrunk", schedule.seed,
                      {**dict(schedule.meta), "shrunk_from": len(schedule.decisions),
                       "preemptions": best_key[1]}, schedule.source)
    return ShrinkResult(schedule, shrunk, best_result, runs, (start_pre, best_key[1]),
                        (sum(d.is_model for d in schedule.decisions), best_key[2]))
