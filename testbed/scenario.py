"""Scenarios: kernel code, CPU roles and checks, built once and run many times.

A scenario names the ``kernels/*.S`` files it links, how many CPUs it needs, the cache
configuration, what each CPU runs (``setup``) and what must hold after a run
(``check``, returning findings).  A ``Session`` links the image and builds the machine
once; every run resets it to the sealed baseline.

A scenario may live anywhere: ``testbed run path/to/file.py[:NAME]`` imports the file
the user names, and its ``kernels`` may name ``.S`` files beside it.  A schedule
recorded on such a scenario records the file and its SHA-256 (``ScenarioSource``); a
schedule, campaign or failure-database entry never makes the testbed import a file by
itself: ``resolve_scenario`` asks for the file on the command line and checks its digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from . import layout
from .ablation import AblationError, from_config, to_config, weaken
from .asm import AsmError, Image, link_files
from .errors import scenario_code_error
from .execute import FOLD
from .findings import Finding
from .machine import MEMORY_MODELS, GuestError, Machine
from .memory import ERRATA, CacheType, CpuProfile, FetchConfig
from .oracles import MACHINE_ORACLES, default_oracles
from .oracles import select as select_oracles
from .resources import kernels_dir, scenarios_dir
from .schedule import ScenarioSource, Schedule, ScheduleMismatch, fold_level
from .scheduler import RunResult, run
from .strategies import RandomWalk, Replay, Strategy, StrategySpec
from .textpoke import declare_history

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioFileRequired",
    "Session",
    "link_kernels",
    "list_scenarios",
    "load_scenario",
    "resolve_scenario",
    "scenario_ref",
    "scenario_source",
    "scenarios_in_file",
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
    # The data-memory model: "arm" (the architecture's, testbed/dataside.py) or "sc"
    # (sequentially consistent: faster, and barriers make no difference).
    memory: ClassVar[str] = "arm"
    max_decisions: ClassVar[int] = 20_000
    # The oracle this scenario exists to make fire (or a tuple: that oracle, then others
    # it may also make fire), or None if it must find nothing.
    expect: ClassVar[str | tuple[str, ...] | None] = None
    # Check every run with the trace decoder (needs kernels/perf.S's ring buffer).
    trace_decode: ClassVar[bool] = False
    # The small scope exhaustive search explores by default (``testbed search``): integer
    # attributes of the scenario (``iterations``, ``passes``...) and ``ncpus``.
    search_scope: ClassVar[dict[str, int]] = {}
    # Helpers whose calls (BL) `testbed ablate` may weaken to NOP, e.g. kick_all_cpus_sync.
    ablatable: ClassVar[tuple[str, ...]] = ()
    # CPUs whose caches differ from ``cache`` (a heterogeneous system, or an erratum
    # profile): CPU number -> a cache type ("IDC0", "IDC1", "DIC1") or an erratum's name
    # (``testbed.memory.ERRATA``, e.g. "neoverse-n1-1542419").
    cpu_caches: ClassVar[Mapping[int, str]] = {}
    # The strategy `testbed run` and the pytest plugin use when none is named: its
    # StrategySpec fields, e.g. {"name": "pct", "depth": 2} for a race that needs one CPU
    # held in a window while another runs a long way (a random walk rarely does that).
    strategy: ClassVar[Mapping[str, object]] = {}

    def setup(self, m: Machine) -> None:
        """Start CPUs and initialise data (before the machine is sealed)."""
        raise NotImplementedError

    def check(self, m: Machine) -> list[Finding]:
        """Scenario assertions after a run (the machine still holds the final state)."""
        return []

    def observe(self, m: Machine) -> dict[str, object]:
        """Values worth reporting from the final state (not verdicts)."""
        return {}


def cpu_profiles(scenario: Scenario, ncpus: int, cache: CacheType,
                 override: Mapping[int, str] | None = None) -> tuple[CpuProfile, ...]:
    """Each CPU's cache profile: ``override`` (a schedule's or the command line's) or the
    scenario's ``cpu_caches``, the others ``cache``; () when every CPU is ``cache``."""
    spec = dict(scenario.cpu_caches if override is None else override)
    if not spec:
        return ()
    out = [CpuProfile(cache)] * ncpus
    for cpu, text in spec.items():
        if not isinstance(cpu, int) or isinstance(cpu, bool) or not 0 <= cpu < ncpus:
            raise ScenarioError(f"scenario {scenario.name!r}: cpu_caches: no CPU{cpu} "
                                f"on a machine of {ncpus}")
        try:
            out[cpu] = CpuProfile.parse(str(text))
        except ValueError as e:
            raise ScenarioError(f"scenario {scenario.name!r}: cpu_caches[{cpu}]: {e} "
                                f"(or an erratum: {', '.join(sorted(ERRATA))})") from None
    return tuple(out)


