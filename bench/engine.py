"""Engine throughput on the first scenario (nosync_stale, 2 CPUs), on one core.

Prints, for a fixed set of seeds: the deterministic counts (decisions, emulated
instructions, runs), then decisions/s, instructions/s, runs/s and the reset cost per
run, each the median of several repetitions with its spread (min..max).  Wall times on
a shared machine are noisy: compare ratios measured in the same run, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk


def _median_spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def measure(scenario: str = "nosync_stale", runs: int = 200, repeats: int = 7,
            p_model: float = 0.05, passes: int | None = None) -> dict[str, object]:
    instance = load_scenario(scenario)()
    if passes is not None:
        instance.passes = passes  # type: ignore[attr-defined]
    session = Session(instance)
    m = session.machine
    # Deterministic counts for the seed set (identical on every machine).
    decisions = instructions = 0
    for seed in range(runs):
        r = session.run(RandomWalk(seed, p_model=p_model))
        decisions += r.decisions
        instructions += r.instructions

    def timed(fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def batch() -> None:
        for seed in range(runs):
            session.run(RandomWalk(seed, p_model=p_model))

    def resets() -> None:
        for _ in range(runs):
            m.reset()

    batch_s = [timed(batch) for _ in range(repeats)]
    reset_s = [timed(resets) for _ in range(repeats)]
    return {
        "scenario": scenario, "cpus": m.ncpus, "runs": runs, "repeats": repeats,
        "counts": {"decisions": decisions, "instructions": instructions, "runs": runs},
        "decisions_per_s": _median_spread([decisions / t for t in batch_s]),
        "instructions_per_s": _median_spread([instructions / t for t in batch_s]),
        "runs_per_s": _median_spread([runs / t for t in batch_s]),
        "reset_us_per_run": _median_spread([t / runs * 1e6 for t in reset_s]),
        "us_per_decision": _median_spread([t / decisions * 1e6 for t in batch_s]),
        "reset_share_of_run": statistics.median(reset_s) / statistics.median(batch_s),
    }


def _fmt(d: object) -> str:
    assert isinstance(d, dict)
    return f"{d['median']:>12,.1f}  ({d['min']:,.1f} .. {d['max']:,.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a small subset (30 runs x 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    runs, repeats = (30, 3) if args.quick else (args.runs, args.repeats)
    res = measure(runs=runs, repeats=repeats)
    # The same scenario with 6x the passes: the slope separates the cost of a decision
    # from the fixed cost of a run (reset, scenario checks, schedule record).
    long = measure(runs=runs, repeats=repeats, passes=48)
    short_c, long_c = res["counts"], long["counts"]
    assert isinstance(short_c, dict) and isinstance(long_c, dict)
    t_short = runs / res["runs_per_s"]["median"]  # type: ignore[index]
    t_long = runs / long["runs_per_s"]["median"]  # type: ignore[index]
    marginal = (t_long - t_short) / (long_c["decisions"] - short_c["decisions"]) * 1e6
    fixed = (t_short - marginal * 1e-6 * short_c["decisions"]) / runs * 1e6
    res["marginal_us_per_decision"] = marginal
    res["fixed_us_per_run"] = fixed
    res["long"] = long
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    counts = res["counts"]
    assert isinstance(counts, dict)
    print(f"engine: {res['scenario']}, {res['cpus']} CPUs, {runs} seeds x {repeats} repeats, "
          "one core")
    print(f"  deterministic: {counts['decisions']} decisions, {counts['instructions']} "
          f"instructions in {runs} runs")
    print(f"  decisions/s     {_fmt(res['decisions_per_s'])}")
    print(f"  instructions/s  {_fmt(res['instructions_per_s'])}")
    print(f"  runs/s          {_fmt(res['runs_per_s'])}")
    print(f"  us/decision     {_fmt(res['us_per_decision'])}")
    print(f"  reset us/run    {_fmt(res['reset_us_per_run'])}")
    print(f"  reset share of a run: {res['reset_share_of_run']:.1%}")
    print(f"  from 8 vs 48 passes per run: {res['marginal_us_per_decision']:.2f} us per "
          f"decision + {res['fixed_us_per_run']:.1f} us per run")
    return 0
