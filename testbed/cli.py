"""The ``testbed`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .asm import AsmError
from .faildb import default_db
from .findings import Finding
from .machine import GuestError
from .memory import CacheType
from .scenario import ScenarioError, Session, list_scenarios, load_scenario, session_for
from .schedule import Decision, InvalidDecision, Schedule, ScheduleError
from .scheduler import RunResult
from .strategies import PCT, RandomWalk, RoundRobin, Strategy

ENV_SEED = "TESTBED_SEED"


class CliError(Exception):
    pass


def _cache(text: str) -> CacheType:
    try:
        return CacheType.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _session(name: str, cpus: int | None, cache: CacheType | None) -> Session:
    return Session(load_scenario(name)(), ncpus=cpus, cache=cache)


def _disasm(word: int) -> str:
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
    for insn in Cs(CS_ARCH_ARM64, CS_MODE_ARM).disasm(word.to_bytes(4, "little"), 0, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(undefined)"


def _finding_text(f: Finding) -> str:
    words = ", ".join(f"{w:#010x} ({_disasm(w)})" for w in f.words)
    return f"[{f.oracle}] step {f.step}: {f.message}" + (f"; words: {words}" if words else "")


def _finding_json(f: Finding, session: Session) -> dict[str, object]:
    return {"oracle": f.oracle, "cpu": f.cpu, "address": f.addr,
            "symbol": session.image.symbolize(f.addr) if f.addr >= 0 else "",
            "message": f.message, "words": list(f.words),
            "instructions": [_disasm(w) for w in f.words], "step": f.step}


def _save(result: RunResult, session: Session, out: Path, tag: str) -> Path:
    """The reproducer: the schedule, with the findings it produced recorded in it."""
    path = out / f"{result.scenario}-{tag}.json"
    meta = dict(result.schedule.meta)
    meta["findings"] = [_finding_json(f, session) for f in result.findings]
    replace(result.schedule, meta=meta).save(path)
    return path


def cmd_list(args: argparse.Namespace) -> int:
    for name, cls in sorted(list_scenarios().items()):
        print(f"{name:<20} {cls.ncpus} CPUs  {cls.cache.value:<5} {cls.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    session = _session(args.scenario, args.cpus, args.cache)
    seed0 = args.seed if args.seed is not None else int(os.environ.get(ENV_SEED, "0"))
    out = Path(args.out)
    seen: dict[tuple[str, int, tuple[int, ...]], dict[str, object]] = {}
    decisions = instructions = decode_runs = 0
    k = args.k or 200  # PCT's expected steps per run: the longest run seen so far
    t0 = time.perf_counter()
    db = default_db() if not args.no_db else None

    def record(result: RunResult, tag: str, known: Path | None = None) -> None:
        """Save and report the findings of ``result`` not seen yet."""
        fresh = [f for f in result.findings if f.signature() not in seen]
        if not fresh:
            return
        path = _save(result, session, out, f"{fresh[0].oracle}-{tag}")
        if db is not None and known is None:
            db.save(result.schedule)
        for f in fresh:
            seen[f.signature()] = {**_finding_json(f, session), "reproducer": str(path)}
            if known is not None:
                seen[f.signature()]["from_failure_db"] = str(known)
            if not args.json:
                print(_finding_text(f) + (f" (a known failure, from {known})" if known else ""))
                print(f"  reproduce: testbed replay {path}")

    for replayed in db.replay_all(session) if db is not None else []:
        record(replayed.result, "db", replayed.path)
    for i in range(args.schedules):
        strategy: Strategy
        if args.strategy in ("rr", "round-robin"):
            strategy = RoundRobin()
        elif args.strategy == "pct":
            strategy = PCT(seed0 + i, depth=args.depth, k=k)
        else:
            strategy = RandomWalk(seed0 + i, p_model=args.p_model)
        result = session.run(strategy)
        if not args.k:
            k = max(k, result.decisions)
        decisions += result.decisions
        instructions += result.instructions
        decode_runs += any(f.oracle == "trace-decode" for f in result.findings)
        record(result, str(seed0 + i))
    dt = time.perf_counter() - t0
    if args.json:
        print(json.dumps({
            "scenario": args.scenario, "strategy": args.strategy, "seed": seed0,
            "schedules_run": args.schedules, "decisions": decisions,
            "instructions": instructions, "seconds": round(dt, 3),
            "decoder": {"checked": session.scenario.trace_decode,
                        "schedules_decoded": (args.schedules - decode_runs
                                              if session.scenario.trace_decode else 0),
                        "schedules_not_decodable": decode_runs},
            "findings": list(seen.values())}, indent=2))
    else:
        print(f"{args.schedules} schedules of {args.scenario}: {decisions} decisions, "
              f"{instructions} instructions, {len(seen)} distinct findings ({dt:.2f}s)")
    return 1 if seen else 0


def cmd_replay(args: argparse.Namespace) -> int:
    schedule = Schedule.load(args.file)
    session = session_for(schedule)
    result = session.replay(schedule)
    print(f"replayed {result.decisions} decisions of {schedule.scenario} "
          f"({result.instructions} instructions), trace {result.trace_digest()[:16]}")
    for f in result.findings:
        print(_finding_text(f))
    recorded = schedule.meta.get("findings")
    wanted = {(str(f["oracle"]), int(f["address"])) for f in recorded or []
              if isinstance(f, dict)}
    got = {(f.oracle, f.addr) for f in result.findings}
    if args.trace:
        for cpu, seq in enumerate(result.ground_truth()):
            for step, addr, word in seq:
                print(f"CPU{cpu} {step:>5} {addr:#x} {word:08x} {session.image.symbolize(addr)}")
    if args.timeline:
        from .timeline import render
        print(render(result, session.image, session.machine.ncpus))
    if wanted and not wanted <= got:
        print("the recorded finding did NOT reproduce")
        return 0
    return 1 if result.findings else 0


def cmd_shrink(args: argparse.Namespace) -> int:
    from .shrink import shrink
    schedule = Schedule.load(args.file)
    session = session_for(schedule)
    try:
        res = shrink(session, schedule, max_runs=args.max_runs)
    except ValueError as e:
        raise CliError(f"{args.file}: {e}") from None
    findings = [f for f in res.result.findings]
    meta = dict(res.shrunk.meta)
    meta["findings"] = [_finding_json(f, session) for f in findings]
    replace(res.shrunk, meta=meta).save(args.output)
    print(f"shrunk {len(res.original.decisions)} decisions to {len(res.shrunk.decisions)} "
          f"(preemptions {res.preemptions[0]} -> {res.preemptions[1]}, model events "
          f"{res.model_events[0]} -> {res.model_events[1]}) in {res.runs} runs; the "
          "finding still reproduces:")
    for f in findings:
        print(_finding_text(f))
    print(f"replay it: testbed replay {args.output} --timeline")
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .campaign import Campaign, CampaignError, CampaignSpec
    if args.schedules is None and args.time is None and not args.resume:
        raise CliError("say how long: --schedules N or --time SECONDS")
    if args.workers < 1 or (args.schedules is not None and args.schedules < 1):
        raise CliError("--workers and --schedules are at least 1")
    campaign = Campaign(args.out)
    try:
        if args.resume:
            spec = campaign.load()
            if spec.scenario != load_scenario(args.scenario).name:
                raise CliError(f"{args.out}: that campaign fuzzes {spec.scenario!r}, "
                               f"not {args.scenario!r}")
        else:
            load_scenario(args.scenario)  # a clear error for an unknown name, first
            spec = campaign.create(CampaignSpec(
                args.scenario, args.strategy, args.seed, args.batch, args.depth, args.k,
                args.p_model, args.cpus, args.cache.value if args.cache else None))
    except CampaignError as e:
        raise CliError(str(e)) from None
    schedules = args.schedules
    if args.resume and schedules is None and args.time is None:
        schedules = campaign.target  # what the interrupted campaign was asked for
        if schedules is None:
            raise CliError("say how much more: --schedules N (the total) or --time SECONDS")
    target = f"{schedules} schedules" if schedules is not None else f"{args.time:g} s"
    quiet = not sys.stderr.isatty()
    print(f"fuzzing {spec.scenario} with {spec.strategy} (campaign seed {spec.seed}"
          + (f", d={spec.depth}, k={spec.k}" if spec.strategy == "pct" else "")
          + f"), {target}, {args.workers if not args.dask else 'dask'} workers, "
          f"out: {args.out}" + (f" (resuming: {campaign.stats.schedules} schedules done, "
                                f"{len(campaign.stats.findings)} findings)"
                                if args.resume else ""))

    def say(text: str) -> None:
        if progress is not None:
            progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    db = default_db()

    def found(key: str, summary: dict[str, object], path: Path) -> None:
        if db is not None:
            db.save(Schedule.load(path))
        say(f"[{summary['oracle']}] run {summary['run']}: {summary['message']}")
        say(f"  reproduce: testbed replay {path}")

    progress: Any = None
    task = None
    if not quiet:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        progress = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed:>9,.0f} schedules"),
                            TextColumn("{task.fields[rate]:>8,.0f}/s"),
                            TextColumn("{task.fields[found]} findings"),
                            TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        task = progress.add_task(spec.scenario, total=schedules, rate=0.0,
                                 found=len(campaign.stats.findings),
                                 completed=campaign.stats.schedules)
        progress.start()
    done_before = campaign.stats.schedules

    def tick(stats: object, elapsed: float) -> None:
        if progress is not None and task is not None:
            s = campaign.stats
            progress.update(task, completed=s.schedules, found=len(s.findings),
                            rate=(s.schedules - done_before) / elapsed if elapsed else 0.0)

    campaign.on_finding = found
    campaign.on_progress = tick
    campaign.on_problem = lambda text: say(f"testbed: {text}")
    try:
        stats = campaign.run(schedules=schedules, seconds=args.time, workers=args.workers,
                             dask=args.dask)
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        s = campaign.stats
        print(f"interrupted after {s.schedules} schedules; {len(s.findings)} findings are "
              f"in {campaign.findings_dir}. Continue with: testbed fuzz {args.scenario} "
              f"--out {args.out} --resume", file=sys.stderr)
        return 130
    except CampaignError as e:
        raise CliError(str(e)) from None
    finally:
        if progress is not None:
            progress.stop()
    lost = stats["lost_batches"]
    print(f"{stats['schedules']} schedules, {stats['decisions']} decisions, "
          f"{stats['instructions']} instructions in {stats['wall_seconds']:.1f}s "
          f"({stats['schedules_per_second']:.0f} schedules/s); {stats['findings']} distinct "
          f"findings" + (f"; {len(lost)} batches lost: {lost}" if lost else "")
          + f"; stats: {Path(args.out) / 'stats.json'}")
    return 1 if stats["findings"] else 0


def _params(items: Sequence[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = int(value, 0)
        except ValueError:
            raise CliError(f"--set {item!r}: expected NAME=INTEGER") from None
        if not sep or not key.strip():
            raise CliError(f"--set {item!r}: expected NAME=INTEGER")
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from .search import CheckpointError, SearchBounds, search
    cls = load_scenario(args.scenario)
    params = {} if args.full else dict(cls.search_scope)
    params.update(_params(args.set))
    if args.cpus:
        params["ncpus"] = args.cpus
    session = Session(cls(), cache=args.cache, params=params)
    bounds = SearchBounds(args.preemptions, args.model_events, max_states=args.max_states,
                          max_seconds=args.max_seconds)
    out = Path(args.out)
    scope = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "as the scenario runs"
    if not args.json:
        print(f"searching {cls.name} ({scope}): at most {args.preemptions} preemptions and "
              f"{args.model_events} memory-model events")
    saved: dict[tuple[str, int, tuple[int, ...]], str] = {}

    def report(f: Finding, path: tuple[Decision, ...]) -> None:
        sched = Schedule(cls.name, session.image.digest, session.config(), path, "search",
                         None, {"strategy": "search", **bounds.space()})
        tag = f"{f.oracle}-search-{len(saved)}"
        result = session.replay(sched)  # records the findings as a run gives them
        saved[f.signature()] = str(_save(result, session, out, tag))
        if not args.json:
            print(_finding_text(f))
            print(f"  reproduce: testbed replay {saved[f.signature()]}")

    try:
        res = search(session, bounds, checkpoint=args.checkpoint, resume=args.resume,
                     on_finding=report)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    verdict = ("covered: every schedule within the bounds was explored" if res.covered
               else f"NOT covered: {res.reason}")
    if args.json:
        print(json.dumps({
            "scenario": cls.name, "params": params, **bounds.space(), "covered": res.covered,
            "reason": res.reason, "states": res.states, "transitions": res.transitions,
            "final_states": res.finals, "seconds": round(res.total_seconds, 3),
            "resumed": res.resumed, "history_oracle": res.history_oracle,
            "findings": [{**_finding_json(f, session), "reproducer": saved.get(sig, "")}
                         for sig, (f, _) in res.findings.items()]}, indent=2))
    else:
        print(f"{res.states} states, {res.transitions} transitions, {res.finals} final states "
              f"in {res.total_seconds:.1f}s; {len(res.findings)} distinct findings; {verdict}")
        if res.history_oracle:
            print("note: the trace decoder judges history; state hashing can prune a path "
                  "only it would flag (see testbed/search.py)")
        if not res.covered and args.checkpoint:
            print(f"resume with: testbed search {args.scenario} --checkpoint "
                  f"{args.checkpoint} --resume (same bounds and scope)")
    return 1 if res.findings else 0


def _litmus_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.litmus"))
            if not found:
                raise CliError(f"{p}: no .litmus files in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise CliError(f"{p}: no such file or folder")
    return files


def cmd_litmus(args: argparse.Namespace) -> int:
    from .exploration import Bounds
    from .litmus import LitmusError, parse_file
    from .litmus_run import report_text, results_json, run_test
    results = []
    failed = 0
    bounds = Bounds(max_states=args.max_states, max_seconds=args.max_seconds)
    for path in _litmus_files(args.paths):
        try:
            result = run_test(parse_file(path), args.cache, bounds=bounds,
                              random_runs=args.random, seed=args.seed)
        except LitmusError as e:
            print(f"testbed: error: {e}", file=sys.stderr)
            failed += 1
            continue
        results.append(result)
        if not args.json:
            print(report_text(result))
            print()
    if args.json:
        print(results_json(results))
    return 2 if failed else 0


def cmd_disasm(args: argparse.Namespace) -> int:
    session = _session(args.scenario, None, None)
    for line in session.image.listing:
        print(f"{line.addr:#x}  {line.word:08x}  {line.text:<32} {line.symbol}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description="Live code-patching races on "
                                "AArch64: real kernel code on emulated CPUs, scheduled "
                                "deterministically under an instruction-fetch model.")
    p.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sp = sub.add_parser("list", help="list the scenarios")
    sp.set_defaults(func=cmd_list)
    sp = sub.add_parser("run", help="run a scenario under many schedules (exit 1 on a "
                        "finding, 2 on bad input)")
    sp.add_argument("scenario", help="scenario name or path/to/file.py[:name]")
    sp.add_argument("--schedules", "--runs", type=int, default=100, dest="schedules")
    sp.add_argument("--seed", type=int, help=f"first seed (default: ${ENV_SEED} or 0)")
    sp.add_argument("--strategy", choices=["random", "pct", "rr", "round-robin"],
                    default="random")
    sp.add_argument("--depth", type=int, default=3, help="PCT's bug depth d (default 3)")
    sp.add_argument("--k", type=int, default=0, help="PCT's steps per run, fixed (default: "
                    "the longest run so far, from 200)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--p-model", type=float, default=0.05,
                    help="probability of a memory-model choice at each decision")
    sp.add_argument("--cpus", type=int)
    sp.add_argument("--cache", type=_cache, help="IDC0, IDC1 or DIC1")
    sp.add_argument("--out", default="testbed-findings", help="where reproducers go")
    sp.add_argument("--no-db", action="store_true", help="do not replay or record known "
                    "failures (.testbed/, or $TESTBED_DB)")
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser("replay", help="replay a saved schedule exactly (exit 1 if its "
                        "finding reproduces, 0 if not, 2 on bad input)")
    sp.add_argument("file")
    sp.add_argument("--trace", action="store_true", help="print the ground-truth trace")
    sp.add_argument("--timeline", action="store_true", help="print the timeline")
    sp.set_defaults(func=cmd_replay)
    from .demo import add_parser as add_demo_parser
    add_demo_parser(sub)
    sp = sub.add_parser("shrink", help="shrink a reproducer, keeping its finding")
    sp.add_argument("file")
    sp.add_argument("-o", "--output", required=True, help="where the shrunk schedule goes")
    sp.add_argument("--max-runs", type=int, default=2000)
    sp.set_defaults(func=cmd_shrink)
    sp = sub.add_parser("fuzz", help="a parallel, resumable fuzz campaign (exit 1 on a "
                        "finding)")
    sp.add_argument("scenario")
    sp.add_argument("--strategy", choices=["pct", "random"], default="random",
                    help="random walk (default: it found every race of the scenario table "
                    "at least as fast as PCT, see bench/ttff.py) or PCT")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--schedules", type=int, help="total schedules of the campaign")
    how.add_argument("--time", type=float, metavar="SECONDS", help="run for this long")
    sp.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    sp.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler (tcp://host:port) "
                    "instead of local worker processes")
    sp.add_argument("--out", required=True, help="the campaign folder")
    sp.add_argument("--resume", action="store_true",
                    help="continue the campaign in --out, skipping finished batches")
    sp.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    sp.add_argument("--batch", type=int, default=200, help="schedules per batch")
    sp.add_argument("--depth", type=int, default=3, help="PCT's bug depth d (default 3)")
    sp.add_argument("--k", type=int, default=0,
                    help="PCT's steps per run (default: calibrated on 20 runs)")
    sp.add_argument("--p-model", type=float, default=0.05)
    sp.add_argument("--cpus", type=int)
    sp.add_argument("--cache", type=_cache)
    sp.set_defaults(func=cmd_fuzz)
    sp = sub.add_parser("search", help="preemption-bounded exhaustive search of a scenario "
                        "(exit 1 on a finding)")
    sp.add_argument("scenario")
    sp.add_argument("--preemptions", type=int, default=2, help="preemption bound (default 2)")
    sp.add_argument("--model-events", type=int, default=1,
                    help="memory-model choices per schedule (default 1)")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="a scenario parameter (e.g. iterations=2), repeatable")
    sp.add_argument("--full", action="store_true",
                    help="search the scenario as it runs, not its small search scope")
    sp.add_argument("--cpus", type=int)
    sp.add_argument("--cache", type=_cache)
    sp.add_argument("--max-states", type=int, default=5_000_000)
    sp.add_argument("--max-seconds", type=float, default=3600.0)
    sp.add_argument("--checkpoint", help="checkpoint file, written every 30 s and at the end")
    sp.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--out", default="testbed-findings", help="where reproducers go")
    sp.set_defaults(func=cmd_search)
    sp = sub.add_parser("litmus", help="run herd-format litmus tests, herd7-style verdicts")
    sp.add_argument("paths", nargs="+", metavar="PATH", help=".litmus files or folders")
    sp.add_argument("--cache", type=_cache, help="IDC0, IDC1 or DIC1 (default: the file's)")
    sp.add_argument("--json", action="store_true", help="print a JSON list of results")
    sp.add_argument("--max-states", type=int, default=500_000)
    sp.add_argument("--max-seconds", type=float, default=120.0)
    sp.add_argument("--random", type=int, default=0, metavar="N",
                    help="sample N random schedules instead of exploring exhaustively")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_litmus)
    sp = sub.add_parser("disasm", help="print a scenario's linked kernel image")
    sp.add_argument("scenario")
    sp.set_defaults(func=cmd_disasm)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except (CliError, AsmError, ScheduleError, ScenarioError, GuestError,
            InvalidDecision) as e:
        print(f"testbed: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `testbed disasm X | head`
        sys.stderr.close()
        return 0
