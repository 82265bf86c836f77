"""Preemption-bounded exhaustive search of a scenario, with checkpoints.

CHESS (Musuvathi and Qadeer, "Iterative Context Bounding for Systematic Testing of
Multithreaded Programs", PLDI 2007) observed that most concurrency bugs show up with
very few preemptions.  This search explores every schedule of a scenario that uses at
most ``preemptions`` preemptions and at most ``model_events`` memory-model choices,
with state hashing, and says whether that bounded space was covered.

- A *preemption* is running (or delivering an IRQ to) another CPU while the CPU that
  ran last could still run its next operation.  Switching away from a CPU that cannot
  step (switched off, waiting for an interrupt) or that spins (its next operation is
  YIELD or WFE) is free, as in CHESS, so that spin loops cost nothing.
- A *model event* is one memory-model choice (catch-up, fill, eviction, write-back),
  offered in the compact form exhaustive exploration uses (``Machine.model_choices``).
- Work is taken cheapest first (fewest preemptions plus model events), depth first
  within a cost: the first witness of each finding uses as few preemptions and model
  events as any, and a search stopped by its bounds has covered every cheaper schedule.
- A state is identified by ``Machine.state_key()`` plus the CPU that ran last; it is
  expanded again only when reached more cheaply (fewer preemptions or fewer model
  events than every earlier visit).  Oracles that judge the final state (every oracle of
  the project but the trace decoder's) are exact under this hashing; the decode oracle
  judges history, so for ``trace_decode`` scenarios a decode finding reachable only
  along a pruned path can be missed: the result says so.
- The key leaves out what the machine holds as history (``Machine.set_history``: the
  perf ring and its clock, which the guest writes and never reads; a guest read of it
  is a finding).  Two states that differ only in records already written continue
  identically, so no state the guest can tell apart is lost; what is merged is which
  timestamps and record orders were written on the way, which only the oracles that
  read the ring judge (they judge the path that reached each final state).  On
  ``brk_refcount_sync`` at 2 preemptions and 1 model event (with folded steps) this
  takes the search from 266,360 states to 44,998 with no finding either way, but it
  loses trace-decode findings that timestamps alone tell apart (one of
  ``test_ablation``'s): so the key keeps the history when the session runs the trace
  decoder, and leaves it out otherwise (``keyed_history`` chooses).
- Folded steps and parked spins (``testbed/execute.py``) remove scheduling points that
  commute with every other decision, and spin iterations that come back to the state
  they started from.

A checkpoint file is gzip-compressed JSON (``CHECKPOINT_VERSION``; never a pickle):
the search's identity (scenario, image digest, configuration, bounded space), its
counters, its findings with their witness paths, the work list (as decision paths from
the baseline, replayed on resume) and the visited set.  Every field is type-checked on
load; a bad one raises ``CheckpointError`` naming the file and the field.  A search
stopped by a bound, SIGINT or a kill resumes from its last checkpoint and gives exactly
the result the uninterrupted search gives.

Memory is bounded (``SearchBounds.max_memory``, the process's resident set): the cache of
saved states and the saved states work items keep are sized from what is left under the
bound after the visited set and the work list, and the resident set is read every
``MEMORY_CHECK_EVERY`` expansions or ``MEMORY_CHECK_SECONDS``, whichever comes first;
reaching the bound ends the search, not covered, with its checkpoint.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import math
import os
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .findings import Finding, OracleName
from .machine import Machine, MachineState
from .schedule import Decision, DecisionKind, InvalidDecision, Schedule, atomic_file, step
from .strategies import held

if TYPE_CHECKING:
    from .scenario import Session

__all__ = ["DEFAULT_MEMORY", "MIN_MEMORY", "CheckpointError", "SearchBounds", "SearchResult",
           "resident_memory", "search", "state_bytes"]

CHECKPOINT_FORMAT = "cmodx-testbed/search-checkpoint"
CHECKPOINT_VERSION = 5  # 1 was a gzip-compressed pickle (it could run code); 2 had
# blake2b state keys (issue 15 made them XXH3: testbed/statehash.py); 3's keys digested
# the history (Machine.set_history) and had no folded steps; 4's keys digested every part
# at once (5: the core's digest, the fetch model's and the findings: snapshot.state_key)
CACHE_STRIDE = 8  # replayed paths keep a saved state every this many decisions
# Saved states kept for replays, at most: fewer when they do not fit under the memory
# bound.  A state is ~80 KB with 2 CPUs and ~2.2 MB with 64 (``state_bytes``, measured:
# each CPU's Unicorn context is 12.6 KB, its stack 8 KB, its per-CPU area 4 KB, and the
# fetch model keeps an I-cache and an I-view of the text per CPU).
CACHE_SIZE = 2000
MIN_CACHE = 4
MIB = 1 << 20
DEFAULT_MEMORY = 4 << 30  # SearchBounds.max_memory's default (bytes)
MIN_MEMORY = 64 * MIB  # below this the process's own baseline leaves nothing to search with
MAX_COST = 10_000  # a preemption or model-event bound beyond this is no bound
# Measured with tracemalloc (Python 3.11): a visited-set entry (16-byte key, last CPU and
# its visits) ~280 bytes; a work item with its path node ~145 bytes.
VISIT_BYTES = 300
ITEM_BYTES = 150
# The cache, and the saved states work items keep, each get 1/STATE_SHARE of the memory
# left under the bound once the visited set and the work list are accounted for (the
# rest: their growth, temporaries, the allocator's slack, the checkpoint's writing).
STATE_SHARE = 8
# The resident set is read (~30 us) every this many expansions or seconds, which first.
MEMORY_CHECK_EVERY = 32
MEMORY_CHECK_SECONDS = 0.1


class CheckpointError(Exception):
    """A checkpoint that cannot be used (names the file, the field and the reason)."""


def _size_text(n: int) -> str:
    return f"{n // MIB} MB" if n % MIB == 0 else f"{n} bytes"


def _check_int(option: str, value: object, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{option} must be an integer, not {value!r}")
    if value < low:
        raise ValueError(f"{option} must be >= {low}, not {value}")
    if high is not None and value > high:
        raise ValueError(f"{option} must be <= {high}, not {value}")


@dataclass(frozen=True)
class SearchBounds:
    """The bounded space (``preemptions``, ``model_events``) and when the search gives up
    (``max_states`` expanded states, ``max_seconds``, ``max_memory`` bytes of the process's
    resident memory).  A value that makes no sense raises ``ValueError`` naming the option
    as the command line spells it."""

    preemptions: int = 2
    model_events: int = 1
    max_states: int = 2_000_000
    max_seconds: float = 600.0
    max_memory: int = DEFAULT_MEMORY

    def __post_init__(self) -> None:
        _check_int("--preemptions", self.preemptions, 0, MAX_COST)
        _check_int("--model-events", self.model_events, 0, MAX_COST)
        _check_int("--max-states", self.max_states, 1)
        s = self.max_seconds
        if not isinstance(s, int | float) or isinstance(s, bool):
            raise ValueError(f"--max-seconds must be a number, not {s!r}")
        if not s > 0:  # NaN too
            raise ValueError(f"--max-seconds must be > 0, not {s}")
        mem = self.max_memory
        if not isinstance(mem, int) or isinstance(mem, bool):
            raise ValueError(f"--max-memory must be an integer number of bytes, not {mem!r}")
        if mem < MIN_MEMORY:
            raise ValueError(f"--max-memory must be at least {_size_text(MIN_MEMORY)}, "
                             f"not {_size_text(mem)}")

    def space(self) -> dict[str, int]:
        """What defines the bounded space (a checkpoint must match it)."""
        return {"preemptions": self.preemptions, "model_events": self.model_events}


@dataclass
class SearchResult:
    scenario: str
    bounds: SearchBounds
    covered: bool = False  # every schedule within the bounds was explored
    reason: str = ""  # why not covered
    states: int = 0  # distinct (state, last CPU) pairs expanded
    transitions: int = 0
    finals: int = 0  # final states judged
    seconds: float = 0.0  # this session's time (resumed searches add up in `total_seconds`)
    total_seconds: float = 0.0
    # signature -> (finding, witness schedule's decisions)
    findings: dict[tuple[str, int, tuple[int, ...]], tuple[Finding, tuple[Decision, ...]]] = \
        field(default_factory=dict)
    history_oracle: bool = False  # the scenario has an oracle over history (see module doc)
    resumed: bool = False
    observations: set[Hashable] = field(default_factory=set)
    peak_memory: int = 0  # the largest resident memory the search's checks saw (bytes)

    def witness(self, session: Session, sig: tuple[str, int, tuple[int, ...]]) -> Schedule:
        path = self.findings[sig][1]
        m = session.machine
        return Schedule(self.scenario, session.image.digest, session.config(), path,
                        "search", None, {"strategy": "search", **self.bounds.space(),
                                         "preemptions_used": preemptions(m, path)},
                        session.source)


# Paths share their prefixes: a node is (parent node, last decision); None is the root.
_Node = tuple[Any, Decision] | None


def _path(node: _Node) -> tuple[Decision, ...]:
    out: list[Decision] = []
    while node is not None:
        node, d = node
        out.append(d)
    return tuple(reversed(out))


# A work item: its path, last CPU, preemptions used, model events used, and the saved
# state (None when it waits in a later bucket, after a resume, or when saved states do
# not fit under the memory bound: the path is replayed).
_Item = tuple[_Node, int, int, int, MachineState | None]


def _choices(m: Machine, last: int, model: bool) -> list[tuple[Decision, int, int]]:
    """(decision, preemption cost, model cost) of every enabled decision."""
    if m.stopped:
        return []
    ready = m.steppable()
    irqs = m.irq_choices()
    if not ready and not irqs:
        return []
    kept = held(m, last)
    out = [(step(c), int(kept and c != last), 0) for c in ready]
    out += [(Decision(DecisionKind.IRQ, c), int(kept and c != last), 0) for c in irqs]
    if model:
        out += [(d, 0, 1) for d in m.model_choices(compact=True)]
    return out


def preemptions(m: Machine, path: tuple[Decision, ...]) -> int:
    """The preemptions a schedule uses (replays it on ``m``)."""
    m.reset()
    last, used = -1, 0
    for d in path:
        if not d.is_model:
            used += d.cpu != last and held(m, last)
            last = d.cpu
        m.apply(d)
    return used


def final_findings(session: Session, path: tuple[Decision, ...]) -> list[Finding]:
    """Every oracle's verdict on the run ``path`` describes, exactly as a run gives it.

    The path is replayed from the baseline: a loaded state has the right registers and
    memory but not the history (ground-truth log, events) of its own path, and the
    scenario's checks and the decoder read history.
    """
    from .strategies import Replay
    return session.run(Replay(path), max_decisions=max(len(path), 1)).findings


# -- memory -------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory() -> int:
    """The process's resident memory in bytes: ``/proc/self/statm`` where there is one
    (~30 us a read), else the peak resident set ``getrusage`` reports (conservative)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def state_bytes(st: object) -> int:
    """The memory a saved state holds, in bytes: its buffers and containers as Python
    counts them, plus the C memory each CPU's register context owns (a Unicorn context's
    ``size``).  Within 10% of the resident memory a list of states grows by per state."""
    counted: set[int] = set()

    def size(o: object) -> int:
        if id(o) in counted:
            return 0
        counted.add(id(o))
        n = sys.getsizeof(o)
        if o is None or isinstance(o, bytes | bytearray | str | int | float):
            return n
        if isinstance(o, tuple | list | set | frozenset):
            return n + sum(size(x) for x in o)
        if isinstance(o, dict):
            return n + sum(size(k) + size(v) for k, v in o.items())
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return n + sum(size(getattr(o, f.name)) for f in dataclasses.fields(o))
        extra = getattr(o, "size", 0)  # unicorn's UcContext: the saved CPU state
        return n + (extra if isinstance(extra, int) and extra > 0 else 0)

    return size(st)


