"""Campaign scaling: schedules per second with 1 and 2 local workers, and through Dask.

The same campaign (``jump_label_nosync``, PCT, campaign seed 0) is run with one local
worker process, with two, and on a Dask ``LocalCluster`` of two single-threaded worker
processes on loopback.  The deterministic counts (schedules, decisions, instructions,
findings) must agree across the three: they are printed so a reader can check.  The
wall time includes starting the workers; the ratios are what matters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from testbed.campaign import Campaign, CampaignSpec

from .sections import Options, Report

TITLE = "Campaign scaling"
SCENARIO = "jump_label_nosync"


def _campaign(folder: Path, schedules: int, **kw: Any) -> dict[str, Any]:
    c = Campaign(folder)
    c.create(CampaignSpec(SCENARIO, "pct", 0, batch=250))
    c.on_finding = lambda *a: None
    return c.run(schedules=schedules, **kw)


def run(opts: Options) -> Report:
    schedules = 2000 if opts.quick else 20_000
    out: dict[str, Any] = {"scenario": SCENARIO, "schedules": schedules}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        base = Path(tmp)
        out["local1"] = _campaign(base / "l1", schedules, workers=1)
        out["local2"] = _campaign(base / "l2", schedules, workers=2)
        try:
            from distributed import LocalCluster
        except ImportError:
            out["dask2"] = None
        else:
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster:
                out["dask2"] = _campaign(base / "d2", schedules,
                                         dask=cluster.scheduler_address)
    r1 = out["local1"]["schedules_per_second"]
    r2 = out["local2"]["schedules_per_second"]
    out["ratio_2_to_1"] = r2 / r1 if r1 else 0.0
    lines = [f"{schedules} schedules of {SCENARIO} (PCT, campaign seed 0, batches of 250)",
             "", "| backend | workers | schedules/s | wall s | decisions | findings |",
             "|---|---|---|---|---|---|"]
    for key, label, n in (("local1", "local", 1), ("local2", "local", 2),
                          ("dask2", "Dask LocalCluster", 2)):
        st = out.get(key)
        if st is None:
            lines.append(f"| {label} | {n} | (distributed not installed) | | | |")
            continue
        lines.append(f"| {label} | {n} | {st['schedules_per_second']:,.0f} | "
                     f"{st['wall_seconds']:.1f} | {st['decisions']:,} | {st['findings']} |")
    lines.append("")
    lines.append(f"2 local workers / 1: {out['ratio_2_to_1']:.2f}x")
    if out.get("dask2"):
        out["ratio_dask_to_local2"] = out["dask2"]["schedules_per_second"] / r2 if r2 else 0.0
        lines.append(f"Dask (2 workers) / local (2 workers): "
                     f"{out['ratio_dask_to_local2']:.2f}x")
    return Report(out, lines)
