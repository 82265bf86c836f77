"""A fixed corpus of schedules and searches, with digests of what they did.

Every speed-up of the engine, the search or the models must leave runs exactly as
they were: the same decisions offered, the same instructions executed, the same
findings, the same final machine state.  ``tests/test_corpus.py`` replays each recorded
schedule and compares its digests with the ones recorded here, and runs each recorded
search and compares its findings and the set of its final states.

The digests are computed from what a run leaves in the machine (registers, memory,
I-views, findings, events, the ground-truth trace), never from ``Machine.state_key``,
whose encoding an optimisation may change.

Runs and searches are recorded in two modes: as the testbed ran before folded steps
and the history-free state key (``fold`` false: the schedules replay without folded
steps, the searches keep the history in their keys), which guards that the old path
is unchanged; and as it runs now (``fold`` true).  A search's final states are digested
with the history counted as zeros when the key leaves it out (``content_digest``).

Regenerate (only when a change is *meant* to change behaviour, and say so in the
commit): ``python tests/corpus.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from testbed.machine import Machine
from testbed.scenario import Session, load_scenario
from testbed.schedule import Schedule, fold_level
from testbed.scheduler import RunResult
from testbed.search import SearchBounds, search
from testbed.snapshot import content_digest
from testbed.strategies import PCT, RandomWalk

CORPUS = Path(__file__).parent / "data" / "corpus" / "corpus.json.gz"

# (scenario, memory, promises, strategy, seeds): every scenario of the testbed under
# both models, random walks and PCT, and promises where a scenario's race needs them.
SCENARIOS = ("cmodx_violation", "torn_write", "call_ops", "call_ops_plain",
             "jump_label_nosync", "jump_label_kick", "missing_dc", "missing_dc_idc1",
             "brk_single_slot", "brk_release", "brk_plain", "brk_refcount_sync",
             "brk_no_sync", "text_poke_pre_post", "nosync_stale", "nosync_isb",
             "stop_machine_patch", "stop_machine_nodsb")
# The last field: folded steps (execute.py).
RUNS: list[tuple[str, str, bool, str, tuple[int, ...], bool]] = [
    *[(name, memory, False, "random", (0, 1), False) for name in SCENARIOS
      for memory in ("sc", "arm")],
    *[(name, "arm", False, "pct", (3,), False) for name in SCENARIOS],
    ("brk_release", "arm", True, "random", (207, 5), False),
    ("jump_label_kick", "arm", True, "random", (1,), False),
    *[(name, memory, False, "random", (2,), True) for name in SCENARIOS
      for memory in ("sc", "arm")],
    *[(name, "sc", False, "pct", (4,), True) for name in SCENARIOS],
    ("brk_release", "arm", True, "random", (207,), True),
]
# (scenario, memory, promises, preemptions, model events, fold): searches of the
# scenarios' search scopes small enough to run in a test.
SEARCHES: list[tuple[str, str, bool, int, int, bool]] = [
    ("nosync_isb", "sc", False, 1, 1, False),
    ("nosync_isb", "arm", False, 1, 1, False),
    ("nosync_stale", "arm", False, 2, 1, False),
    ("torn_write", "arm", False, 2, 1, False),
    ("call_ops_plain", "arm", False, 1, 1, False),
    ("jump_label_nosync", "arm", False, 1, 1, False),
    ("cmodx_violation", "sc", False, 2, 1, False),
    ("brk_release", "arm", True, 1, 0, False),
    ("nosync_isb", "sc", False, 1, 1, True),
    ("nosync_isb", "arm", False, 1, 1, True),
    ("jump_label_nosync", "arm", False, 1, 1, True),
    ("brk_refcount_sync", "sc", False, 1, 1, True),
    ("text_poke_pre_post", "arm", False, 1, 1, True),
    ("brk_release", "arm", True, 1, 0, True),
]


def session(name: str, memory: str, promises: bool, *, scope: bool = False,
            fold: bool | int = True) -> Session:
    """``fold`` true is level 1 (the corpus was recorded before level 2 folded the Arm
    model's barriers: its "fold": true entries replay at level 1)."""
    cls = load_scenario(name)
    params = dict(cls.search_scope) if scope else None
    if params and "private_logs" in params:  # recorded before searches took the workers'
        params["private_logs"] = 0  # logs as private (Machine.set_private)
    return Session(cls(), memory=memory, promises=promises, params=params,
                   fold=1 if fold is True else int(fold))


def run_digests(r: RunResult, m: Machine) -> dict[str, Any]:
    return {
        "decisions": r.decisions,
        "instructions": r.instructions,
        "trace": r.trace_digest(),
        "events": hashlib.sha256(repr([(e.step, e.cpu, e.kind.value, e.addr, e.value,
                                        e.detail) for e in r.events]).encode()).hexdigest(),
        "findings": sorted([f.oracle, f.message, f.cpu, f.addr, f.step] for f in r.findings),
        "invalid": r.invalid,
        "machine": content_digest(m),
    }


def search_digests(name: str, memory: str, promises: bool, pre: int,
                   mod: int, fold: bool) -> dict[str, Any]:
    s = session(name, memory, promises, scope=True, fold=fold)
    res = search(s, SearchBounds(pre, mod), keyed_history=not fold,
                 observe=content_digest if not fold else _final)
    finals = {str(o) for o in res.observations}
    return {
        "covered": res.covered,
        "states": res.states,
        "finals": hashlib.sha256("\n".join(sorted(finals)).encode()).hexdigest(),
        "distinct_finals": len(finals),
        "findings": sorted([f.oracle, f.message, f.cpu, f.addr] for f, _ in
                           res.findings.values()),
    }


def _final(m: Machine) -> str:
    return content_digest(m, history=False)


def record() -> dict[str, Any]:
    runs = []
    for name, memory, promises, strategy, seeds, fold in RUNS:
        s = session(name, memory, promises, fold=fold)
        for seed in seeds:
            r = s.run(RandomWalk(seed) if strategy == "random" else PCT(seed))
            runs.append({"schedule": json.loads(r.schedule.to_json()),
                         "promises": promises, **run_digests(r, s.machine)})
    searches = [{"scenario": name, "memory": memory, "promises": promises,
                 "preemptions": pre, "model_events": mod, "fold": fold,
                 **search_digests(name, memory, promises, pre, mod, fold)}
                for name, memory, promises, pre, mod, fold in SEARCHES]
    return {"runs": runs, "searches": searches}


def load() -> dict[str, Any]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def replay(entry: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Replay one recorded run in a fresh session; its digests, and whether the
    compiled fast path ran it."""
    sched = Schedule.from_json(json.dumps(entry["schedule"]))
    s = session(sched.scenario, str(sched.config["memory"]), entry["promises"],
                fold=fold_level(sched.config))
    r = s.replay(sched)
    return run_digests(r, s.machine), s.machine.fastpath


if __name__ == "__main__":
    doc = record()
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(CORPUS, "wb", mtime=0) as f:
        f.write(json.dumps(doc, indent=0, sort_keys=True).encode())
    print(f"{CORPUS}: {len(doc['runs'])} runs, {len(doc['searches'])} searches",
          file=sys.stderr)
