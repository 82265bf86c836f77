"""Exhaustive search: ``brk_refcount_sync`` covered at 2 preemptions and 1 model event.

The scenario's search scope (2 CPUs, one iteration) is searched to the end under each
data-memory model, as ``testbed search`` does; the deterministic figures (states,
transitions, final states, findings, and a digest of the set of final states: SHA-256
of their ``snapshot.content_digest``, sorted) come first, then the time and states per
second.  The digest and counts say whether a change of the search kept what it
explores; issue 15 measured the time against the search before it (the README gives
both).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from testbed.scenario import Session, load_scenario
from testbed.search import SearchBounds, search
from testbed.snapshot import content_digest

from .sections import Options, Report

TITLE = "exhaustive search of brk_refcount_sync, one core"
MODELS = ("sc", "arm")


def measure(name: str, memory: str, bounds: SearchBounds) -> dict[str, Any]:
    cls = load_scenario(name)
    session = Session(cls(), params=dict(cls.search_scope), memory=memory)
    t0, c0 = time.perf_counter(), time.process_time()
    res = search(session, bounds, observe=content_digest)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finals = sorted(str(o) for o in res.observations)
    return {"scenario": name, "memory": memory, "covered": res.covered, "reason": res.reason,
            "states": res.states, "transitions": res.transitions, "finals": res.finals,
            "distinct_final_states": len(finals),
            "final_states_digest": hashlib.sha256("\n".join(finals).encode()).hexdigest(),
            "findings": sorted(f"{f.oracle}: {f.message}" for f, _ in res.findings.values()),
            "seconds": seconds, "cpu_seconds": cpu, "states_per_cpu_s": res.states / cpu,
            "peak_memory_mib": res.peak_memory / (1 << 20)}


def run(opts: Options) -> Report:
    if opts.quick:  # a small search, for the test that keeps this code alive
        name, bounds = "nosync_isb", SearchBounds(1, 1)
    else:
        name, bounds = "brk_refcount_sync", SearchBounds(2, 1, max_seconds=3600)
    rows = {m: measure(name, m, bounds) for m in MODELS}
    lines = [f"`{name}`, its search scope, {bounds.preemptions} preemptions, "
             f"{bounds.model_events} model event(s):", "",
             "| figure | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
    table = [
        ("covered", [("yes" if r["covered"] else f"NO: {r['reason']}") for r in rows.values()]),
        ("states (deterministic)", [f"{r['states']:,}" for r in rows.values()]),
        ("transitions (deterministic)", [f"{r['transitions']:,}" for r in rows.values()]),
        ("final states reached / distinct", [f"{r['finals']:,} / {r['distinct_final_states']:,}"
                                             for r in rows.values()]),
        ("digest of the final states", [f"`{r['final_states_digest'][:16]}`"
                                        for r in rows.values()]),
        ("findings", [str(len(r["findings"])) for r in rows.values()]),
        ("CPU seconds", [f"{r['cpu_seconds']:.1f}" for r in rows.values()]),
        ("states per CPU-second", [f"{r['states_per_cpu_s']:,.0f}" for r in rows.values()]),
        ("peak memory (MiB)", [f"{r['peak_memory_mib']:.0f}" for r in rows.values()]),
    ]
    lines += [f"| {k} | " + " | ".join(v) + " |" for k, v in table]
    return Report({"scenario": name, "bounds": bounds.space(), "by_memory": rows}, lines)
