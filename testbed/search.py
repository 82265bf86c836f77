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

A checkpoint file holds the work list (as decision paths from the baseline, replayed on
resume) and the visited set; a search stopped by a bound, SIGINT or a kill resumes from
its last checkpoint.
"""

from __future__ import annotations

import gzip
import os
import pickle
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .findings import Finding
from .machine import Machine, MachineState
from .schedule import Decision, DecisionKind, Schedule, atomic_file, step

if TYPE_CHECKING:
    from .scenario import Session

__all__ = ["CheckpointError", "SearchBounds", "SearchResult", "search"]

CHECKPOINT_FORMAT = "cmodx-testbed/search-checkpoint"
CACHE_STRIDE = 8  # replayed paths keep a saved state every this many decisions
CACHE_SIZE = 2000  # saved states kept for replays (~100 KB each)
CHECKPOINT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used (names the file and the reason)."""


@dataclass(frozen=True)
class SearchBounds:
    preemptions: int = 2
    model_events: int = 1
    max_states: int = 2_000_000
    max_seconds: float = 600.0

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

    def witness(self, session: Session, sig: tuple[str, int, tuple[int, ...]]) -> Schedule:
        path = self.findings[sig][1]
        m = session.machine
        return Schedule(self.scenario, session.image.digest, session.config(), path,
                        "search", None, {"strategy": "search", **self.bounds.space(),
                                         "preemptions_used": preemptions(m, path)})


# Paths share their prefixes: a node is (parent node, last decision); None is the root.
_Node = tuple[Any, Decision] | None


def _path(node: _Node) -> tuple[Decision, ...]:
    out: list[Decision] = []
    while node is not None:
        node, d = node
        out.append(d)
    return tuple(reversed(out))


# A work item: its path, last CPU, preemptions used, model events used, and the saved
# state (None when it waits in a later bucket or after a resume: the path is replayed).
_Item = tuple[_Node, int, int, int, MachineState | None]


def _flatten(items: list[list[_Item]]) -> tuple[list[tuple[int, Decision]],
                                                  list[list[tuple[int, int, int, int]]]]:
    """Work items as a node table (parent index, decision) and per-bucket references."""
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

    work = [[(ref(node), last, pre, mod) for node, last, pre, mod, _ in b] for b in items]
    return table, work


def _unflatten(table: list[tuple[int, Decision]]) -> list[_Node]:
    nodes: list[_Node] = []
    for parent, d in table:
        nodes.append((None if parent < 0 else nodes[parent], d))
    return nodes


def held(m: Machine, last: int) -> bool:
    """Whether running another CPU than ``last`` now is a preemption (CHESS's count):
    ``last`` could go on and is not spinning."""
    return last >= 0 and last in m.steppable() and not m.spinning(last)


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


def _write_checkpoint(path: Path, doc: dict[str, Any]) -> None:
    with atomic_file(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                 compresslevel=1) as f:
        pickle.dump(doc, f, protocol=pickle.HIGHEST_PROTOCOL)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    # The checkpoint is this tool's own file, written by a search the user ran.
    try:
        with gzip.open(path, "rb") as f:
            doc = pickle.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable search checkpoint ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a search checkpoint")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {doc.get('version')!r}; "
                              f"this testbed reads version {CHECKPOINT_VERSION}")
    return doc


def search(session: Session, bounds: SearchBounds = SearchBounds(), *,
           checkpoint: str | os.PathLike[str] | None = None, resume: bool = False,
           checkpoint_every: float = 30.0,
           on_finding: Callable[[Finding, tuple[Decision, ...]], None] | None = None,
           stop_on: str = "", observe: Callable[[Machine], Hashable] | None = None,
           ) -> SearchResult:
    """Explore every schedule within ``bounds`` from the scenario's baseline.

    ``stop_on``: stop at the first finding of that oracle (the result is then not
    covered).  ``observe``: collect an observation of every final state in
    ``result.observations``.
    """
    m = session.machine
    sc = session.scenario
    t0 = time.perf_counter()
    deadline = t0 + bounds.max_seconds
    res = SearchResult(sc.name, bounds, history_oracle=sc.trace_decode)
    identity = {"scenario": sc.name, "image": m.image.digest, "config": session.config(),
                "space": bounds.space()}
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
        doc = _read_checkpoint(ckpt)
        for key in ("scenario", "image", "config", "space"):
            if doc.get(key) != identity[key]:
                raise CheckpointError(
                    f"{ckpt}: the checkpoint was written for {key} {doc.get(key)!r}, this "
                    f"search has {identity[key]!r}; start a new search instead")
        seen = doc["seen"]
        nodes = _unflatten(doc["nodes"])
        for cost, items in enumerate(doc["work"]):
            buckets[cost] = [(None if i < 0 else nodes[i], last, pre, mod, None)
                             for i, last, pre, mod in items]
        res.states, res.transitions, res.finals = doc["states"], doc["transitions"], \
            doc["finals"]
        earlier = doc["seconds"]
        res.resumed = True
        for sig, (finding, path) in doc["findings"].items():
            res.findings[sig] = (finding, path)
    else:
        m.reset()
        seen[(m.state_key(), -1)] = [(0, 0)]
        buckets[0].append((None, -1, 0, 0, m.save()))
        res.states = 1
    last_ckpt = time.perf_counter()

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        table, work = _flatten(buckets)
        _write_checkpoint(ckpt, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **identity,
            "seen": seen, "states": res.states, "transitions": res.transitions,
            "finals": res.finals, "seconds": earlier + time.perf_counter() - t0,
            "findings": res.findings, "nodes": table, "work": work})

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

    # States on recently replayed paths, every CACHE_STRIDE decisions: an item waiting
    # in a later bucket is replayed from its nearest cached ancestor, and consecutive
    # items of a bucket share most of their paths.
    cache: OrderedDict[int, tuple[_Node, MachineState]] = OrderedDict()

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
            m.apply(n[1])
            if depth % CACHE_STRIDE == 0:
                cache[id(n)] = (n, m.save())  # the node is kept alive with its entry
                if len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
        return m.save()

    item: _Item | None = None  # the item being expanded (put back if interrupted)
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
            if ckpt is not None and now - last_ckpt > checkpoint_every:
                save_checkpoint()
                last_ckpt = time.perf_counter()
            item = buckets[cost].pop()
            node, last, pre, mod, saved = item
            if saved is None:
                saved = restore(node)
            else:
                m.load(saved)
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
                if stop_on and any(f.oracle == stop_on for f in found):
                    res.reason = f"stopped at the first {stop_on} finding"
                    break
                continue
            first = True
            for d, dp, dm in choices:
                npre, nmod = pre + dp, mod + dm
                if npre > bounds.preemptions:
                    continue
                if not first:
                    m.load(saved)
                first = False
                m.apply(d)
                res.transitions += 1
                nlast = last if d.is_model else d.cpu
                if dominated((m.state_key(), nlast), npre, nmod):
                    continue
                res.states += 1
                # A child that costs more waits in a later bucket: it keeps only its path
                # (a saved state is ~100 KB; the later buckets can hold millions).
                buckets[npre + nmod].append(((node, d), nlast, npre, nmod,
                                             m.save() if not (dp or dm) else None))
            item = None
    except KeyboardInterrupt:
        res.reason = "interrupted"
        if item is not None:
            buckets[item[2] + item[3]].append(item)
        save_checkpoint()
        raise
    res.seconds = time.perf_counter() - t0
    res.total_seconds = earlier + res.seconds
    if not res.covered:
        save_checkpoint()
    elif ckpt is not None:
        save_checkpoint()  # an empty work list: resuming reports the covered result
    return res
