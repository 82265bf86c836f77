"""``python -m bench``: run the sections, write the JSON and the table.

Every section runs in this process, one after the other, on one core.  A full run
writes ``latest.json`` and ``latest.txt`` in ``--out`` (``bench/results/``); with
``--only`` the named sections replace theirs in the existing ``latest.json`` and the
table is rebuilt from it.  ``--quick`` writes ``quick.json``/``quick.txt`` instead, so
that a smoke run never overwrites measured figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .sections import SECTIONS, Options, Report

FORMAT = "cmodx-testbed/bench"
VERSION = 1


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "unicorn": version("unicorn"),
    }


def run_section(name: str, opts: Options) -> dict[str, Any]:
    """Import ``bench.<name>`` and run it; a missing module is reported as skipped."""
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{name}":
            raise
        return {"title": name, "skipped": f"bench/{name}.py not written yet",
                "table": [f"({name}: bench/{name}.py not written yet)"]}
    t0 = time.perf_counter()
    report: Report = module.run(opts)
    seconds = time.perf_counter() - t0
    return {"title": getattr(module, "TITLE", name),
            "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 2), "data": report.data, "table": report.lines}


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [f"# bench{' --quick' if results['quick'] else ''}: {m['cpu']}, {m['cores']} cores, "
           f"Python {m['python']}, Unicorn {m['unicorn']}", ""]
    for name in SECTIONS:
        sec = results["sections"].get(name)
        if sec is None:
            continue
        head = f"## {name}" if "skipped" in sec else f"## {name}: {sec['title']}"
        if "seconds" in sec:
            head += f" ({sec['seconds']:.0f} s, {sec['measured']})"
        out += [head, "", *sec["table"], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small subset (under 2 minutes)")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="NAME",
                   help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=Options.out, help="results folder")
    p.add_argument("--json", action="store_true", help="print the JSON, not the table")
    p.add_argument("--baseline", default="", metavar="REV",
                   help="the commit the baseline section measures against "
                        "(default: the code before issue 15)")
    args = p.parse_args(argv)
    opts = Options(quick=args.quick, out=args.out, baseline=args.baseline)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    json_path = args.out / f"{stem}.json"
    names = args.only or list(SECTIONS)
    results: dict[str, Any] = {"format": FORMAT, "version": VERSION, "quick": args.quick,
                               "machine": machine_info(), "sections": {}}
    if args.only and json_path.is_file():  # keep the other sections' figures
        old = json.loads(json_path.read_text())
        if old.get("format") == FORMAT and old.get("version") == VERSION:
            results["sections"] = old["sections"]
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results["sections"][name] = run_section(name, opts)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(json_path)
    text = render(results)
    (args.out / f"{stem}.txt").write_text(text + "\n")
    print(json.dumps(results, indent=1) if args.json else text)
    return 0
