"""Exhaustive search: ``brk_refcount_sync`` covered at 2 preemptions and 1 model event.

The scenario's search scope (2 CPUs, one iteration) is searched to the end under each
data-memory model, as ``testbed search`` does, twice in the same run: as the search
was before folded steps (``Session(fold=False)``, history kept in the state keys: the
search of issue 15's first session, state for state, which ``tests/test_corpus.py``
guards) and as it runs now.  The deterministic figures (states, transitions, final
states, findings, and a digest of the set of final outcomes: SHA-256 of their
``snapshot.outcome_digest``, sorted) come first, then the time, and the ratio of the two
searches' CPU time.  The outcome digests of the two searches must be equal.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from testbed.scenario import Session, load_scenario
from testbed.search import SearchBounds, search
from testbed.snapshot import outcome_digest

from .sections import Options, Report

TITLE = "exhaustive search of brk_refcount_sync, one core"
MODELS = ("sc", "arm")


MODES = (("before", False), ("now", True))  # (name, folded steps and history out of keys)


def measure(name: str, memory: str, bounds: SearchBounds, now: bool) -> dict[str, Any]:
    cls = load_scenario(name)
    session = Session(cls(), params=dict(cls.search_scope), memory=memory, fold=now)
    t0, c0 = time.perf_counter(), time.process_time()
    res = search(session, bounds, observe=outcome_digest,
                 keyed_history=None if now else True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finals = sorted(str(o) for o in res.observations)
    return {"scenario": name, "memory": memory, "mode": "now" if now else "before",
            "covered": res.covered, "reason": res.reason,
            "states": res.states, "transitions": res.transitions, "finals": res.finals,
            "distinct_outcomes": len(finals),
            "outcomes_digest": hashlib.sha256("\n".join(finals).encode()).hexdigest(),
            "findings": sorted(f"{f.oracle}: {f.message}" for f, _ in res.findings.values()),
            "seconds": seconds, "cpu_seconds": cpu, "states_per_cpu_s": res.states / cpu,
            "peak_memory_mib": res.peak_memory / (1 << 20)}


def run(opts: Options) -> Report:
    if opts.quick:  # a small search, for the test that keeps this code alive
        name, bounds = "nosync_isb", SearchBounds(1, 1)
    else:
        name, bounds = "brk_refcount_sync", SearchBounds(2, 1, max_seconds=3600)
    rows = {f"{m} {mode}": measure(name, m, bounds, now) for m in MODELS
            for mode, now in MODES}
    cols = list(rows)
    lines = [f"`{name}`, its search scope, {bounds.preemptions} preemptions, "
             f"{bounds.model_events} model event(s); 'before': without folded steps, "
             "history in the keys (as before issue 15's second session):", "",
             "| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    table = [
        ("covered", [("yes" if r["covered"] else f"NO: {r['reason']}") for r in rows.values()]),
        ("states (deterministic)", [f"{r['states']:,}" for r in rows.values()]),
        ("transitions (deterministic)", [f"{r['transitions']:,}" for r in rows.values()]),
        ("final states reached / distinct outcomes",
         [f"{r['finals']:,} / {r['distinct_outcomes']:,}" for r in rows.values()]),
        ("digest of the outcomes", [f"`{r['outcomes_digest'][:16]}`" for r in rows.values()]),
        ("findings", [str(len(r["findings"])) for r in rows.values()]),
        ("CPU seconds", [f"{r['cpu_seconds']:.1f}" for r in rows.values()]),
        ("states per CPU-second", [f"{r['states_per_cpu_s']:,.0f}" for r in rows.values()]),
        ("peak memory (MiB)", [f"{r['peak_memory_mib']:.0f}" for r in rows.values()]),
    ]
    lines += [f"| {k} | " + " | ".join(v) + " |" for k, v in table]
    same = {}
    for m in MODELS:
        before, now = rows[f"{m} before"], rows[f"{m} now"]
        same[m] = (before["outcomes_digest"] == now["outcomes_digest"]
                   and before["findings"] == now["findings"])
        ratio = before["cpu_seconds"] / now["cpu_seconds"]
        lines.append(f"\n{m}: {ratio:.2f}x less CPU time now than before; the same "
                     f"findings and outcomes: {'yes' if same[m] else 'NO'}")
    return Report({"scenario": name, "bounds": bounds.space(), "rows": rows,
                   "same_outcomes": same}, lines)