def default_strategy(cls: type[Scenario]) -> StrategySpec:
    """The strategy ``cls`` names for itself (``Scenario.strategy``), or a random walk;
    ``ScenarioError`` if its fields are not a strategy's."""
    fields = dict(cls.strategy)
    known = ("name", "depth", "k", "p_model")
    unknown = sorted(str(k) for k in fields if k not in known)
    if unknown:
        raise ScenarioError(f"scenario {cls.name!r}: strategy: unknown field "
                            f"{unknown[0]!r} (known: {', '.join(known)})")
    try:
        return StrategySpec(**fields)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ScenarioError(f"scenario {cls.name!r}: strategy {dict(cls.strategy)!r}: "
                            f"{e}") from None


def link_kernels(names: Sequence[str], here: Path | None = None) -> Image:
    """Link the kernel files ``names``: each is looked up next to the scenario's file
    (``here``, for a scenario of one's own) first, then in the project's ``kernels/``;
    an absolute path is taken as it is."""
    base = kernels_dir()
    paths = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ScenarioError(f"kernels: {name!r} is not a file name")
        candidates = ([Path(name)] if Path(name).is_absolute() else
                      ([here / name] if here is not None else []) + [base / name])
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            where = " or ".join(str(c.parent) for c in candidates)
            raise ScenarioError(f"kernel file {name!r} not found in {where}")
        paths.append(path)
    return link_files(paths, text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE,
                      defines=layout.ASM_DEFINES)


def scenario_file(cls: type[Scenario]) -> Path:
    """The file that defines ``cls``."""
    return Path(inspect.getfile(cls)).resolve()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scenario_source(cls: type[Scenario]) -> ScenarioSource | None:
    """Where ``cls`` comes from, for a schedule to record: None for the testbed's own
    scenarios (found again by name), else its file and the file's SHA-256."""
    path = scenario_file(cls)
    if path.parent == scenarios_dir().resolve():
        return None
    return ScenarioSource(str(path), file_digest(path))


MAX_PARAM = 1 << 20  # a scenario parameter above this is a typo, not a workload