# -- checkpoints --------------------------------------------------------------------------

def _put_list(put: Callable[[str], None], key: str, items: Iterable[Any]) -> None:
    """``"key": [...]`` written a chunk at a time (the visited set can be millions)."""
    put(f', "{key}": [')
    it = iter(items)
    sep = ""
    while chunk := list(itertools.islice(it, 4096)):
        put(sep + json.dumps(chunk, separators=(",", ":"))[1:-1])
        sep = ","
    put("]")


def _write_checkpoint(path: Path, head: dict[str, Any],
                      findings: Iterable[tuple[Finding, tuple[Decision, ...]]],
                      buckets: list[list[_Item]],
                      seen: dict[tuple[bytes, int], list[tuple[int, int]]]) -> None:
    """The checkpoint as gzip-compressed JSON, streamed (never the whole text in memory):
    ``head`` (format, version, identity, counters), then the findings, the work list, the
    node table its paths refer to, and the visited set."""
    index: dict[int, int] = {}
    table: list[tuple[int, Decision]] = []

    def ref(node: _Node) -> int:
        chain = []
        while node is not None and id(node) not in index:
            chain.append(node)
            node = node[0]
        at = -1 if node is None else index[id(node)]
        for n in reversed(chain):
            table.append((at, n[1]))
            at = index[id(n)] = len(table) - 1
        return at

    with atomic_file(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                 compresslevel=1) as gz:
        def put(text: str) -> None:
            gz.write(text.encode())

        put(json.dumps(head)[:-1])
        put(', "findings": ' + json.dumps([
            {"oracle": str(f.oracle), "message": f.message, "cpu": f.cpu, "addr": f.addr,
             "words": list(f.words), "step": f.step, "path": [d.to_json() for d in p]}
            for f, p in findings]))
        # Cheapest bucket first, each bottom to top: the loader appends in this order.
        _put_list(put, "work", ([ref(node), last, pre, mod]
                                for bucket in buckets for node, last, pre, mod, _ in bucket))
        _put_list(put, "nodes", ([parent, d.to_json()] for parent, d in table))
        _put_list(put, "visited", ([key.hex(), last, p, q]
                                   for (key, last), visits in seen.items() for p, q in visits))
        put("}\n")


