"""The Arm data-memory model against the sequentially consistent one, in the same run.

For every scenario, under ``--memory arm`` and ``--memory sc``: decisions per schedule
(random walk, seeds 0..99, the same seeds under both: a deterministic count), schedules
per second (wall time, median of 3 repetitions), the time to first finding of a race
scenario (random walk from seed 0, as ``testbed run`` does: schedules and seconds), and
the bounded search of its search scope (2 preemptions, 1 model event; stopped at the
first finding of a race, to coverage for a correct scenario, at most 60 s): states and
seconds.  The
ratio arm/sc of each wall-time figure is from this run.

Then the whole ``shared/litmus/aarch64-data`` set (1,071 tests) under both models, one
core: tests run, forbidden and allowed outcomes observed, seconds (a 20-test sample with
``--quick``; skipped, with the reason, when ``../shared`` is absent).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from testbed.exploration import Bounds
from testbed.litmus import LitmusError, parse_file
from testbed.litmus_run import Outcome, conformance, litmus_files, read_verdicts, run_test
from testbed.scenario import Session, list_scenarios
from testbed.search import SearchBounds, search
from testbed.strategies import RandomWalk

from .sections import Options, Report

TITLE = "The Arm data-memory model against sc (same run)"
QUICK = ("nosync_stale", "brk_plain")
DATA = Path(__file__).resolve().parents[2] / "shared" / "litmus" / "aarch64-data"
MODELS = ("arm", "sc")


def _oracle(expect: str | tuple[str, ...] | None) -> str | None:
    return expect if expect is None or isinstance(expect, str) else expect[0]


def _scenario(name: str, memory: str, opts: Options) -> dict[str, Any]:
    cls = list_scenarios()[name]
    session = Session(cls(), memory=memory)
    session.learning = False  # the same fetch points in every run, as a campaign
    seeds = 20 if opts.quick else 100
    decisions = 0
    reps = []
    for _ in range(1 if opts.quick else 3):
        t0 = time.perf_counter()
        decisions = sum(session.run(RandomWalk(seed)).decisions for seed in range(seeds))
        reps.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"decisions_per_schedule": decisions / seeds,
                           "schedules_per_s": seeds / statistics.median(reps)}
    oracle = _oracle(cls.expect)
    if oracle is not None:
        cap = 300 if opts.quick else 3000
        t0 = time.perf_counter()
        first = None
        for seed in range(cap):
            if any(f.oracle == oracle for f in session.run(RandomWalk(seed)).findings):
                first = seed + 1
                break
        out["ttff"] = {"schedules": first, "seconds": time.perf_counter() - t0, "cap": cap}
    scoped = Session(cls(), params=cls.search_scope, memory=memory)
    t0 = time.perf_counter()
    res = search(scoped, SearchBounds(2, 1, max_seconds=5 if opts.quick else 60),
                 stop_on=oracle)
    out["search"] = {"states": res.states, "seconds": time.perf_counter() - t0,
                     "covered": res.covered, "found": bool(res.findings)}
    return out


def _litmus(memory: str, files: list[Path]) -> dict[str, Any]:
    """Every file explored under ``memory`` and judged by herd7's verdicts."""
    verdicts = read_verdicts(DATA / "catalogue" / "herd7.txt")
    read_verdicts(DATA / "generated" / "kinds.txt", verdicts)
    outcomes = []
    t0 = time.perf_counter()
    for f in files:
        try:
            outcomes.append(Outcome.of(run_test(parse_file(f), memory=memory,
                                                bounds=Bounds(max_states=500_000,
                                                              max_seconds=120))))
        except LitmusError as e:  # a broken file is counted, as the command line does
            outcomes.append(Outcome.not_run(f, str(e)))
    seconds = time.perf_counter() - t0
    s = conformance(outcomes, verdicts)
    return {"run": s.run, "not_run": s.not_run, "forbidden": s.forbidden,
            "forbidden_observed": len(s.failures), "allowed": s.allowed,
            "allowed_observed": s.allowed_observed, "incomplete": len(s.incomplete),
            "missed": [m.name for m in s.allowed_missed], "seconds": seconds}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def run(opts: Options) -> Report:
    names = sorted(list_scenarios())
    if opts.quick:
        names = [n for n in names if n in QUICK]
    rows: dict[str, Any] = {}
    lines = ["| scenario | decisions/schedule arm / sc | schedules/s arm / sc (ratio) | "
             "first finding arm / sc (schedules) | search states arm / sc | "
             "search s arm / sc (ratio) |",
             "|---|---|---|---|---|---|"]
    for name in names:
        row = {m: _scenario(name, m, opts) for m in MODELS}
        rows[name] = row
        a, c = row["arm"], row["sc"]

        def first(r: dict[str, Any]) -> str:
            t = r.get("ttff")
            if t is None:
                return "-"
            return str(t["schedules"]) if t["schedules"] else f"none in {t['cap']}"

        def states(r: dict[str, Any]) -> str:
            s = r["search"]
            tag = " found" if s["found"] else (" covered" if s["covered"] else " NOT covered")
            return f"{s['states']}{tag}"

        lines.append(
            f"| {name} | {a['decisions_per_schedule']:.1f} / {c['decisions_per_schedule']:.1f}"
            f" | {a['schedules_per_s']:.0f} / {c['schedules_per_s']:.0f} "
            f"({_ratio(a['schedules_per_s'], c['schedules_per_s'])}) | {first(a)} / "
            f"{first(c)} | {states(a)} / {states(c)} | {a['search']['seconds']:.1f} / "
            f"{c['search']['seconds']:.1f} "
            f"({_ratio(a['search']['seconds'], c['search']['seconds'])}) |")
    data: dict[str, Any] = {"scenarios": rows}
    lines += ["", "Search: the scenario's search scope, 2 preemptions, 1 model event, "
              "stopped at the first finding of a race scenario, at most "
              f"{5 if opts.quick else 60} s (NOT covered: that bound was hit)."]
    if DATA.is_dir():
        files = litmus_files([DATA])
        if opts.quick:
            files = files[:20]
        lit = {m: _litmus(m, files) for m in MODELS}
        data["litmus"] = lit
        lines += ["", f"`aarch64-data` ({len(files)} files), one core:", "",
                  "| model | run | forbidden observed | allowed observed | incomplete | s |",
                  "|---|---|---|---|---|---|"]
        for m in MODELS:
            r = lit[m]
            lines.append(f"| {m} | {r['run']} | {r['forbidden_observed']} of "
                         f"{r['forbidden']} | {r['allowed_observed']} of {r['allowed']} | "
                         f"{r['incomplete']} | {r['seconds']:.0f} |")
        lines.append(f"\nRatio arm/sc of the litmus time: "
                     f"{_ratio(lit['arm']['seconds'], lit['sc']['seconds'])}")
    else:
        data["litmus"] = {"skipped": f"{DATA} not found"}
        lines += ["", f"`aarch64-data` skipped: {DATA} not found"]
    return Report(data, lines)
