"""Time to first finding: how many schedules, and how long, until a race shows.

For every scenario that expects a finding: over 20 campaign seeds, the runs of a
campaign (``testbed fuzz``'s per-run seeds, ``testbed.campaign.derive_seed``) are made
one after the other in this process until the scenario's first expected oracle fires;
the number of schedules and the seconds it took, for random walk and for PCT (d=3, k
calibrated as a campaign does).  Median and spread (min..max) over the seeds.  A seed
that finds nothing within the cap counts as the cap (and is reported as a miss).

Alongside, the bounded exhaustive search (``testbed search``: 2 preemptions, 1 model
event, cheapest first) stopped at its first such finding: states explored and seconds,
on the scenario's search scope (fewer CPUs and iterations: ``Scenario.search_scope``),
so it is one deterministic figure, not a distribution.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from testbed.campaign import CampaignSpec, calibrate_k
from testbed.scenario import Session, list_scenarios
from testbed.search import SearchBounds, search

from .sections import Options, Report

TITLE = "Time to first finding"
QUICK = ("jump_label_nosync", "brk_single_slot", "text_poke_pre_post")


def _first_oracle(expect: str | tuple[str, ...]) -> str:
    return expect if isinstance(expect, str) else expect[0]


def first_finding(session: Session, spec: CampaignSpec, oracle: str,
                  cap: int) -> tuple[int, float, bool]:
    """(schedules, seconds, found) until ``oracle`` first fires in this campaign."""
    t0 = time.perf_counter()
    for run in range(cap):
        result = session.run(spec.strategy_for(run))
        if any(f.oracle == oracle for f in result.findings):
            return run + 1, time.perf_counter() - t0, True
    return cap, time.perf_counter() - t0, False


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(opts: Options) -> Report:
    seeds = 3 if opts.quick else 20
    cap = 300 if opts.quick else 3000
    scenarios = sorted(n for n, c in list_scenarios().items() if c.expect)
    if opts.quick:
        scenarios = [n for n in scenarios if n in QUICK][:2]
    rows: dict[str, Any] = {}
    lines = [f"{seeds} campaign seeds per cell; median (min..max); cap {cap} schedules",
             "",
             "| scenario | oracle | random: schedules | random: s | PCT: schedules | "
             "PCT: s | search: states | search: s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in scenarios:
        cls = list_scenarios()[name]
        assert cls.expect
        oracle = _first_oracle(cls.expect)
        session = Session(cls())
        row: dict[str, Any] = {"oracle": oracle}
        cells = []
        for strategy in ("random", "pct"):
            counts: list[float] = []
            secs: list[float] = []
            misses = 0
            for seed in range(seeds):
                k = calibrate_k(session, seed) if strategy == "pct" else 0
                spec = CampaignSpec(name, strategy, seed, k=k)
                n, s, found = first_finding(session, spec, oracle, cap)
                counts.append(n)
                secs.append(s)
                misses += not found
            row[strategy] = {"schedules": _summary(counts), "seconds": _summary(secs),
                             "misses": misses, "per_seed_schedules": counts}
            c, t = row[strategy]["schedules"], row[strategy]["seconds"]
            miss = f", {misses} misses" if misses else ""
            cells += [f"{c['median']:.0f} ({c['min']:.0f}..{c['max']:.0f}{miss})",
                      f"{t['median']:.2f} ({t['min']:.2f}..{t['max']:.2f})"]
        scoped = Session(cls(), params=cls.search_scope)
        t0 = time.perf_counter()
        res = search(scoped, SearchBounds(2, 1, max_seconds=60 if opts.quick else 300),
                     stop_on=oracle)
        found = any(f.oracle == oracle for f, _ in res.findings.values())
        row["search"] = {"states": res.states, "seconds": time.perf_counter() - t0,
                         "found": found, "scope": dict(cls.search_scope)}
        cells += [f"{res.states}" + ("" if found else " (not found)"),
                  f"{row['search']['seconds']:.2f}"]
        rows[name] = row
        lines.append(f"| {name} | {oracle} | " + " | ".join(cells) + " |")
    lines += ["", "random/PCT run the scenario as `testbed fuzz` does; search runs its "
              "search scope (2 CPUs, 1-2 iterations), 2 preemptions, 1 model event."]
    return Report({"seeds": seeds, "cap": cap, "scenarios": rows}, lines)
