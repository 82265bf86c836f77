"""Schedules: the recorded decisions of a run, as data.

A run is a pure function of (scenario, configuration, schedule).  A schedule
serialises to JSON with the scenario's name, the configuration and the digest of the
linked image it was recorded against, so that replaying it against another image is
refused with a clear message instead of silently meaning something else.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "Decision",
    "DecisionKind",
    "InvalidDecision",
    "ScenarioSource",
    "Schedule",
    "ScheduleError",
    "ScheduleMismatch",
    "fold_level",
]

FORMAT = "cmodx-testbed/schedule"
VERSION = 1

_FOLDED = ["without folded steps", "with folded steps (level 1: not the Arm model's "
           "barriers)", "with folded steps (level 2)"]


def fold_level(config: Mapping[str, object]) -> int:
    """The fold level a configuration records (``Machine.fold``): absent 0, ``true`` 1
    (recorded before level 2 existed), 2."""
    fold = config.get("fold")
    return 1 if fold is True else 2 if fold == 2 and type(fold) is int else 0


class ScheduleError(Exception):
    """A schedule file that cannot be read (names the file and the reason)."""


class ScheduleMismatch(ScheduleError):
    """A schedule recorded against another image, scenario or configuration."""


class InvalidDecision(Exception):
    """A decision that is not enabled in the current state (e.g. replay diverged)."""

    def __init__(self, index: int, decision: Decision, reason: str) -> None:
        super().__init__(f"decision {index} {decision.describe()} is not possible: {reason}")
        self.index = index
        self.decision = decision
        self.reason = reason


class DecisionKind(enum.Enum):
    STEP = "step"  # the CPU performs its next visible operation and runs to the one after
    IRQ = "irq"  # the CPU takes its pending IRQ and runs to its next visible operation
    CATCH_UP = "catchup"  # rule 7 at a point that is not a context synchronization event
    FILL = "fill"  # rule 4 from the PoU (a valid word is evicted first: rule 5)
    FILL_DSIDE = "fill-dside"  # rule 4 from the D-side (IDC=0), likewise
    EVICT = "evict"  # rule 5
    WRITE_BACK = "writeback"  # rule 6 (IDC=0)
    # The Arm data-memory model (``--memory arm``, testbed/dataside.py):
    # the CPU's next load reads older messages (addr: packed timestamps), or its next DC
    # cleans its line as it was at an earlier time (addr: that time; F2)
    READ = "read"
    FAIL = "fail"  # the CPU's next store-exclusive fails spuriously
    PROMISE = "promise"  # the CPU promises a write (addr: which of its solo run's stores)
    COMPLETE = "complete"  # rule 9: the CPU's addr-th outstanding cache maintenance completes

    # Members are singletons compared by identity: hash them so too (Enum's own hash is
    # a Python function, and searches hash decisions millions of times).
    __hash__ = object.__hash__


_CPU_KINDS = frozenset({DecisionKind.STEP, DecisionKind.IRQ, DecisionKind.CATCH_UP,
                        DecisionKind.FILL, DecisionKind.FILL_DSIDE, DecisionKind.EVICT,
                        DecisionKind.READ, DecisionKind.FAIL, DecisionKind.PROMISE,
                        DecisionKind.COMPLETE})
_ADDR_KINDS = frozenset({DecisionKind.FILL, DecisionKind.FILL_DSIDE, DecisionKind.EVICT,
                         DecisionKind.WRITE_BACK, DecisionKind.READ, DecisionKind.PROMISE,
                         DecisionKind.COMPLETE})


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    cpu: int = -1  # every kind but WRITE_BACK names a CPU
    addr: int = -1  # FILL/FILL_DSIDE/EVICT: text word offset; WRITE_BACK: line offset

    @property
    def is_model(self) -> bool:
        """A memory-model choice rather than a CPU running."""
        return self.kind not in (DecisionKind.STEP, DecisionKind.IRQ)

    def describe(self) -> str:
        parts = [self.kind.value]
        if self.cpu >= 0:
            parts.append(f"CPU{self.cpu}")
        if self.kind is DecisionKind.READ:
            parts.append("message " + "/".join(
                str((self.addr >> (20 * i)) & 0xFFFFF) for i in range(3)
                if i == 0 or self.addr >> (20 * i)))
        elif self.kind is DecisionKind.PROMISE:
            parts.append(f"store {self.addr}")
        elif self.kind is DecisionKind.COMPLETE:
            parts.append(f"maintenance {self.addr}")
        elif self.addr >= 0:
            parts.append(f"+{self.addr:#x}")
        return " ".join(parts)

    def to_json(self) -> list[Any]:
        out: list[Any] = [self.kind.value]
        if self.kind in _CPU_KINDS:
            out.append(self.cpu)
        if self.kind in _ADDR_KINDS:
            out.append(self.addr)
        return out

    @classmethod
    def from_json(cls, item: Any) -> Decision:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise ValueError(f"a decision is a list like [\"step\", 0], not {item!r}")
        try:
            kind = DecisionKind(item[0])
        except ValueError:
            known = ", ".join(k.value for k in DecisionKind)
            raise ValueError(f"unknown decision kind {item[0]!r} (known: {known})") from None
        want = 1 + (kind in _CPU_KINDS) + (kind in _ADDR_KINDS)
        if len(item) != want or not all(type(x) is int and x >= 0 for x in item[1:]):
            raise ValueError(f"decision {item!r}: expected {want - 1} non-negative integers")
        args = list(item[1:])
        cpu = args.pop(0) if kind in _CPU_KINDS else -1
        addr = args.pop(0) if kind in _ADDR_KINDS else -1
        return cls(kind, cpu, addr)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only when the block ends without an error, so
    that a reader (or a kill) never sees half of it: a temporary file in the same folder,
    flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_file``)."""
    with atomic_file(path) as f:
        f.write(text.encode())


