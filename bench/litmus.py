"""Instruction-fetch litmus tests: the testbed's exhaustive exploration against herd7.

The instruction-fetch tests of ``shared/litmus`` (``herd-ifetch``: Arm's catalogue's
sample in its three cache configurations; ``esop2020``: the ESOP 2020 paper's tests)
and the catalogue tests in ``tests/data/litmus/aarch64-ifetch`` are explored under the
Arm model, as ``testbed litmus`` does, one test after another; each test's CPU time and
states are recorded.  When a ``herd7`` is on ``PATH`` or in ``shared/tools/herd7``, it
decides the same files (``-variant ifetch``) in the same run, and the ratio of the CPU
times is the figure issue 15 sets a bound on (10x).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from testbed.litmus import LitmusError, parse_file
from testbed.litmus_run import Bounds, litmus_files, run_test

from .sections import Options, Report

TITLE = "instruction-fetch litmus tests against herd7, one core"
SHARED = Path(__file__).resolve().parents[2] / "shared"
FOLDERS = [SHARED / "litmus" / "herd-ifetch", SHARED / "litmus" / "esop2020",
           Path(__file__).resolve().parents[1] / "tests" / "data" / "litmus" / "aarch64-ifetch"]
TARGET_RATIO = 10.0
SLOW = 10.0  # seconds: issue 15's bound on the slowest test


def herd7() -> str | None:
    found = shutil.which("herd7")
    if found:
        return found
    local = SHARED / "tools" / "herd7" / "herd7"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def _herd_seconds(exe: str, files: list[Path]) -> dict[str, Any]:
    """herd7's CPU time for every file, in one process as herd7 is used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([exe, "-variant", "ifetch", *map(str, files)], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    decided = done.stdout.count("\nObservation ") + done.stdout.startswith("Observation ")
    return {"exe": exe, "cpu_seconds": cpu, "wall_seconds": wall, "decided": decided,
            "status": done.returncode}


def run(opts: Options) -> Report:
    files = litmus_files([f for f in FOLDERS if f.is_dir()])
    bounds = Bounds(max_states=500_000, max_seconds=120)
    if opts.quick:
        files = [f for f in files if f.parent.name == "DIC0-IDC0"] or files[:16]
        bounds = Bounds(max_states=20_000, max_seconds=5)
    rows: list[dict[str, Any]] = []
    for f in files:
        c0 = time.process_time()
        try:
            r = run_test(parse_file(f), bounds=bounds)
        except LitmusError as e:
            rows.append({"file": str(f), "not_run": str(e)})
            continue
        rows.append({"file": str(f), "name": r.name, "cpu_seconds": time.process_time() - c0,
                     "states": r.explored, "complete": r.complete})
    ran = [r for r in rows if "not_run" not in r]
    total = sum(r["cpu_seconds"] for r in ran)
    exe = herd7()
    herd = _herd_seconds(exe, [Path(r["file"]) for r in ran]) if exe else None
    data: dict[str, Any] = {
        "files": len(files), "run": len(ran), "not_run": len(rows) - len(ran),
        "cpu_seconds": total, "states": sum(r["states"] for r in ran),
        "incomplete": [r["name"] for r in ran if not r["complete"]],
        "slowest": sorted(ran, key=lambda r: -r["cpu_seconds"])[:8],
        "over_10s": [r["name"] for r in ran if r["cpu_seconds"] > SLOW],
        "herd7": herd if herd is not None else {"skipped": "no herd7 on PATH or in "
                                                           f"{SHARED / 'tools' / 'herd7'}"},
    }
    if herd is not None and herd["cpu_seconds"] > 0:
        data["ratio"] = total / herd["cpu_seconds"]
        data["target_reached"] = data["ratio"] <= TARGET_RATIO and not data["over_10s"]
    lines = [
        "| | tests | CPU s | states explored | incomplete |",
        "|---|---|---|---|---|",
        f"| testbed (arm model, exhaustive) | {len(ran)} | {total:.1f} | {data['states']:,} | "
        f"{len(data['incomplete'])} |",
    ]
    if herd is not None:
        lines.append(f"| herd7 -variant ifetch | {herd['decided']} | {herd['cpu_seconds']:.1f} "
                     "| - | - |")
        lines += ["", f"testbed / herd7 CPU time: {data.get('ratio', float('nan')):.0f}x "
                  f"(target: at most {TARGET_RATIO:.0f}x, and no test over {SLOW:.0f} s)."]
    else:
        lines += ["", f"herd7 not run: {data['herd7']['skipped']}"]
    lines += ["", "Slowest tests (CPU s, states, complete):", ""]
    lines += [f"- {Path(r['file']).parent.name}/{r['name']}: {r['cpu_seconds']:.1f} s, "
              f"{r['states']:,} states{'' if r['complete'] else ', NOT complete'}"
              for r in data["slowest"]]
    if data["not_run"]:
        lines.append(f"\n{data['not_run']} file(s) could not be run (see the JSON).")
    return Report(data, lines)