_FIELDS = ("format", "version", "scenario", "image", "config", "space", "keyed_history",
           "states",
           "transitions", "finals", "seconds", "findings", "work", "nodes", "visited")
_FINDING_FIELDS = ("oracle", "message", "cpu", "addr", "words", "step", "path")


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON object, its format and version checked; nothing in the file
    is ever run (a version 1 checkpoint, a pickle, is refused unread)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint "
                              f"({e.strerror or e})") from None
    not_one = f"{path}: not a search checkpoint"
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise CheckpointError(f"{not_one} (damaged or truncated gzip data: {e})") from None
    if data[:1] == b"\x80":
        raise CheckpointError(f"{not_one} (a pickle, as version 1 checkpoints were: not "
                              "read, since loading a pickle can run code; start a new "
                              "search)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{not_one} (not UTF-8 text: byte {e.start})") from None
    del data  # a large checkpoint is held once as text, then once as the parsed document
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{not_one} (not JSON: {e})") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{not_one} (not JSON: {e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{not_one} (a JSON {type(doc).__name__}, not an object)")
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{not_one} (field 'format' is not {CHECKPOINT_FORMAT!r})")
    if doc.get("version") != CHECKPOINT_VERSION or isinstance(doc.get("version"), bool):
        raise CheckpointError(f"{path}: checkpoint format version {doc.get('version')!r}; "
                              f"this testbed reads version {CHECKPOINT_VERSION}")
    return doc


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class _Resumed:
    """A checkpoint's content, validated, as the search holds it."""

    seen: dict[tuple[bytes, int], list[tuple[int, int]]]
    work: list[tuple[_Node, int, int, int]]
    states: int
    transitions: int
    finals: int
    seconds: float
    findings: dict[tuple[str, int, tuple[int, ...]], tuple[Finding, tuple[Decision, ...]]]


