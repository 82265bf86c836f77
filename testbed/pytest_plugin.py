"""pytest plugin: scenario files are collected as tests.

Which files are scenario files:

- a ``.py`` file named on the command line (``python -m pytest my/ftrace_race.py``) that
  defines a ``Scenario`` subclass and is not a test module (``test_*.py``);
- every ``.py`` file under the folders the ``testbed_scenarios`` ini option lists
  (``[tool.pytest.ini_options] testbed_scenarios = ["races"]``), or under a folder named
  ``scenarios``;
- with ``--testbed-scenarios``, every ``.py`` file pytest is given.

Every ``Scenario`` subclass in such a file becomes one test item that runs
``--testbed-schedules`` schedules from ``--testbed-seed`` with ``--testbed-strategy``
(``testbed.runs.run_schedules``: the failure database's schedules first).  A scenario
whose ``expect`` names an oracle passes when that oracle finds something (a tuple names
it first, then other oracles it may also make fire); one whose ``expect`` is None
passes when nothing is found.  A failure prints the finding and the command that
replays it, and the reproducer is kept under ``--testbed-out``.

The schedules run in the item's setup, so a scenario whose own code raises (its
``setup``, ``check`` or ``observe``) is reported as an *error*, not as a failure: a
crashed scenario is not a race.  With pytest-xdist (``-n auto``) the scenarios spread
over the cores like any other tests.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .faildb import default_db
from .findings import finding_text
from .runs import FindingsLog, Run, replay_command, run_schedules
from .scenario import Scenario, ScenarioError, Session, default_strategy, scenarios_in_file
from .strategies import StrategySpec


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed", "cmodx-testbed scenarios")
    group.addoption("--testbed-schedules", type=int, default=200,
                    help="schedules to run per scenario (default 200)")
    group.addoption("--testbed-seed", type=int, default=None,
                    help="first seed (default: $TESTBED_SEED or 0)")
    group.addoption("--testbed-strategy", choices=["random", "rr", "round-robin", "pct"],
                    default=None, help="default: each scenario's (random unless it "
                    "names one: Scenario.strategy)")
    group.addoption("--testbed-memory", choices=["arm", "sc"], default=None,
                    help="the data-memory model (default: each scenario's, arm unless it "
                    "says)")
    group.addoption("--testbed-promises", action="store_true",
                    help="with the arm model: stores may become visible before earlier "
                    "accesses of their CPU (Promising-ARM's promises; slower)")
    group.addoption("--testbed-out", default="testbed-findings",
                    help="where reproducers of failures are written")
    group.addoption("--testbed-scenarios", action="store_true",
                    help="collect Scenario classes from every .py file given")
    parser.addini("testbed_scenarios", type="paths", default=[],
                  help="folders whose .py files are testbed scenario files")


def _seed(config: pytest.Config) -> int:
    seed = config.getoption("--testbed-seed")
    if seed is not None:
        return int(seed)
    text = os.environ.get("TESTBED_SEED", "") or "0"
    try:
        return int(text, 0)
    except ValueError:
        raise pytest.UsageError(f"$TESTBED_SEED={text!r}: not an integer") from None


def _is_scenario_file(file_path: Path, parent: pytest.Collector) -> bool:
    if file_path.suffix != ".py" or file_path.name.startswith(("_", "test_")) \
            or file_path.name.endswith("_test.py") or file_path.name == "conftest.py":
        return False
    config = parent.config
    if config.getoption("--testbed-scenarios") or file_path.parent.name == "scenarios":
        return True
    folders = [Path(p).resolve() for p in config.getini("testbed_scenarios")]
    if any(file_path.resolve().is_relative_to(f) for f in folders):
        return True
    if parent.session.isinitpath(file_path):
        try:  # named on the command line: a scenario file if it defines one
            return "Scenario" in file_path.read_text(errors="replace")
        except OSError:
            return False
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_scenario_file(file_path, parent):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            classes = scenarios_in_file(self.path)
        except ScenarioError as e:
            raise self.CollectError(str(e)) from None
        for cls in classes:
            yield ScenarioItem.from_parent(self, name=cls.name, scenario=cls)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: type[Scenario], **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.verdict: str | None = None  # set by setup(): why the item fails, if it does

    def setup(self) -> None:
        """Run the schedules (here, so that a raising scenario is an error)."""
        cfg = self.config
        n = cfg.getoption("--testbed-schedules")
        seed0 = _seed(cfg)
        named = cfg.getoption("--testbed-strategy")
        spec = default_strategy(self.scenario) if named is None else StrategySpec(named)
        memory = cfg.getoption("--testbed-memory") or self.scenario.memory
        session = Session(self.scenario(), memory=memory,
                          promises=cfg.getoption("--testbed-promises") and memory == "arm")
        expect = self.scenario.expect
        wanted = (expect,) if isinstance(expect, str) else tuple(expect or ())
        db = default_db()
        log = FindingsLog(session, Path(cfg.getoption("--testbed-out")), db)
        for run in run_schedules(session, spec, range(seed0, seed0 + n), db=db,
                                 warn=lambda text: warnings.warn(text, stacklevel=1)):
            wrong = [f for f in run.result.findings if f.oracle not in wanted]
            if wrong:
                self.verdict = self._failure(session, log, run, wrong)
                return
            if wanted and any(f.oracle == wanted[0] for f in run.result.findings):
                if db is not None and run.known is None:
                    db.save(run.result.schedule)
                return  # the race the scenario exists to show was found
        if wanted:
            self.verdict = (f"expected a {wanted[0]!r} finding in {n} schedules from "
                            f"seed {seed0}, found none")

    def _failure(self, session: Session, log: FindingsLog, run: Run,
                 findings: list[Any]) -> str:
        why = (f"a known failing schedule ({run.known}) still fails" if run.known
               else f"unexpected finding in schedule {run.index} (seed {run.seed})")
        recs = log.add(run, f"{findings[0].oracle}-pytest")
        path = recs[0].reproducer if recs else None
        lines = [why] + [f"  {finding_text(f)}" for f in findings]
        if path is not None:
            lines.append("  replay: " + replay_command(path, session.source, "replay",
                                                        "--timeline"))
        return "\n".join(lines)

    def runtest(self) -> None:
        if self.verdict is not None:
            raise ScenarioFailure(self.verdict)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, (ScenarioFailure, ScenarioError)):
            return str(excinfo.value)
        from .errors import ScenarioCodeError
        if isinstance(excinfo.value, ScenarioCodeError):
            return f"the scenario's own code raised: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"


class ScenarioFailure(Exception):
    """A scenario did not give its expected result."""