class Session:
    """One scenario, linked and set up once, run under any number of schedules.

    ``oracles`` names the oracles to run (``testbed.oracles``); by default every one
    that applies to the scenario.  ``fold``: folded steps and parked spins (execute.py),
    ``True`` at ``execute.FOLD`` (the default), or a level (0: none, as a schedule
    recorded without them replays: ``session_for``)."""

    def __init__(self, scenario: Scenario, *, ncpus: int | None = None,
                 cache: CacheType | None = None, budget: int = 200_000,
                 params: Mapping[str, int] | None = None,
                 oracles: Collection[str] | None = None, memory: str | None = None,
                 ablate: Sequence[Mapping[str, object]] = (), promises: bool = False,
                 fold: bool | int = True,
                 cpu_caches: Mapping[int, str] | None = None, private: bool = True) -> None:
        self.scenario = scenario
        self.params = dict(params or {})
        for key, value in self.params.items():
            if not isinstance(value, int) or isinstance(value, bool) \
                    or not 0 <= value <= MAX_PARAM:
                raise ScenarioError(f"--set {key}={value!r}: a scenario parameter is an "
                                    f"integer from 0 to {MAX_PARAM}")
            if key == "ncpus":
                ncpus = value
                continue
            current = getattr(scenario, key, None)
            if key.startswith("_") or not isinstance(current, int) \
                    or isinstance(current, bool):
                known = sorted(k for k in dir(scenario) if not k.startswith("_")
                               and type(getattr(scenario, k)) is int)
                raise ScenarioError(f"--set {key}: scenario {scenario.name!r} has no integer "
                                    f"parameter {key!r} (it has: {', '.join(known)})")
            setattr(scenario, key, value)
        n = ncpus if ncpus is not None else scenario.ncpus
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= layout.MAX_CPUS:
            what = ("--cpus" if ncpus is not None else
                    f"{scenario_file(type(scenario))}: scenario {scenario.name!r}: ncpus")
            raise ScenarioError(f"{what} must be 1..{layout.MAX_CPUS}, not {n!r}")
        self.source = scenario_source(type(scenario))
        self.image = link_kernels(scenario.kernels, Path(self.source.file).parent
                                  if self.source is not None else None)
        # Points weakened in this image (testbed.ablation; config "ablate"): found in the
        # linked image, so that one recorded before the kernel changed is refused.
        try:
            self.ablated = from_config(self.image, list(ablate), scenario.ablatable)
        except AblationError as e:
            raise ScheduleMismatch(f"ablation: {e}") from None
        if self.ablated:
            self.image = weaken(self.image, self.ablated)
        self.cache = cache or scenario.cache
        self.memory = memory or scenario.memory
        if self.memory not in MEMORY_MODELS:
            raise ScenarioError(f"{scenario_file(type(scenario))}: scenario "
                                f"{scenario.name!r}: memory must be one of "
                                f"{', '.join(MEMORY_MODELS)}, not {self.memory!r}")
        if promises and self.memory != "arm":
            raise ScenarioError("--promises needs --memory arm (promises are the Arm "
                                "model's out-of-order writes)")
        self.machine = Machine(self.image, n, FetchConfig(self.cache, cpus=cpu_profiles(
                                   scenario, n, self.cache, cpu_caches)), budget=budget,
                               memory=self.memory, promises="anytime" if promises else False,
                               fold=FOLD if fold is True else int(fold), private=private)
        declare_history(self.machine)  # the perf ring: left out of state keys
        self.oracles = (default_oracles(scenario) if oracles is None
                        else select_oracles(scenario, oracles))
        names = {o.name for o in self.oracles}
        for o in MACHINE_ORACLES:
            o.configure(self.machine, o.name in names)
        try:
            scenario.setup(self.machine)
        except (GuestError, ScenarioError, AsmError):
            raise
        except Exception as e:
            raise scenario_code_error(scenario.name, "setup", e) from e
        self.machine.seal()
        # Text words earlier runs stored to, beyond what the scenario declared: fetch
        # points from the start of later runs (``Machine.may_patch``).  Each schedule
        # records the set it ran with (config "patched"), so that replay rebuilds it.
        self.patched: set[int] = set()
        self.learning = True  # the search turns it off: its decision points must not move

    def config(self) -> dict[str, object]:
        """What a schedule records besides the image: the machine, any parameters, and
        the fetch points learned from earlier runs (text offsets)."""
        cfg: dict[str, object] = dict(self.machine.config_dict())
        if self.params:
            cfg["params"] = dict(sorted(self.params.items()))
        if self.patched:
            cfg["patched"] = sorted(a - layout.TEXT_BASE for a in self.patched)
        if self.ablated:
            cfg["ablate"] = to_config(self.ablated)
        return cfg

    def set_patched(self, offsets: Sequence[int]) -> None:
        """Run with exactly these learned fetch points (text offsets), as a schedule
        recorded them."""
        self.patched = {layout.TEXT_BASE + (o & ~3) for o in offsets}
        self.machine.set_patched(self.patched)

    def run(self, strategy: Strategy, *, max_decisions: int | None = None) -> RunResult:
        m = self.machine
        # What the schedule records beyond the machine's own configuration, taken before
        # the run: the fetch points it starts with.
        config = self.config() if self.params or self.patched or self.ablated else None
        result = run(m, strategy, scenario=self.scenario.name,
                     max_decisions=max_decisions or self.scenario.max_decisions)
        if config is not None or self.source is not None:
            result.schedule = dataclasses.replace(
                result.schedule, config=config or result.schedule.config, source=self.source)
        # Checks run even after a fault: what the workload logged before it still counts.
        raised = list(result.findings)
        result.findings = []
        for oracle in self.oracles:
            result.findings.extend(oracle.check(m, result, raised))
        if not m.valid:  # a promise left unfulfilled: not an execution, no finding (P3)
            result.findings = []
            result.invalid = m.invalid or "a promise left unfulfilled"
        try:
            result.observations = self.scenario.observe(m)
        except Exception as e:
            raise scenario_code_error(self.scenario.name, "observe", e) from e
        stored = {layout.TEXT_BASE + w for w in m.model.touched} - m.declared
        if stored and self.learning:  # fetch points for the runs after this one
            self.patched |= stored
            m.set_patched(self.patched)
        return result

    def run_random(self, seed: int, **kw: float) -> RunResult:
        return self.run(RandomWalk(seed, **kw))

    def replay(self, schedule: Schedule, *,
               wrap: Callable[[Strategy], Strategy] | None = None) -> RunResult:
        """Replay ``schedule`` exactly (refused if recorded on another image, scenario or
        configuration).  ``wrap`` may wrap the replaying strategy (e.g. to observe each
        decision before it is applied) without changing what it decides."""
        schedule.check_against(self.scenario.name, self.image.digest, self.config())
        patched = schedule.config.get("patched") or []
        if sorted(self.patched) != sorted(layout.TEXT_BASE + o for o in patched):
            self.set_patched(patched)
        if dict(schedule.config.get("params") or {}) != self.params:
            raise ScheduleMismatch(
                f"schedule was recorded with scenario parameters "
                f"{dict(schedule.config.get('params') or {})}, this session has {self.params}")
        strategy: Strategy = Replay(schedule.decisions)
        return self.run(wrap(strategy) if wrap is not None else strategy,
                        max_decisions=max(len(schedule.decisions), 1))


