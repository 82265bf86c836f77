"""``testbed demo``: watch a race happen, CPU by CPU, from a real schedule."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import CliError, _finding_text, _save, _session
from .isa import NOP
from .isa import b as branch
from .strategies import RandomWalk


def cmd_demo(args: argparse.Namespace) -> int:
    from .timeline import render
    demos = {"nosync-stale": "nosync_stale"}
    if args.name is None:
        print("demos:")
        print("  nosync-stale   CPU1 runs the old instruction after CPU0's nosync patch "
              "has completed its flush")
        print("run one with: testbed demo nosync-stale")
        return 0
    if args.name not in demos:
        raise CliError(f"unknown demo {args.name!r}; known: {', '.join(demos)}")
    session = _session(demos[args.name], None, None)
    image = session.image
    site = image.addr("patch_site")
    watch = {site: {NOP: "OLD nop", branch(site, image.addr("site_new")): "NEW b"}}
    seed = args.seed if args.seed is not None else 0
    for attempt in range(200):
        result = session.run(RandomWalk(seed + attempt))
        hits = [f for f in result.findings if f.oracle == "stale-after-flush"]
        if hits:
            break
    else:
        raise CliError("no stale execution found in 200 seeds")
    path = _save(result, session, Path(args.out), f"demo-{seed + attempt}")
    print(f"Demo nosync-stale: a real schedule (random seed {seed + attempt}), not a script.")
    print("CPU0 patches `nop` at patch_site into `b site_new` with "
          "aarch64_insn_patch_text_nosync;")
    print("CPU1 loops through the site, reading patch_done first (no ISB).\n")
    print(render(result, image, 2, watch=watch, width=60))
    print()
    for f in hits:
        print(_finding_text(f))
    print(f"\nreplay it: testbed replay {path} --timeline")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("demo", help="watch a race happen (no NAME: list the demos)")
    sp.add_argument("name", nargs="?")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--out", default="testbed-findings")
    sp.set_defaults(func=cmd_demo)
