"""The failure database: schedules that found something, tried first next time.

Like Hypothesis's example database: every schedule that produced a finding (in
``testbed run``, ``testbed fuzz`` or a pytest run of a scenario) is kept under
``.testbed/failures/<scenario>/`` in the current folder (``$TESTBED_DB`` names another
folder; ``TESTBED_DB=off`` turns it off).  A later run of the same scenario replays
them before anything else, so a race found once is found again at once, and a fix is
confirmed by the same schedule.

Replaying a stored schedule:
- recorded against the same image and configuration, it is replayed exactly; if it no
  longer finds anything, the race it showed is gone and the entry is deleted;
- recorded against another image (the kernel code changed) or configuration, its
  decisions are used as hints (``LenientReplay``) and the entry is kept: it may still
  matter to the configuration it was recorded on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .schedule import Schedule, ScheduleError, ScheduleMismatch

if TYPE_CHECKING:
    from .scenario import Session
    from .scheduler import RunResult

__all__ = ["DB_ENV", "FailureDB", "Replayed", "default_db"]

DB_ENV = "TESTBED_DB"
MAX_PER_SCENARIO = 100


def default_db() -> FailureDB | None:
    where = os.environ.get(DB_ENV, "")
    if where.lower() in ("off", "0", "none", "false"):
        return None
    return FailureDB(Path(where) if where else Path(".testbed"))


@dataclass
class Replayed:
    path: Path
    result: RunResult
    exact: bool  # replayed strictly (same image and configuration)


class FailureDB:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, scenario: str) -> Path:
        return self.root / "failures" / scenario

    def save(self, schedule: Schedule) -> Path | None:
        """Keep ``schedule`` (atomically; the same decisions are stored once)."""
        h = hashlib.sha1(f"{schedule.image_digest}:{dict(schedule.config)}:".encode()
                         + schedule.to_json().encode()).hexdigest()[:16]
        path = self._dir(schedule.scenario) / f"{h}.json"
        if path.exists():
            return path
        try:
            entries = sorted(self._dir(schedule.scenario).glob("*.json"),
                             key=lambda p: p.stat().st_mtime)
            for old in entries[:max(0, len(entries) - MAX_PER_SCENARIO + 1)]:
                old.unlink(missing_ok=True)
            schedule.save(path)
        except OSError:
            return None  # a read-only checkout: the database is a help, not a duty
        return path

    def entries(self, scenario: str) -> Iterator[tuple[Path, Schedule]]:
        folder = self._dir(scenario)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            try:
                yield path, Schedule.load(path)
            except ScheduleError:
                path.unlink(missing_ok=True)  # unreadable (another version): drop it

    def replay_all(self, session: Session) -> list[Replayed]:
        """Replay every stored schedule of the session's scenario; prune fixed ones."""
        from .shrink import LenientReplay
        out = []
        for path, schedule in self.entries(session.scenario.name):
            try:
                result = session.replay(schedule)
                exact = True
            except ScheduleMismatch:
                result = session.run(LenientReplay(schedule.decisions),
                                     max_decisions=max(3 * len(schedule.decisions), 2000))
                exact = False
            if exact and not result.findings:
                path.unlink(missing_ok=True)  # the race it showed is gone
                continue
            out.append(Replayed(path, result, exact))
        return out
