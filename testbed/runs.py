"""The one run loop and the one findings record.

"Run schedules of a session, record what they find, say how to replay it" is done
here and only here: ``testbed run``, the campaign workers, the pytest plugin, the
demos and the failure database go through ``run_schedules`` and ``FindingsLog``.

- ``run_schedules`` yields one ``Run`` per schedule: first every schedule the failure
  database holds for the session's scenario (replayed exactly when recorded on this
  image and configuration, pruned when it no longer finds anything; used as hints with
  ``LenientReplay`` otherwise), then one run per seed under the strategy asked for.
- ``FindingsLog`` keeps the distinct findings (by signature: oracle, address, words),
  writes one reproducer per run that found something new, atomically, before the
  finding is reported, and stores the run's schedule in the failure database.
- ``replay_command`` is the command that replays a reproducer, as it must be typed: a
  scenario of one's own needs its file named (``--scenario``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .findings import (
    Finding,
    Signature,
    display_path,
    finding_json,
    recorded_findings,
    reproducer_name,
)
from .schedule import (
    InvalidDecision,
    ScenarioSource,
    Schedule,
    ScheduleError,
    ScheduleMismatch,
)
from .strategies import LenientReplay, StrategySpec

if TYPE_CHECKING:
    from .faildb import FailureDB
    from .scenario import Session
    from .scheduler import RunResult

__all__ = ["FindingsLog", "Recorded", "Run", "read_reproducer", "replay_command",
           "reproducer", "run_schedules", "write_reproducer"]


@dataclass
class Run:
    """One schedule run: its result, and where it came from."""

    result: RunResult
    index: int  # the schedule's number in this loop (-1: from the failure database)
    seed: int | None = None
    known: Path | None = None  # the failure-database entry replayed


def run_schedules(session: Session, strategy: StrategySpec, seeds: Iterable[int], *,
                  db: FailureDB | None = None, adapt_k: bool = False,
                  warn: Callable[[str], None] | None = None) -> Iterator[Run]:
    """Known failures first (``db``), then a run per seed.  ``adapt_k``: PCT's k grows to
    the longest run seen so far (``testbed run`` without ``--k``)."""
    if db is not None:
        yield from replay_known(session, db, warn or (lambda text: None))
    k = strategy.k
    for i, seed in enumerate(seeds):
        spec = replace(strategy, k=k) if adapt_k and strategy.name == "pct" else strategy
        result = session.run(spec.make(seed))
        if adapt_k:
            k = max(k, result.decisions)
        yield Run(result, i, seed)


def replay_known(session: Session, db: FailureDB,
                 warn: Callable[[str], None]) -> Iterator[Run]:
    """Every stored schedule of the session's scenario, replayed; fixed ones pruned."""
    for path, schedule in list(db.entries(session.scenario.name, session.source, warn)):
        try:
            result = session.replay(schedule)
        except ScheduleMismatch:  # another image or configuration: its decisions as hints
            result = session.run(LenientReplay(schedule.decisions),
                                 max_decisions=max(3 * len(schedule.decisions), 2000))
        except InvalidDecision as e:  # same image, yet impossible: a damaged entry
            warn(f"failure database: skipped {path}: {e}")
            continue
        else:
            if not result.findings:
                path.unlink(missing_ok=True)  # replayed exactly: the race it showed is gone
                continue
        yield Run(result, -1, None, path)


def reproducer(result: RunResult, session: Session, **meta: Any) -> Schedule:
    """The run's schedule with its findings recorded in it (and ``meta``)."""
    doc = {**dict(result.schedule.meta), **meta,
           "findings": [finding_json(f, session.image.symbolize) for f in result.findings]}
    return replace(result.schedule, meta=doc)


def write_reproducer(schedule: Schedule, out: Path, tag: str) -> Path:
    """Save ``schedule`` as ``out/<scenario>-<tag>.json`` (atomically)."""
    path = out / reproducer_name(schedule.scenario, tag)
    schedule.save(path)
    return path


def read_reproducer(path: str | Path) -> tuple[Schedule, list[tuple[str, int]]]:
    """A reproducer and the (oracle, address) pairs it records (``ScheduleError`` naming
    the file and the field when it is malformed)."""
    schedule = Schedule.load(path)
    try:
        wanted = recorded_findings(schedule.meta, str(path))
    except ValueError as e:
        raise ScheduleError(str(e)) from None
    return schedule, wanted


def replay_command(path: Path, source: ScenarioSource | None, command: str = "replay",
                   *extra: str) -> str:
    """The command that replays (or shrinks...) the reproducer at ``path``."""
    words = ["testbed", command, display_path(path), *extra]
    if source is not None:
        words += ["--scenario", display_path(Path(source.file))]
    return shlex.join(words)


@dataclass
class Recorded:
    """A distinct finding, as recorded."""

    finding: Finding
    reproducer: Path | None
    run: Run

    def to_json(self, session: Session) -> dict[str, Any]:
        doc = finding_json(self.finding, session.image.symbolize)
        doc["reproducer"] = str(self.reproducer) if self.reproducer else ""
        if self.run.known is not None:
            doc["from_failure_db"] = str(self.run.known)
        if self.run.seed is not None:
            doc["seed"] = self.run.seed
        return doc


@dataclass
class FindingsLog:
    """The distinct findings of a session's runs, each with its reproducer."""

    session: Session
    out: Path | None  # where reproducers go (None: nowhere)
    db: FailureDB | None = None
    seen: dict[Signature, Recorded] = field(default_factory=dict)

    def add(self, run: Run, tag: str, **meta: Any) -> list[Recorded]:
        """Record the findings of ``run`` not seen yet; returns them (reproducer first
        on disk, then the database entry)."""
        fresh = [f for f in run.result.findings if f.signature() not in self.seen]
        if not fresh:
            return []
        path = None
        if self.out is not None:
            sched = reproducer(run.result, self.session, **meta)
            path = write_reproducer(sched, self.out, f"{fresh[0].oracle}-{tag}")
        if self.db is not None and run.known is None:
            self.db.save(run.result.schedule)
        new = [Recorded(f, path, run) for f in fresh]
        for rec in new:
            self.seen[rec.finding.signature()] = rec
        return new

    def to_json(self) -> list[dict[str, Any]]:
        return [rec.to_json(self.session) for rec in self.seen.values()]