def _check_config(cfg: Mapping[str, Any], source: str) -> None:
    """The recorded configuration's fields, type-checked (a bad one names the field)."""
    ncpus = cfg.get("ncpus")
    if ncpus is not None and (not isinstance(ncpus, int) or isinstance(ncpus, bool)
                              or ncpus < 1):
        raise ScheduleError(f"{source}: field 'config.ncpus' must be a positive integer, "
                            f"not {ncpus!r}")
    cache = cfg.get("cache")
    if cache is not None and not isinstance(cache, str):
        raise ScheduleError(f"{source}: field 'config.cache' must be a string, not {cache!r}")
    cpus = cfg.get("cpus")
    if cpus is not None and (not isinstance(cpus, list)
                             or not all(isinstance(c, str) for c in cpus)):
        raise ScheduleError(f"{source}: field 'config.cpus' must be a list of cache "
                            f"profiles (strings), not {cpus!r}")
    memory = cfg.get("memory")
    if memory is not None and memory not in ("sc", "arm"):
        raise ScheduleError(f"{source}: field 'config.memory' must be \"sc\" or \"arm\", "
                            f"not {memory!r}")
    promises = cfg.get("promises")
    if promises is not None and promises != "anytime":
        raise ScheduleError(f"{source}: field 'config.promises' must be \"anytime\", not "
                            f"{promises!r}")
    fold = cfg.get("fold")
    if fold is not None and fold is not True and not (type(fold) is int and fold == 2):
        raise ScheduleError(f"{source}: field 'config.fold' must be true or 2, not "
                            f"{fold!r}")
    private = cfg.get("private")
    if private is not None and private is not True:
        raise ScheduleError(f"{source}: field 'config.private' must be true, not {private!r}")
    patched = cfg.get("patched")
    if patched is not None and not (isinstance(patched, list) and all(
            type(o) is int and 0 <= o < 1 << 32 for o in patched)):
        raise ScheduleError(f"{source}: field 'config.patched' must be a list of text "
                            "offsets")
    ablate = cfg.get("ablate")
    if ablate is not None and not (isinstance(ablate, list) and all(
            isinstance(e, dict) and set(e) == {"function", "offset", "from", "to"}
            and isinstance(e["function"], str)
            and all(type(e[k]) is int and 0 <= e[k] < 1 << 32 for k in ("offset", "from", "to"))
            for e in ablate)):
        raise ScheduleError(f"{source}: field 'config.ablate' must be a list of "
                            "{function, offset, from, to} objects (32-bit integers)")
    params = cfg.get("params")
    if params is not None and not (isinstance(params, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in params.items())):
        raise ScheduleError(f"{source}: field 'config.params' must map names to integers")


# Interned STEP decisions: the hot path creates none.
_STEPS = tuple(Decision(DecisionKind.STEP, c) for c in range(256))


def step(cpu: int) -> Decision:
    return _STEPS[cpu] if cpu < len(_STEPS) else Decision(DecisionKind.STEP, cpu)


@dataclass(frozen=True)
class ScenarioSource:
    """Where a scenario came from when it is not one of the testbed's own: its file
    (absolute) and the SHA-256 of the file's content when the schedule was recorded."""

    file: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "sha256": self.sha256}

    @classmethod
    def from_json(cls, item: Any, source: str) -> ScenarioSource:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) \
                or not isinstance(item.get("sha256"), str) \
                or len(item["sha256"]) != 64 \
                or any(ch not in "0123456789abcdef" for ch in item["sha256"]):
            raise ScheduleError(f"{source}: field 'source' must be {{\"file\": PATH, "
                                "\"sha256\": 64 hex digits}")
        return cls(item["file"], item["sha256"])