class _Checker:
    """Field-by-field validation of a checkpoint; every error names the file and the field."""

    def __init__(self, source: str, m: Machine, bounds: SearchBounds) -> None:
        self.source = source
        self.ncpus = m.ncpus
        self.text = m.model.size
        self.key_len = len(m.state_key())
        self.bounds = bounds
        self.interned: dict[tuple[Any, ...], Decision] = {}

    def bad(self, name: str, reason: str) -> NoReturn:
        raise CheckpointError(f"{self.source}: field '{name}' {reason}")

    def take(self, obj: dict[str, Any], key: str, where: str = "") -> Any:
        name = f"{where}.{key}" if where else key
        if key not in obj:
            self.bad(name, "missing")
        return obj[key]

    def count(self, doc: dict[str, Any], key: str) -> int:
        value = self.take(doc, key)
        if not _is_int(value) or value < 0:
            self.bad(key, f"is not a non-negative integer ({value!r})")
        return int(value)

    def array(self, doc: dict[str, Any], key: str, where: str = "") -> list[Any]:
        value = self.take(doc, key, where)
        if not isinstance(value, list):
            self.bad(f"{where}.{key}" if where else key,
                     f"is not a list (a JSON {type(value).__name__})")
        return value

    def decision(self, item: Any, name: str) -> Decision:
        plain = isinstance(item, list) and all(type(x) is int or type(x) is str for x in item)
        if plain:
            known = self.interned.get(tuple(item))
            if known is not None:
                return known
        if not plain:
            self.bad(name, f"is not a decision like [\"step\", 0] ({_short(item)})")
        try:
            d = Decision.from_json(item)
        except ValueError as e:
            self.bad(name, f"is not a decision: {e}")
        if d.cpu >= self.ncpus:
            self.bad(name, f"names CPU{d.cpu}; the machine has {self.ncpus} CPUs")
        if d.addr >= self.text:
            self.bad(name, f"names text offset {d.addr:#x}, beyond the text "
                           f"({self.text:#x} bytes)")
        self.interned[tuple(item)] = d
        return d

    def position(self, name: str, entry: list[Any], what: str) -> tuple[int, int, int]:
        """An entry's (last CPU, preemptions, model events), range-checked."""
        last, pre, mod = entry[-3:]
        if not -1 <= last < self.ncpus:
            self.bad(name, f"names last CPU {last}; the machine has {self.ncpus} CPUs "
                           f"({what})")
        if not 0 <= pre <= self.bounds.preemptions:
            self.bad(name, f"has {pre} preemptions, outside 0..{self.bounds.preemptions}")
        if not 0 <= mod <= self.bounds.model_events:
            self.bad(name, f"has {mod} model events, outside 0..{self.bounds.model_events}")
        return last, pre, mod

    def findings(self, doc: dict[str, Any]) -> dict[tuple[str, int, tuple[int, ...]],
                                                   tuple[Finding, tuple[Decision, ...]]]:
        out: dict[tuple[str, int, tuple[int, ...]], tuple[Finding, tuple[Decision, ...]]] = {}
        for i, e in enumerate(self.array(doc, "findings")):
            name = f"findings[{i}]"
            if not isinstance(e, dict):
                self.bad(name, f"is not an object ({_short(e)})")
            for key in e:
                if key not in _FINDING_FIELDS:
                    self.bad(f"{name}.{key}", "is not a field of a finding")
            oracle, message = self.take(e, "oracle", name), self.take(e, "message", name)
            for key, value in (("oracle", oracle), ("message", message)):
                if not isinstance(value, str):
                    self.bad(f"{name}.{key}", f"is not a string ({_short(value)})")
            ints = {key: self.take(e, key, name) for key in ("cpu", "addr", "step")}
            for key, value in ints.items():
                if not _is_int(value) or value < -1:
                    self.bad(f"{name}.{key}", f"is not an integer >= -1 ({_short(value)})")
            words = self.array(e, "words", name)
            for j, w in enumerate(words):
                if not _is_int(w) or not 0 <= w < 1 << 32:
                    self.bad(f"{name}.words[{j}]", f"is not a 32-bit word ({_short(w)})")
            path = tuple(self.decision(d, f"{name}.path[{j}]")
                         for j, d in enumerate(self.array(e, "path", name)))
            f = Finding(oracle, message, ints["cpu"], ints["addr"], tuple(words), ints["step"])
            out[f.signature()] = (f, path)
        return out

    def nodes(self, doc: dict[str, Any]) -> list[_Node]:
        nodes: list[_Node] = []
        for i, e in enumerate(self.array(doc, "nodes")):
            if not (isinstance(e, list) and len(e) == 2 and _is_int(e[0])):
                self.bad(f"nodes[{i}]", f"is not a [parent, decision] entry ({_short(e)})")
            parent = e[0]
            if not -1 <= parent < i:
                self.bad(f"nodes[{i}]", f"has parent {parent}: a node's parent is an earlier "
                                        "node, or -1 for the baseline")
            nodes.append((None if parent < 0 else nodes[parent],
                          self.decision(e[1], f"nodes[{i}][1]")))
        return nodes

    def work(self, doc: dict[str, Any], nodes: list[_Node]) -> list[tuple[_Node, int, int, int]]:
        out: list[tuple[_Node, int, int, int]] = []
        for i, e in enumerate(self.array(doc, "work")):
            name = f"work[{i}]"
            if not (isinstance(e, list) and len(e) == 4 and all(map(_is_int, e))):
                self.bad(name, f"is not a [node, int, int, int] entry ({_short(e)})")
            ref = e[0]
            if not -1 <= ref < len(nodes):
                self.bad(name, f"refers to node {ref}; the node table has {len(nodes)} "
                               "(-1: the baseline)")
            last, pre, mod = self.position(name, e, "[node, last CPU, preemptions, "
                                                    "model events]")
            out.append((None if ref < 0 else nodes[ref], last, pre, mod))
        return out

    def visited(self, doc: dict[str, Any]) -> dict[tuple[bytes, int], list[tuple[int, int]]]:
        seen: dict[tuple[bytes, int], list[tuple[int, int]]] = {}
        hex_len = 2 * self.key_len
        for i, e in enumerate(self.array(doc, "visited")):
            name = f"visited[{i}]"
            if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], str)
                    and all(map(_is_int, e[1:]))):
                self.bad(name, f"is not a [hex, int, int, int] entry ({_short(e)})")
            try:
                key = bytes.fromhex(e[0])
            except ValueError:
                key = b""
            if len(e[0]) != hex_len or len(key) != self.key_len:
                self.bad(name, f"has state key {_short(e[0])}; a key is {hex_len} hex digits")
            last, pre, mod = self.position(name, e, "[state key, last CPU, preemptions, "
                                                    "model events]")
            seen.setdefault((key, last), []).append((pre, mod))
        return seen


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) \
        else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load_checkpoint(path: Path, identity: dict[str, Any], m: Machine,
                     bounds: SearchBounds) -> _Resumed:
    doc = _read_checkpoint(path)
    v = _Checker(str(path), m, bounds)
    for key in doc:
        if key not in _FIELDS:
            v.bad(key, "is not a field of a search checkpoint")
    for key in ("scenario", "image"):
        if not isinstance(v.take(doc, key), str):
            v.bad(key, f"is not a string ({_short(doc[key])})")
    config = v.take(doc, "config")
    if not isinstance(config, dict):
        v.bad("config", f"is not an object ({_short(config)})")
    params = config.get("params")
    if params is not None and not (isinstance(params, dict) and all(
            map(_is_int, params.values()))):
        v.bad("config.params", f"does not map names to integers ({_short(params)})")
    space = v.take(doc, "space")
    if not (isinstance(space, dict) and set(space) == {"preemptions", "model_events"}
            and all(map(_is_int, space.values()))):
        v.bad("space", "is not an object {\"preemptions\": int, \"model_events\": int} "
                       f"({_short(space)})")
    # What this search is, as JSON gives it back (tuples read back as lists).
    want = json.loads(json.dumps(identity))
    for key in ("scenario", "image", "config", "space"):
        if doc[key] != want[key]:
            raise CheckpointError(
                f"{path}: the checkpoint was written for {key} {doc[key]!r}, this "
                f"search has {identity[key]!r}; start a new search instead")
    if doc.get("keyed_history", False) is not True and "keyed_history" in doc:
        v.bad("keyed_history", f"is not true ({_short(doc['keyed_history'])})")
    if doc.get("keyed_history", False) != want.get("keyed_history", False):
        raise CheckpointError(f"{path}: the checkpoint was written by a search that "
                              + ("kept" if doc.get("keyed_history") else "left out")
                              + " the history in its state keys, this one does not; "
                              "start a new search instead")
    counters = {key: v.count(doc, key) for key in ("states", "transitions", "finals")}
    seconds = v.take(doc, "seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) \
            or not math.isfinite(seconds) or seconds < 0:
        v.bad("seconds", f"is not a non-negative number ({_short(seconds)})")
    findings = v.findings(doc)
    nodes = v.nodes(doc)
    work = v.work(doc, nodes)
    del nodes
    return _Resumed(v.visited(doc), work, counters["states"], counters["transitions"],
                    counters["finals"], float(seconds), findings)


# -- the search ---------------------------------------------------------------------------

def _search(session: Session, bounds: SearchBounds = SearchBounds(), *,
           checkpoint: str | os.PathLike[str] | None = None, resume: bool = False,
           checkpoint_every: float = 30.0,
           on_finding: Callable[[Finding, tuple[Decision, ...]], None] | None = None,
           stop_on: str = "", observe: Callable[[Machine], Hashable] | None = None,
           keyed_history: bool = False) -> SearchResult:
    """Explore every schedule within ``bounds`` from the scenario's baseline.

    ``stop_on``: stop at the first finding of that oracle (``"*"``: of any oracle; the
    result is then not covered).  ``observe``: collect an observation of every final state in
    ``result.observations``.  ``checkpoint``: a file written every ``checkpoint_every``
    seconds and when the search ends; ``resume``: continue from it (``CheckpointError``
    if it cannot be read, is malformed, or was written for another scenario, image,
    configuration or bounded space).
    """
    m = session.machine
    sc = session.scenario
    t0 = time.perf_counter()
    deadline = t0 + bounds.max_seconds
    rss0 = resident_memory()
    res = SearchResult(sc.name, bounds, history_oracle=sc.trace_decode or (
        bool(m.history) and not keyed_history), peak_memory=rss0)
    identity = {"scenario": sc.name, "image": m.image.digest, "config": session.config(),
                "space": bounds.space(), **({"keyed_history": True} if keyed_history else {})}
    ckpt = Path(checkpoint) if checkpoint is not None else None
    # buckets[cost]: a depth-first stack per total cost (preemptions + model events)
    buckets: list[list[_Item]] = [[] for _ in range(bounds.preemptions
                                                   + bounds.model_events + 1)]
    # (state key, last CPU) -> the (preemptions, model events) it was expanded with
    seen: dict[tuple[bytes, int], list[tuple[int, int]]] = {}
    earlier = 0.0
    if resume:
        if ckpt is None:
            raise CheckpointError("resume needs a checkpoint file")
        doc = _load_checkpoint(ckpt, identity, m, bounds)
        seen = doc.seen
        for node, last, pre, mod in doc.work:
            buckets[pre + mod].append((node, last, pre, mod, None))
        res.states, res.transitions, res.finals = doc.states, doc.transitions, doc.finals
        earlier = doc.seconds
        res.resumed = True
        res.findings.update(doc.findings)
        del doc
        m.reset()
        unit = state_bytes(m.save())
    else:
        m.reset()
        seen[(m.state_key(), -1)] = [(0, 0)]
        baseline = m.save()
        unit = state_bytes(baseline)
        buckets[0].append((None, -1, 0, 0, baseline))
        res.states = 1
    last_ckpt = time.perf_counter()

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        _write_checkpoint(ckpt, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **identity,
            "states": res.states, "transitions": res.transitions, "finals": res.finals,
            "seconds": earlier + time.perf_counter() - t0}, res.findings.values(), buckets,
            seen)

    def dominated(key: tuple[bytes, int], pre: int, mod: int) -> bool:
        visits = seen.get(key)
        if visits is None:
            seen[key] = [(pre, mod)]
            return False
        if any(p <= pre and q <= mod for p, q in visits):
            return True
        visits[:] = [(p, q) for p, q in visits if not (pre <= p and mod <= q)]
        visits.append((pre, mod))
        return False

    # States on recently replayed paths, every CACHE_STRIDE decisions, and the states of
    # expanded items whose children could not keep their own: an item waiting in a later
    # bucket is replayed from its nearest cached ancestor, and consecutive items of a
    # bucket share most of their paths.
    cache: OrderedDict[int, tuple[_Node, MachineState]] = OrderedDict()
    # How many saved states the cache, and the work items, may hold: from the memory left
    # under the bound once the visited set and the work list are accounted for.
    cache_cap = held_cap = 0
    kept = 0  # work items holding a saved state

    def plan() -> None:
        nonlocal cache_cap, held_cap
        queued = sum(map(len, buckets))
        spare = bounds.max_memory - rss0 - VISIT_BYTES * len(seen) - ITEM_BYTES * queued
        share = max(0, spare) // STATE_SHARE // unit
        cache_cap = max(MIN_CACHE, min(CACHE_SIZE, share))
        held_cap = share
        while len(cache) > cache_cap:
            cache.popitem(last=False)

    def remember(node: _Node, state: MachineState) -> None:
        cache[id(node)] = (node, state)  # the node is kept alive with its entry
        cache.move_to_end(id(node))
        if len(cache) > cache_cap:
            cache.popitem(last=False)

    def restore(node: _Node) -> MachineState:
        chain: list[_Node] = []
        at = node
        while at is not None and id(at) not in cache:
            chain.append(at)
            at = at[0]
        if at is None:
            m.reset()
        else:
            cache.move_to_end(id(at))
            m.load(cache[id(at)][1])
        for depth, n in enumerate(reversed(chain), 1):
            assert n is not None
            try:
                m.apply(n[1])
            except InvalidDecision as e:
                if not res.resumed:
                    raise
                raise CheckpointError(f"{ckpt}: field 'nodes': a path of the work list is "
                                      f"not a schedule of this scenario ({e})") from None
            if depth % CACHE_STRIDE == 0:
                remember(n, m.save())
        return m.save()

    plan()
    item: _Item | None = None  # the item being expanded (put back if interrupted)
    held: MachineState | None = None  # the saved state the machine is still in
    expansions = check_at = 0
    check_time = 0.0
    try:
        cost = 0
        while True:
            while cost < len(buckets) and not buckets[cost]:
                cost += 1
            if cost == len(buckets):
                res.covered = True
                break
            if res.states >= bounds.max_states:
                res.reason = f"state bound ({bounds.max_states} states) reached"
                break
            now = time.perf_counter()
            if now > deadline:
                res.reason = f"time bound ({bounds.max_seconds:g} s) reached"
                break
            if expansions >= check_at or now >= check_time:
                check_at = expansions + MEMORY_CHECK_EVERY
                check_time = now + MEMORY_CHECK_SECONDS
                used = resident_memory()
                res.peak_memory = max(res.peak_memory, used)
                if used >= bounds.max_memory:
                    res.reason = (f"memory bound ({bounds.max_memory // MIB} MB) reached: "
                                  f"the process holds {used // MIB} MB")
                    break
                plan()
            expansions += 1
            if ckpt is not None and now - last_ckpt > checkpoint_every:
                save_checkpoint()
                last_ckpt = time.perf_counter()
            item = buckets[cost].pop()
            node, last, pre, mod, saved = item
            if saved is None:
                saved = restore(node)
            else:
                kept -= 1
                if saved is not held:  # (the machine is still in it: saved last)
                    m.load(saved)
            held = None
            choices = _choices(m, last, mod < bounds.model_events)
            if not choices:
                res.finals += 1
                path = _path(node)
                if observe is not None:
                    res.observations.add(observe(m))
                found = final_findings(session, path)
                for f in found:
                    if f.signature() not in res.findings:
                        res.findings[f.signature()] = (f, path)
                        if on_finding is not None:
                            on_finding(f, path)
                if stop_on and any(stop_on in ("*", f.oracle) for f in found):
                    res.reason = ("stopped at the first finding" if stop_on == "*"
                                  else f"stopped at the first {stop_on} finding")
                    break
                continue
            first = True
            shared = False  # a free child keeps no state of its own: it replays from here
            for d, dp, dm in choices:
                npre, nmod = pre + dp, mod + dm
                if npre > bounds.preemptions:
                    continue
                if not first:
                    m.load(saved)
                first = False
                m.apply(d)
                held = None
                res.transitions += 1
                nlast = last if d.is_model else d.cpu
                if dominated((m.state_key(), nlast), npre, nmod):
                    continue
                res.states += 1
                # A child that costs more waits in a later bucket: it keeps only its path
                # (the later buckets can hold millions).  A free child keeps its state
                # while the saved states fit under the memory bound.
                keep = not (dp or dm) and kept < held_cap
                if keep:
                    kept += 1
                else:
                    shared = shared or not (dp or dm)
                if keep:
                    held = m.save()
                buckets[npre + nmod].append(((node, d), nlast, npre, nmod,
                                             held if keep else None))
            if shared and node is not None:
                remember(node, saved)
            item = None
    except KeyboardInterrupt:
        res.reason = "interrupted"
        if item is not None:
            buckets[item[2] + item[3]].append(item)
        save_checkpoint()
        raise
    res.seconds = time.perf_counter() - t0
    res.total_seconds = earlier + res.seconds
    # Not covered: the work left, to resume.  Covered: an empty work list, so that
    # resuming reports the covered result.
    save_checkpoint()
    return res