class ScenarioFileRequired(ScenarioError):
    """A schedule or campaign whose scenario is a file of the user's: the file runs only
    when the user names it on the command line."""

    def __init__(self, file: str, name: str) -> None:
        super().__init__(f"scenario {name!r} comes from {file}, which runs only when you "
                         "name it")
        self.file = file
        self.name = name


def resolve_scenario(name: str, source: ScenarioSource | None,
                     scenario_path: str | None = None) -> type[Scenario]:
    """The scenario a schedule or campaign recorded, without running any file it names:
    a scenario of the testbed's own by name, or, when it came from a file of one's own,
    the file the user named (``scenario_path``), checked against the recorded SHA-256."""
    legacy = name.rpartition(":")[2] if ".py:" in name else None  # "path/x.py:name"
    if scenario_path is not None:
        path = Path(scenario_path)
        if not path.is_file():
            raise ScenarioError(f"--scenario {scenario_path}: no such scenario file")
        wanted = legacy or name
        digest = file_digest(path.resolve())  # before the file runs: a changed file never does
        if source is not None and digest != source.sha256:
            raise ScheduleMismatch(
                f"--scenario {scenario_path}: its content (sha256 {digest}) is not the "
                f"file the schedule was recorded with ({source.file}, sha256 "
                f"{source.sha256}); the scenario changed, so the schedule would mean "
                "something else")
        classes = _scenarios_in(_load_module(path.resolve()))
        match = [c for c in classes if c.name == wanted]
        if not match:
            raise ScenarioError(f"--scenario {scenario_path}: has no scenario {wanted!r} "
                                f"(it has: {', '.join(c.name for c in classes) or 'none'})")
        return match[0]
    if source is not None:
        raise ScenarioFileRequired(source.file, name)
    if legacy is not None or name.endswith(".py"):
        raise ScenarioFileRequired(name.rpartition(":")[0] if legacy else name,
                                   legacy or name)
    known = list_scenarios()
    if name not in known:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def session_for(schedule: Schedule, scenario_path: str | None = None, *,
                oracles: Collection[str] | None = None) -> Session:
    """A session configured as ``schedule`` was recorded (scenario, CPUs, cache,
    parameters).  A scenario file of one's own is loaded only from ``scenario_path``."""
    cls = resolve_scenario(schedule.scenario, schedule.source, scenario_path)
    cfg = schedule.config
    ncpus, cache, params = cfg.get("ncpus"), cfg.get("cache"), cfg.get("params")
    memory = cfg.get("memory", "sc")  # recorded before the switch: sequentially consistent
    ablate = cfg.get("ablate")
    promises = cfg.get("promises") == "anytime"
    fold = fold_level(cfg)  # recorded before folded steps existed: 0, without them
    private = cfg.get("private") is True  # recorded before private data existed: off
    cpus = cfg.get("cpus")  # per-CPU cache profiles, when they differ
    try:
        cache_type = CacheType.parse(cache) if isinstance(cache, str) else None
    except ValueError as e:
        raise ScheduleMismatch(f"schedule configuration: {e}") from None
    return Session(cls(), ncpus=ncpus if isinstance(ncpus, int) else None, cache=cache_type,
                   params=params if isinstance(params, dict) else None, oracles=oracles,
                   memory=memory if isinstance(memory, str) else None,
                   ablate=ablate if isinstance(ablate, list) else (), promises=promises,
                   fold=fold, cpu_caches=dict(enumerate(cpus)) if isinstance(cpus, list)
                   else {}, private=private)