@dataclass(frozen=True)
class Schedule:
    scenario: str
    image_digest: str
    config: Mapping[str, Any]
    decisions: tuple[Decision, ...]
    strategy: str = ""
    seed: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: ScenarioSource | None = None  # None: a scenario of the testbed's own

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "scenario": self.scenario,
            "image": self.image_digest,
            "config": dict(self.config),
            "strategy": self.strategy,
            "seed": self.seed,
            "meta": dict(self.meta),
            "decisions": [d.to_json() for d in self.decisions],
        }
        if self.source is not None:
            doc["source"] = self.source.to_json()
        return json.dumps(doc, indent=None, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<schedule>") -> Schedule:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScheduleError(f"{source}:{e.lineno}: not JSON: {e.msg}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ScheduleError(f"{source}: not a testbed schedule (no \"format\": \"{FORMAT}\")")
        if doc.get("version") != VERSION:
            raise ScheduleError(f"{source}: schedule format version {doc.get('version')!r}; "
                                f"this testbed reads version {VERSION}")
        for key, typ in (("scenario", str), ("image", str), ("config", dict),
                         ("decisions", list)):
            if not isinstance(doc.get(key), typ):
                raise ScheduleError(f"{source}: field {key!r} missing or not a {typ.__name__}")
        _check_config(doc["config"], source)
        for key, typs in (("strategy", (str,)), ("seed", (int, type(None))),
                          ("meta", (dict,))):
            if key in doc and (not isinstance(doc[key], typs) or isinstance(doc[key], bool)):
                raise ScheduleError(f"{source}: field {key!r} has the wrong type")
        decisions = []
        for i, item in enumerate(doc["decisions"]):
            try:
                decisions.append(Decision.from_json(item))
            except ValueError as e:
                raise ScheduleError(f"{source}: decision {i}: {e}") from None
        seed = doc.get("seed")
        meta = doc.get("meta")
        where = (ScenarioSource.from_json(doc["source"], source)
                 if doc.get("source") is not None else None)
        return cls(doc["scenario"], doc["image"], doc["config"], tuple(decisions),
                   str(doc.get("strategy", "")), seed if isinstance(seed, int) else None,
                   meta if isinstance(meta, dict) else {}, where)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a reader never sees half a schedule."""
        atomic_write(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schedule:
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except IsADirectoryError:
            raise ScheduleError(f"{path}: is a folder, not a schedule file") from None
        except OSError as e:
            raise ScheduleError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ScheduleError(f"{path}: not a testbed schedule (not UTF-8 text: byte "
                                f"{e.start})") from None
        return cls.from_json(text, str(path))

    def check_against(self, scenario: str, image_digest: str,
                      config: Mapping[str, Any]) -> None:
        """Refuse to replay against anything but what the schedule was recorded on."""
        if self.scenario != scenario:
            raise ScheduleMismatch(f"schedule was recorded for scenario {self.scenario!r}, "
                                   f"not {scenario!r}")
        if self.image_digest != image_digest:
            raise ScheduleMismatch(
                f"schedule was recorded against kernel image {self.image_digest}, but "
                f"scenario {scenario!r} now links to image {image_digest}: the kernel "
                "code changed since the schedule was recorded, so its decisions would mean "
                "something else. Re-find the race with the current code instead.")
        mine = self.config.get("memory", "sc")  # recorded before the switch existed: sc
        theirs = config.get("memory", "sc")
        if mine != theirs:
            raise ScheduleMismatch(
                f"schedule was recorded under the {mine!r} data-memory model, not "
                f"{theirs!r}: its decisions mean something else there (replay it with "
                f"--memory {mine})")
        if self.config.get("promises") != config.get("promises"):
            with_ = ["without", "with"]
            raise ScheduleMismatch(
                f"schedule was recorded {with_[bool(self.config.get('promises'))]} promises, "
                f"this session runs {with_[bool(config.get('promises'))]} them: its "
                "decisions mean something else there")
        if self.config.get("cpus") != config.get("cpus"):
            raise ScheduleMismatch(
                f"schedule was recorded with per-CPU caches {self.config.get('cpus')}, this "
                f"session has {config.get('cpus')}: its decisions mean something else there")
        mine, theirs = fold_level(config), fold_level(self.config)
        if mine != theirs:
            raise ScheduleMismatch(
                f"schedule was recorded {_FOLDED[theirs]}, this session runs "
                f"{_FOLDED[mine]}: its decisions mean something else there (a schedule "
                "records its 'fold')")
        if bool(self.config.get("private")) != bool(config.get("private")):
            with_ = ["without", "with"]
            raise ScheduleMismatch(
                f"schedule was recorded {with_[bool(self.config.get('private'))]} private "
                f"data, this session runs {with_[bool(config.get('private'))]} it: its "
                "decisions mean something else there (a schedule records its 'private')")
        for key, value in self.config.items():
            if key == "patched":  # fetch points: the session takes the schedule's
                continue
            if key in config and config[key] != value:
                raise ScheduleMismatch(f"schedule was recorded with {key}={value!r}, "
                                       f"not {key}={config[key]!r}")