def search(session: Session, bounds: SearchBounds = SearchBounds(), *,
           checkpoint: str | os.PathLike[str] | None = None, resume: bool = False,
           on_finding: Callable[[Finding, tuple[Decision, ...]], None] | None = None,
           checkpoint_every: float = 30.0, stop_on: str = "",
           observe: Callable[[Machine], Hashable] | None = None,
           keyed_history: bool | None = None) -> SearchResult:
    """Explore every schedule within ``bounds`` (see ``_search``).  ``keyed_history``:
    keep the machine's history in state keys (module docstring); by default, when the
    session runs the trace decoder, which judges it.

    The fetch points a run starts with must not move during a search (states are
    hashed by what they are, decisions by where the CPUs stop), so the session does not
    learn from the search's runs.  A text word stored to during the search that was not
    a fetch point from the start (declared with ``Machine.may_patch`` or learned by the
    session before) means schedules that stall a CPU before fetching it were not
    explored: the result is then not covered, and the session learns the words, so that
    searching again explores them.
    """
    m = session.machine
    known = set(m.declared)
    if keyed_history is None:
        keyed_history = any(o.name == OracleName.TRACE_DECODE for o in session.oracles)
    learning, session.learning = session.learning, False
    m.set_keyed_history(keyed_history)
    try:
        res = _search(session, bounds, checkpoint=checkpoint, resume=resume,
                      on_finding=on_finding, checkpoint_every=checkpoint_every,
                      stop_on=stop_on, observe=observe, keyed_history=keyed_history)
    finally:
        session.learning = learning
        m.set_keyed_history(False)
    found = sorted(a for a in m.fetch_points if a not in known)
    if found:
        session.patched |= set(found)
        session.machine.set_patched(session.patched)
        if res.covered:
            res.covered = False
            res.reason = ("the search stored to text it did not stop before ("
                          + ", ".join(m.image.symbolize(a) for a in found[:4])
                          + (", ..." if len(found) > 4 else "") + "): schedules in which "
                          "a CPU stalls before fetching it were not explored; declare it "
                          "with Machine.may_patch() in the scenario's setup, or search "
                          "again")
    return res