def _load_module(path: Path) -> ModuleType:
    """Import the scenario file ``path`` (once per process).  Only files the user named
    come here, and the project's own ``scenarios/``."""
    key = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    modname = f"testbed_scenario_{path.stem}_{key}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[modname]
        raise ScenarioError(f"{e.filename or path}:{e.lineno}: {e.msg}") from None
    except Exception as e:
        del sys.modules[modname]
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if Path(f.filename).resolve() == path]
        line = f":{frames[-1].lineno}" if frames else ""
        raise ScenarioError(f"{path}{line}: importing it raised {type(e).__name__}: {e}") \
            from None
    return module


def _scenarios_in(module: ModuleType) -> list[type[Scenario]]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Scenario) and obj.name
            and obj.__module__ == module.__name__]


def list_scenarios() -> dict[str, type[Scenario]]:
    """The testbed's own scenarios (``scenarios/``), by name."""
    found: dict[str, type[Scenario]] = {}
    for path in sorted(scenarios_dir().glob("*.py")):
        if path.name.startswith("_"):
            continue
        for cls in _scenarios_in(_load_module(path.resolve())):
            found[cls.name] = cls
    return found


def scenarios_in_file(path: Path) -> list[type[Scenario]]:
    """Every scenario a file defines (the pytest plugin collects them)."""
    return _scenarios_in(_load_module(path.resolve()))


def load_scenario(name: str) -> type[Scenario]:
    """A scenario by its name, or by ``path/to/file.py[:name]`` (a file the user names:
    it is imported, so it runs)."""
    if name.endswith(".py") or ".py:" in name:
        file, which = (name, "") if name.endswith(".py") else name.rsplit(".py:", 1)
        file = file if file.endswith(".py") else file + ".py"
        path = Path(file)
        if not path.is_file():
            raise ScenarioError(f"{file}: no such scenario file")
        every = _scenarios_in(_load_module(path.resolve()))
        classes = [c for c in every if c.name == which] if which else every
        if len(classes) != 1:
            names = ", ".join(c.name for c in every) or "no Scenario subclass with a name"
            if which:
                raise ScenarioError(f"{file}: has no scenario {which!r} (it has: {names})")
            raise ScenarioError(f"{file}: name one scenario with {file}:NAME (it has: "
                                f"{names})")
        return classes[0]
    known = list_scenarios()
    if name not in known:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def scenario_ref(cls: type[Scenario]) -> str:
    """How the command line names ``cls``: its name, or ``path/file.py:name``."""
    source = scenario_source(cls)
    if source is None:
        return cls.name
    from .findings import display_path
    return f"{display_path(Path(source.file))}:{cls.name}"
