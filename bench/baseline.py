"""The pure-Python engine against an earlier commit's, on the same seeds, in one run.

Issue 15 asked for the pure-Python path "at least 1.5x today's (same run, same seeds)":
today's being the code of the day it was filed (``BASELINE``, overridable with
``python -m bench --baseline REV``).  That code is taken out of the repository's
history (``git archive``, into a temporary folder: the checkout is not touched) and
both run the engine section's 2-CPU workload (``jump_label_nosync``, sc, the
``RandomWalk`` seeds 0..N-1 after a warm-up) through the pure-Python hooks
(``TESTBED_FASTPATH=0``), each in a fresh process, alternately, for a few rounds: the
two are measured under the same load, and each round's best repetition is kept (the
least disturbed by other processes).

The figure compared is schedules per CPU-second: the same seeds are the same work, and
decisions per schedule differ between the two (steps folded since, execute.py), so
decisions per second would favour the code that takes more of them.  Without git or
without that commit (an unpacked release, a shallow clone) the section says so and
measures nothing.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .sections import Options, Report

TITLE = "the pure-Python engine against the code before issue 15, same seeds"
BASELINE = "8a42e99"  # the code when issue 15 was filed (2026-11-30)
ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh process with the checkout to measure first on sys.path; prints JSON.
_MEASURE = """
import json, os, sys, time
root, seeds, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, root)
os.environ["TESTBED_FASTPATH"] = "0"
import testbed
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk
if not os.path.realpath(testbed.__file__).startswith(os.path.realpath(root)):
    raise SystemExit(f"imported {testbed.__file__}, not the code in {root}")
s = Session(load_scenario("jump_label_nosync")(), ncpus=2, memory="sc")
if getattr(s.machine, "fastpath", False):
    raise SystemExit("the compiled hooks are on")
for seed in range(min(seeds, 50)):
    s.run(RandomWalk(seed))
times, decisions = [], 0
for _ in range(repeats):
    decisions = 0
    t = time.process_time()
    for seed in range(seeds):
        decisions += s.run(RandomWalk(seed)).decisions
    times.append(time.process_time() - t)
print(json.dumps({"times": times, "decisions": decisions}))
"""


def _unpack(rev: str, into: Path) -> str | None:
    """The tree of ``rev`` written into ``into``; a reason if it cannot be."""
    if not (ROOT / ".git").exists():
        return "not a git checkout"
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"git archive failed: {e}"
    if tar.returncode != 0:
        return f"git archive {rev}: {tar.stderr.decode(errors='replace').strip()}"
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        if hasattr(tarfile, "data_filter"):  # (Python 3.11.4 on)
            t.extractall(into, filter="data")
        else:
            t.extractall(into)  # (this repository's own tree)
    return None


def _measure(root: Path, seeds: int, repeats: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(root), str(seeds), str(repeats)],
                         capture_output=True, text=True, check=False, env=env, cwd=root)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {root} failed: {out.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(opts: Options) -> Report:
    rev = opts.baseline or BASELINE
    seeds, repeats, rounds = (20, 1, 1) if opts.quick else (400, 3, 6)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        old = Path(tmp) / "baseline"
        old.mkdir()
        why = _unpack(rev, old)
        if why is not None:
            return Report({"baseline": rev, "skipped": why},
                          [f"(not measured: {why})"])
        best: dict[str, list[float]] = {"baseline": [], "now": []}
        decisions: dict[str, int] = {}
        for _ in range(rounds):
            for label, root in (("baseline", old), ("now", ROOT)):
                r = _measure(root, seeds, repeats)
                best[label].append(seeds / min(r["times"]))
                decisions[label] = r["decisions"]
    median = {k: statistics.median(v) for k, v in best.items()}
    ratio = median["now"] / median["baseline"]
    data = {"baseline": rev, "seeds": seeds, "repeats": repeats, "rounds": rounds,
            "decisions": decisions, "schedules_per_cpu_s": best, "median": median,
            "ratio": ratio}
    lines = [f"2 CPUs, sc, RandomWalk seeds 0..{seeds - 1}, pure-Python hooks; {rounds} "
             f"rounds alternating fresh processes, each the best of {repeats}",
             "",
             "| code | decisions (deterministic) | schedules per CPU-second, each round | median |",
             "|---|---|---|---|"]
    for label, name in (("baseline", f"{rev} (before issue 15)"), ("now", "this checkout")):
        lines.append(f"| {name} | {decisions[label]:,} | "
                     + ", ".join(f"{x:,.0f}" for x in best[label])
                     + f" | {median[label]:,.0f} |")
    lines += ["", f"now / {rev} = {ratio:.2f}x (schedules per CPU-second, medians of the rounds)"]
    return Report(data, lines)
