"""The failure database: schedules that found something, tried first next time.

Like Hypothesis's example database: every schedule that produced a finding (in
``testbed run``, ``testbed fuzz`` or a pytest run of a scenario) is kept under
``.testbed/failures/<scenario>/`` in the current folder (``$TESTBED_DB`` names another
folder; ``TESTBED_DB=off`` turns it off).  A scenario of one's own gets a folder named
after it and its file's digest, so that two files' scenarios of the same name never
share entries.  A later run of the same scenario replays them before anything else
(``testbed.runs``), so a race found once is found again at once, and a fix is confirmed
by the same schedule.

This module only stores and reads entries.  Reading never runs code: an entry is a
schedule file (JSON), checked field by field; one that cannot be read, or that names
another scenario or scenario file than the session's, is skipped with a warning naming
it, and left where it is for the user to look at.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .findings import safe_name
from .schedule import ScenarioSource, Schedule, ScheduleError

__all__ = ["DB_ENV", "FailureDB", "default_db"]

DB_ENV = "TESTBED_DB"
MAX_PER_SCENARIO = 100


def default_db() -> FailureDB | None:
    where = os.environ.get(DB_ENV, "")
    if where.lower() in ("off", "0", "none", "false"):
        return None
    return FailureDB(Path(where) if where else Path(".testbed"))


def _folder_name(scenario: str, source: ScenarioSource | None) -> str:
    safe = safe_name(scenario)
    return safe if source is None else f"{safe}-{source.sha256[:12]}"


class FailureDB:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, scenario: str, source: ScenarioSource | None) -> Path:
        return self.root / "failures" / _folder_name(scenario, source)

    def save(self, schedule: Schedule) -> Path | None:
        """Keep ``schedule`` (atomically; the same decisions are stored once)."""
        h = hashlib.sha256(schedule.to_json().encode()).hexdigest()[:16]
        folder = self.folder(schedule.scenario, schedule.source)
        path = folder / f"{h}.json"
        if path.exists():
            return path
        try:
            entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
            for old in entries[:max(0, len(entries) - MAX_PER_SCENARIO + 1)]:
                old.unlink(missing_ok=True)
            schedule.save(path)
        except OSError:
            return None  # a read-only checkout: the database is a help, not a duty
        return path

    def entries(self, scenario: str, source: ScenarioSource | None,
                warn: Callable[[str], None]) -> Iterator[tuple[Path, Schedule]]:
        """The stored schedules of ``scenario`` (from ``source``); an unreadable entry, or
        one recorded for another scenario, is skipped with a warning."""
        folder = self.folder(scenario, source)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            try:
                schedule = Schedule.load(path)
            except ScheduleError as e:
                warn(f"failure database: skipped {e}")
                continue
            if schedule.scenario != scenario or schedule.source != source:
                warn(f"failure database: skipped {path}: it was recorded for scenario "
                     f"{schedule.scenario!r}"
                     + (f" of {schedule.source.file}" if schedule.source else "")
                     + ", not this one")
                continue
            yield path, schedule
