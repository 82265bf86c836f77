"""Barrier ablation of ``jump_label_kick``, end to end (``testbed ablate``).

Every point of the functions the scenario executes, each weakened alone, under
``--memory arm``: the bounded search of the search scope (1 preemption, 1 model event,
at most 60 s), then 50 random schedules of the scenario as it runs.  Deterministic:
the points found, the ones the configuration executes, and each one's verdict; wall
time end to end and per point.  ``--quick``: the functions ``caches_clean_inval_pou``
and ``jump_label_update`` under ``sc`` at 1 preemption and no model event, 10 random
schedules.
"""

from __future__ import annotations

import time

from testbed.ablate import ablate
from testbed.scenario import load_scenario
from testbed.search import SearchBounds

from .sections import Options, Report

TITLE = "Barrier ablation of jump_label_kick, end to end"
SCENARIO = "jump_label_kick"


def run(opts: Options) -> Report:
    cls = load_scenario(SCENARIO)
    if opts.quick:
        memory, bounds, schedules = "sc", SearchBounds(1, 0, max_seconds=60), 10
        functions: list[str] | None = ["caches_clean_inval_pou", "jump_label_update"]
    else:
        memory, bounds, schedules = "arm", SearchBounds(1, 1, max_seconds=60), 50
        functions = None
    t0 = time.perf_counter()
    report = ablate(cls, functions=functions, memory=memory, bounds=bounds,
                    schedules=schedules)
    seconds = time.perf_counter() - t0
    needed = [r for r in report.rows if r.needed]
    data = {"scenario": SCENARIO, "memory": memory, **bounds.space(),
            "random_schedules": schedules, "points": len(report.rows),
            "not_executed": len(report.not_executed), "needed": len(needed),
            "seconds": seconds, "rows": [r.to_json() for r in report.rows]}
    lines = [f"`testbed ablate {SCENARIO} --memory {memory}`: {len(report.rows)} points "
             f"executed ({len(report.not_executed)} more in code this configuration never "
             f"runs), {len(needed)} needed, {seconds:.0f} s end to end "
             f"(search: {bounds.preemptions} preemption(s), {bounds.model_events} model "
             f"event(s), at most {bounds.max_seconds:.0f} s; then {schedules} random "
             "schedules).", "",
             "| point | source | weakened to | verdict | s |", "|---|---|---|---|---|"]
    for r in report.rows:
        p = r.point
        verdict = f"**needed**: {r.oracle} ({r.how})" if r.needed else "not shown needed"
        lines.append(f"| {p.name} | `{p.source.split('//')[0].strip()}` | {p.what} | "
                     f"{verdict} | {r.seconds:.1f} |")
    return Report(data, lines)
