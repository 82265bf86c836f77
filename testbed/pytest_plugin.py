"""pytest plugin: scenario files are collected as tests.

Every ``Scenario`` subclass in a collected scenario file (a ``.py`` file under a
folder named ``scenarios``, or any file given with ``--testbed-scenarios``) becomes one
test item that runs ``--testbed-schedules`` schedules from ``--testbed-seed`` with
``--testbed-strategy``.  A scenario whose ``expect`` names an oracle passes when that
oracle finds something (a tuple names it first, then other oracles it may also make
fire); one whose ``expect`` is None passes when nothing is found.
Schedules that failed before (the failure database, ``testbed/faildb.py``) are replayed
first.
A failure prints the finding and the command that replays it, and the reproducer is
kept under ``--testbed-out``.  With pytest-xdist (``-n auto``) the scenarios spread
over the cores like any other tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .faildb import FailureDB, default_db
from .scenario import Scenario, Session, _load_module, _scenarios_in
from .scheduler import RunResult
from .strategies import RandomWalk, RoundRobin, Strategy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed", "cmodx-testbed scenarios")
    group.addoption("--testbed-schedules", type=int, default=200,
                    help="schedules to run per scenario (default 200)")
    group.addoption("--testbed-seed", type=int,
                    default=int(os.environ.get("TESTBED_SEED", "0")),
                    help="first seed (default: $TESTBED_SEED or 0)")
    group.addoption("--testbed-strategy", choices=["random", "rr"], default="random")
    group.addoption("--testbed-out", default="testbed-findings",
                    help="where reproducers of failures are written")
    group.addoption("--testbed-scenarios", action="store_true",
                    help="collect Scenario classes from every .py file given")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".py" or file_path.name.startswith("_"):
        return None
    if file_path.parent.name == "scenarios" or parent.config.getoption("--testbed-scenarios"):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        for cls in _scenarios_in(_load_module(self.path.resolve())):
            yield ScenarioItem.from_parent(self, name=cls.name, scenario=cls)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: type[Scenario], **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario

    def runtest(self) -> None:
        cfg = self.config
        n = cfg.getoption("--testbed-schedules")
        seed0 = cfg.getoption("--testbed-seed")
        rr = cfg.getoption("--testbed-strategy") == "rr"
        session = Session(self.scenario())
        expect = self.scenario.expect
        wanted = (expect,) if isinstance(expect, str) else tuple(expect or ())
        db = default_db()

        def results() -> Iterator[tuple[RunResult, str, bool]]:
            """(result, what it is, whether it is new): known failing schedules first
            (the failure database, like Hypothesis's), then the schedules asked for."""
            for known in db.replay_all(session) if db is not None else []:
                yield known.result, f"a known failing schedule ({known.path}) still fails", \
                    False
            for i in range(n):
                strategy: Strategy = RoundRobin() if rr else RandomWalk(seed0 + i)
                yield session.run(strategy), \
                    f"unexpected finding in schedule {i} (seed {seed0 + i})", True

        for result, what, new in results():
            wrong = [f for f in result.findings if f.oracle not in wanted]
            if wrong:
                self._fail(result, what, wrong, db)
            if wanted and any(f.oracle == wanted[0] for f in result.findings):
                if db is not None and new:
                    db.save(result.schedule)
                return  # the race the scenario exists to show was found
        if wanted:
            raise ScenarioFailure(f"expected a {wanted[0]!r} finding in {n} schedules from "
                                  f"seed {seed0}, found none")

    def _fail(self, result: RunResult, why: str, findings: list[Any],
              db: FailureDB | None = None) -> None:
        out = Path(self.config.getoption("--testbed-out"))
        path = out / f"{result.scenario}-{findings[0].oracle}.json"
        result.schedule.save(path)
        if db is not None:
            db.save(result.schedule)
        lines = [why] + [f"  [{f.oracle}] step {f.step}: {f.message}" for f in findings]
        lines.append(f"  replay: testbed replay {path} --timeline")
        raise ScenarioFailure("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"


class ScenarioFailure(Exception):
    """A scenario did not give its expected result."""
