"""Peak RSS of a campaign worker with N CPUs.

Each measurement is a fresh process (``python -m bench.memory --child N``) that imports
the testbed, builds a ``Session`` of ``jump_label_nosync`` on N CPUs
(``JumpLabelWide``: the same kernel code with room for 63 workers' logs) and runs
random-walk schedules, as a campaign worker does.  It reports its peak RSS after the
imports, after building the session and after the schedules: ``VmHWM`` from
``/proc/self/status``, else ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.  (On Linux
``ru_maxrss`` survives ``execve``: a child started from a large parent reports the
parent's peak, whereas ``VmHWM`` belongs to the new image.)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from .sections import Options, Report

TITLE = "peak RSS of a worker process with N CPUs"
CPUS = (2, 8, 32, 64)
QUICK_CPUS = (2, 8)


def _peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(ncpus: int, schedules: int) -> dict[str, Any]:
    """Runs in the fresh process."""
    from testbed.scenario import Session
    from testbed.strategies import RandomWalk

    from .workloads import JumpLabelWide

    imported = _peak_mib()
    session = Session(JumpLabelWide(), ncpus=ncpus)
    built = _peak_mib()
    decisions = 0
    for seed in range(schedules):
        decisions += session.run(RandomWalk(seed)).decisions
    return {"cpus": ncpus, "schedules": schedules, "decisions": decisions,
            "peak_mib_imported": imported, "peak_mib_session": built,
            "peak_mib": _peak_mib()}


def measure(ncpus: int, schedules: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "--child", str(ncpus),
                           "--schedules", str(schedules)], cwd=root, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory --child {ncpus} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run(opts: Options) -> Report:
    cpus, schedules = (QUICK_CPUS, 5) if opts.quick else (CPUS, 40)
    rows = [measure(n, schedules) for n in cpus]
    lo, hi = rows[0], rows[-1]
    per_cpu = (hi["peak_mib"] - lo["peak_mib"]) / (hi["cpus"] - lo["cpus"])
    data = {"scenario": "jump_label_nosync (JumpLabelWide), RandomWalk seeds",
            "by_cpus": {str(r["cpus"]): r for r in rows}, "mib_per_cpu": per_cpu}
    lines = ["| CPUs | peak RSS (MiB) | of which the session | schedules run |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['cpus']} | {r['peak_mib']:.1f} | "
                     f"{r['peak_mib'] - r['peak_mib_imported']:.1f} | {r['schedules']} |")
    lines += ["", f"A fresh process per row; 'of which the session': peak RSS minus the peak "
              f"after the imports ({lo['peak_mib_imported']:.1f} MiB). About "
              f"{per_cpu:.2f} MiB per CPU between {lo['cpus']} and {hi['cpus']} CPUs."]
    return Report(data, lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory")
    p.add_argument("--child", type=int, required=True, metavar="NCPUS")
    p.add_argument("--schedules", type=int, default=40)
    args = p.parse_args(argv)
    print(json.dumps(child(args.child, args.schedules)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
