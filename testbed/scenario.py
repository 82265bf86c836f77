"""Scenarios: kernel code, CPU roles and checks, built once and run many times.

A scenario names the ``kernels/*.S`` files it links, how many CPUs it needs, the cache
configuration, what each CPU runs (``setup``) and what must hold after a run
(``check``, returning findings).  A ``Session`` links the image and builds the machine
once; every run resets it to the sealed baseline.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from . import layout
from .asm import Image, link_files
from .findings import Finding
from .machine import Machine
from .memory import CacheType, FetchConfig
from .resources import kernels_dir, scenarios_dir
from .schedule import Schedule, ScheduleMismatch
from .scheduler import RunResult, run
from .strategies import RandomWalk, Replay, Strategy

__all__ = [
    "Scenario",
    "ScenarioError",
    "Session",
    "link_kernels",
    "list_scenarios",
    "load_scenario",
    "session_for",
]


class ScenarioError(Exception):
    """A scenario that cannot be found or loaded."""


class Scenario:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kernels: ClassVar[tuple[str, ...]] = ()
    ncpus: ClassVar[int] = 2
    cache: ClassVar[CacheType] = CacheType.IDC0
    max_decisions: ClassVar[int] = 20_000
    # The oracle this scenario exists to make fire (or a tuple: that oracle, then others
    # it may also make fire), or None if it must find nothing.
    expect: ClassVar[str | tuple[str, ...] | None] = None
    # Check every run with the trace decoder (needs kernels/perf.S's ring buffer).
    trace_decode: ClassVar[bool] = False
    # The small scope exhaustive search explores by default (``testbed search``): integer
    # attributes of the scenario (``iterations``, ``passes``...) and ``ncpus``.
    search_scope: ClassVar[dict[str, int]] = {}

    def setup(self, m: Machine) -> None:
        """Start CPUs and initialise data (before the machine is sealed)."""
        raise NotImplementedError

    def check(self, m: Machine) -> list[Finding]:
        """Scenario assertions after a run (the machine still holds the final state)."""
        return []

    def observe(self, m: Machine) -> dict[str, object]:
        """Values worth reporting from the final state (not verdicts)."""
        return {}


def decode_check(m: Machine, result: RunResult) -> list[Finding]:
    """The decode oracle on a finished run: traces from its ground truth, records from
    the guest's ring buffer, the decoder's reconstruction against what ran."""
    from .decoder import decode_oracle
    from .etm import encode
    from .textpoke import RecordError, read_ring
    truth = result.ground_truth()
    traces = [encode(truth[c], result.events, c) for c in range(m.ncpus)]
    try:
        records = read_ring(m)
    except RecordError as e:
        return [Finding("perf-ring", f"the guest's text-poke ring buffer is malformed: {e}",
                        step=m.step_no)]
    return decode_oracle(truth, traces, m.model.initial, layout.TEXT_BASE, records,
                         m.image.symbolize)


def link_kernels(names: Sequence[str]) -> Image:
    base = kernels_dir()
    paths = []
    for name in names:
        path = base / name
        if not path.is_file():
            raise ScenarioError(f"kernel file {name!r} not found in {base}")
        paths.append(path)
    return link_files(paths, text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE,
                      defines=layout.ASM_DEFINES)


class Session:
    """One scenario, linked and set up once, run under any number of schedules."""

    def __init__(self, scenario: Scenario, *, ncpus: int | None = None,
                 cache: CacheType | None = None, budget: int = 200_000,
                 params: Mapping[str, int] | None = None) -> None:
        self.scenario = scenario
        self.params = dict(params or {})
        for key, value in self.params.items():
            if key == "ncpus":
                ncpus = value
                continue
            current = getattr(scenario, key, None)
            if key.startswith("_") or not isinstance(current, int) \
                    or isinstance(current, bool) or not isinstance(value, int):
                known = sorted(k for k in dir(scenario) if not k.startswith("_")
                               and type(getattr(scenario, k)) is int)
                raise ScenarioError(f"scenario {scenario.name!r} has no integer parameter "
                                    f"{key!r} (it has: {', '.join(known)})")
            setattr(scenario, key, value)
        self.image = link_kernels(scenario.kernels)
        self.cache = cache or scenario.cache
        self.machine = Machine(self.image, ncpus or scenario.ncpus, FetchConfig(self.cache),
                               budget=budget)
        scenario.setup(self.machine)
        self.machine.seal()

    def config(self) -> dict[str, object]:
        """What a schedule records besides the image: the machine and any parameters."""
        cfg: dict[str, object] = dict(self.machine.config_dict())
        if self.params:
            cfg["params"] = dict(sorted(self.params.items()))
        return cfg

    def run(self, strategy: Strategy, *, max_decisions: int | None = None) -> RunResult:
        m = self.machine
        result = run(m, strategy, scenario=self.scenario.name,
                     max_decisions=max_decisions or self.scenario.max_decisions)
        if self.params:
            result.schedule = dataclasses.replace(result.schedule, config=self.config())
        # Checks run even after a fault: what the workload logged before it still counts.
        result.findings.extend(self.scenario.check(m))
        if self.scenario.trace_decode:
            result.findings.extend(decode_check(m, result))
        result.observations = self.scenario.observe(m)
        return result

    def run_random(self, seed: int, **kw: float) -> RunResult:
        return self.run(RandomWalk(seed, **kw))

    def replay(self, schedule: Schedule) -> RunResult:
        schedule.check_against(self.scenario.name, self.image.digest, self.config())
        if dict(schedule.config.get("params") or {}) != self.params:
            raise ScheduleMismatch(
                f"schedule was recorded with scenario parameters "
                f"{dict(schedule.config.get('params') or {})}, this session has {self.params}")
        return self.run(Replay(schedule.decisions),
                        max_decisions=max(len(schedule.decisions), 1))


def session_for(schedule: Schedule) -> Session:
    """A session configured as ``schedule`` was recorded (CPUs, cache, parameters)."""
    cfg = schedule.config
    ncpus, cache, params = cfg.get("ncpus"), cfg.get("cache"), cfg.get("params")
    if params is not None and not (isinstance(params, Mapping) and all(
            isinstance(k, str) and isinstance(v, int) for k, v in params.items())):
        raise ScheduleMismatch(f"schedule parameters {params!r} are not name: integer pairs")
    try:
        cache_type = CacheType.parse(cache) if isinstance(cache, str) else None
    except ValueError as e:
        raise ScheduleMismatch(f"schedule configuration: {e}") from None
    return Session(load_scenario(schedule.scenario)(),
                   ncpus=ncpus if isinstance(ncpus, int) else None, cache=cache_type,
                   params=params)


def _load_module(path: Path) -> ModuleType:
    modname = f"testbed_scenario_{path.stem}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[modname]
        raise ScenarioError(f"{path}: {type(e).__name__}: {e}") from e
    return module


def _scenarios_in(module: ModuleType) -> list[type[Scenario]]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Scenario) and obj.name
            and obj.__module__ == module.__name__]


def list_scenarios() -> dict[str, type[Scenario]]:
    found: dict[str, type[Scenario]] = {}
    for path in sorted(scenarios_dir().glob("*.py")):
        if path.name.startswith("_"):
            continue
        for cls in _scenarios_in(_load_module(path)):
            found[cls.name] = cls
    return found


def load_scenario(name: str) -> type[Scenario]:
    """A scenario by its name, or by ``path/to/file.py[:name]``."""
    if name.endswith(".py") or ".py:" in name:
        file, _, which = name.partition(":")
        path = Path(file)
        if not path.is_file():
            raise ScenarioError(f"{file}: no such scenario file")
        classes = _scenarios_in(_load_module(path.resolve()))
        if which:
            classes = [c for c in classes if c.name == which]
        if len(classes) != 1:
            names = ", ".join(c.name for c in _scenarios_in(_load_module(path.resolve())))
            raise ScenarioError(f"{file}: name one scenario with {file}:NAME (has: {names})")
        return classes[0]
    known = list_scenarios()
    if name not in known:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
