"""The ``testbed`` command line.

Exit codes mean one thing each: 0 nothing found, 1 a finding, 2 bad input or usage (one
line on stderr naming the file, line, field or option, and the reason), 3 the
scenario's own code raised (its file and line, the exception; no finding), 130
interrupted.  Every numeric option is range-checked when it is parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, layout
from .asm import AsmError
from .errors import ScenarioCodeError
from .faildb import default_db
from .findings import Finding, OracleName, display_path, finding_json, finding_text
from .machine import MEMORY_MODELS, GuestError
from .memory import CacheType
from .runs import (
    FindingsLog,
    Recorded,
    Run,
    read_reproducer,
    replay_command,
    reproducer,
    run_schedules,
)
from .scenario import (
    ScenarioError,
    ScenarioFileRequired,
    Session,
    default_strategy,
    list_scenarios,
    load_scenario,
    scenario_ref,
    scenario_source,
    session_for,
)
from .schedule import Decision, InvalidDecision, Schedule, ScheduleError
from .strategies import NAMES as STRATEGIES
from .strategies import StrategySpec

ENV_SEED = "TESTBED_SEED"
EXIT_CLEAN, EXIT_FINDING, EXIT_BAD_INPUT, EXIT_SCENARIO_CODE = 0, 1, 2, 3


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


# -- option types: each refuses what makes no sense, when it is parsed --------------------

def _int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"must be {lo}..{hi}, not {value}" if hi is not None
                else f"must be >= {lo}, not {value}")
        return value
    return parse


def _float(lo: float, hi: float | None = None, *, open_lo: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        bad = (math.isnan(value) or math.isinf(value) or value < lo
               or (open_lo and value == lo) or (hi is not None and value > hi))
        if bad:
            rng = (f"{'more than' if open_lo else 'at least'} {lo:g}"
                   + (f" and at most {hi:g}" if hi is not None else ""))
            raise argparse.ArgumentTypeError(f"must be {rng}, not {text}")
        return value
    return parse


_SIZES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str) -> int:
    """Bytes, or with a suffix: 512M, 4G (powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SIZES and t[-1:] else ""
    try:
        value = float(t[:-1] if unit else t) * _SIZES[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 4G)") from None
    if math.isnan(value) or value < 64 << 20:
        raise argparse.ArgumentTypeError(f"must be at least 64M, not {text}")
    return int(value)


def _cache(text: str) -> CacheType:
    try:
        return CacheType.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _env_seed() -> int:
    text = os.environ.get(ENV_SEED, "")
    if not text:
        return 0
    try:
        value = int(text, 0)
    except ValueError:
        raise CliError(f"${ENV_SEED}={text!r}: not an integer") from None
    if value < 0:
        raise CliError(f"${ENV_SEED}={text!r}: a seed is 0 or more")
    return value


def _out_dir(path: str, option: str = "--out") -> Path:
    """A folder to write into: refused when it names a file (created only when needed)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{option} {path}: is a file, not a folder")
    return p


def _session(scenario: str, cpus: int | None, cache: CacheType | None,
             memory: str | None = None, promises: bool = False,
             params: dict[str, int] | None = None) -> Session:
    return Session(load_scenario(scenario)(), ncpus=cpus, cache=cache, memory=memory,
                   promises=promises, params=params or None)


def _schedule_session(args: argparse.Namespace, schedule: Schedule,
                      command: str) -> Session:
    """The session a schedule was recorded on; a scenario file of one's own only when
    the user named it with --scenario (else one line with the command to use)."""
    try:
        return session_for(schedule, args.scenario)
    except ScenarioFileRequired as e:
        raise CliError(f"{args.file}: scenario {e.name!r} comes from {e.file}, which runs "
                       "only when you name it: "
                       + replay_command(Path(args.file), None, command,
                                        "--scenario", display_path(Path(e.file)))) from None
    except (ScenarioError, ScheduleError) as e:
        raise CliError(_in_file(args.file, e)) from None


def _in_file(file: str, e: BaseException) -> str:
    """The error ``e`` about the file ``file``, said once with the file's name."""
    text = str(e)
    return text if text.startswith((file, "--scenario")) else f"{file}: {text}"


@contextlib.contextmanager
def _replaying(file: str) -> Iterator[None]:
    """A replay of the schedule in ``file`` that diverges is an error about that file."""
    try:
        yield
    except (ScheduleError, InvalidDecision) as e:
        raise CliError(_in_file(file, e)) from None


def _print_findings(recs: Sequence[Recorded], session: Session) -> None:
    for rec in recs:
        known = rec.run.known
        print(finding_text(rec.finding) + (f" (a known failure, from {known})" if known
                                           else ""))
        if rec.reproducer is not None:
            print(f"  reproduce: {replay_command(rec.reproducer, session.source)}")


def cmd_list(args: argparse.Namespace) -> int:
    for name, cls in sorted(list_scenarios().items()):
        print(f"{name:<20} {cls.ncpus} CPUs  {cls.cache.value:<5} {cls.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    seed0 = args.seed if args.seed is not None else _env_seed()
    out = _out_dir(args.out)
    if args.schedules == 0 and args.no_db:
        raise CliError("--schedules 0 with --no-db runs nothing (0 replays only the failure "
                       "database's schedules)")
    session = _session(args.scenario, args.cpus, args.cache, args.memory, args.promises,
                       _params(args.set))
    base = (default_strategy(type(session.scenario)) if args.strategy is None
            else StrategySpec(args.strategy))  # the scenario's, unless one is named
    spec = StrategySpec(base.name, depth=args.depth or base.depth, k=args.k or base.k,
                        p_model=base.p_model if args.p_model is None else args.p_model)
    db = default_db() if not args.no_db else None
    log = FindingsLog(session, out, db)
    decisions = instructions = decode_runs = runs = 0
    t0 = time.perf_counter()

    def warn(text: str) -> None:
        print(f"testbed: warning: {text}", file=sys.stderr)

    for run in run_schedules(session, spec, range(seed0, seed0 + args.schedules), db=db,
                             adapt_k=not args.k, warn=warn):
        if run.known is None:
            runs += 1
            decisions += run.result.decisions
            instructions += run.result.instructions
            decode_runs += any(f.oracle == OracleName.TRACE_DECODE for f in run.result.findings)
        new = log.add(run, "db" if run.known is not None else str(run.seed))
        if not args.json:
            _print_findings(new, session)
    dt = time.perf_counter() - t0
    if args.json:
        print(json.dumps({
            "scenario": session.scenario.name, "strategy": spec.name, "seed": seed0,
            "schedules_run": runs, "decisions": decisions,
            "instructions": instructions, "seconds": round(dt, 3),
            "decoder": {"checked": session.scenario.trace_decode,
                        "schedules_decoded": (runs - decode_runs
                                              if session.scenario.trace_decode else 0),
                        "schedules_not_decodable": decode_runs},
            "findings": log.to_json()}, indent=2))
    else:
        print(f"{runs} schedules of {session.scenario.name}: {decisions} decisions, "
              f"{instructions} instructions, {len(log.seen)} distinct findings ({dt:.2f}s)")
    return EXIT_FINDING if log.seen else EXIT_CLEAN


def cmd_replay(args: argparse.Namespace) -> int:
    schedule, wanted = read_reproducer(args.file)
    session = _schedule_session(args, schedule, "replay")
    explained = None
    with _replaying(args.file):
        if args.timeline:
            from .explain import explain_replay
            explained = explain_replay(session, schedule)
            result = explained.result
        else:
            result = session.replay(schedule)
    print(f"replayed {result.decisions} decisions of {schedule.scenario} "
          f"({result.instructions} instructions), trace {result.trace_digest()[:16]}")
    for f in result.findings:
        print(finding_text(f))
    if args.trace:
        for cpu, seq in enumerate(result.ground_truth()):
            for step, addr, word in seq:
                print(f"CPU{cpu} {step:>5} {addr:#x} {word:08x} {session.image.symbolize(addr)}")
    if explained is not None:
        from .timeline import render
        print(render(result, session.image, session.machine.ncpus,
                     accesses=explained.accesses, records=explained.records))
        if explained.lines:
            print()
            print("\n".join(explained.lines))
    got = {(str(f.oracle), f.addr) for f in result.findings}
    missing = sorted(set(wanted) - got)
    if missing:
        oracle, addr = missing[0]
        ended = (not result.finished and not session.machine.stopped
                 and bool(session.machine.steppable() or session.machine.irq_choices()))
        raise CliError(f"{args.file}: the recorded [{oracle}] finding at {addr:#x} did NOT "
                       "reproduce" + (f": the schedule ends after {result.decisions} "
                                      "decisions while CPUs could still run (a truncated "
                                      "or edited file?)" if ended else ""))
    return EXIT_FINDING if result.findings else EXIT_CLEAN


def cmd_shrink(args: argparse.Namespace) -> int:
    from .shrink import shrink
    output = Path(args.output)
    if output.is_dir():
        raise CliError(f"-o {args.output}: is a folder; name the file to write")
    if not output.parent.is_dir():
        raise CliError(f"-o {args.output}: no such folder {output.parent}")
    schedule, _ = read_reproducer(args.file)
    session = _schedule_session(args, schedule, "shrink")
    try:
        res = shrink(session, schedule, max_runs=args.max_runs)
    except ValueError as e:
        raise CliError(f"{args.file}: {e}") from None
    replace(res.shrunk, meta=reproducer(res.result, session).meta,
            source=session.source).save(output)
    print(f"shrunk {len(res.original.decisions)} decisions to {len(res.shrunk.decisions)} "
          f"(preemptions {res.preemptions[0]} -> {res.preemptions[1]}, model events "
          f"{res.model_events[0]} -> {res.model_events[1]}) in {res.runs} runs; the "
          "finding still reproduces:")
    for f in res.result.findings:
        print(finding_text(f))
    print(f"replay it: {replay_command(output, session.source, 'replay', '--timeline')}")
    return EXIT_CLEAN


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .campaign import Campaign, CampaignError, CampaignSpec
    if args.schedules is None and args.time is None and not args.resume:
        raise CliError("say how long: --schedules N or --time SECONDS")
    _out_dir(args.out)
    cls = load_scenario(args.scenario)  # the user named it: a file of one's own runs here
    here = scenario_source(cls)
    scenario_file = here.file if here is not None else None
    campaign = Campaign(args.out)
    try:
        if args.resume:
            spec = campaign.load(scenario_file)
            if spec.scenario != cls.name:
                raise CliError(f"{args.out}: that campaign fuzzes {spec.scenario!r}, "
                               f"not {cls.name!r}")
        else:
            spec = campaign.create(CampaignSpec(
                cls.name, args.strategy, args.seed, args.batch, args.depth or 3, args.k,
                0.05 if args.p_model is None else args.p_model, args.cpus,
                args.cache.value if args.cache else None,
                memory=args.memory or cls.memory, scenario_file=scenario_file,
                promises=args.promises))
    except ScenarioFileRequired as e:
        raise CliError(f"{args.out}: the campaign fuzzes scenario {e.name!r} of {e.file}, "
                       f"not {args.scenario}") from None
    except (CampaignError, ValueError) as e:
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
        say(f"  reproduce: {replay_command(path, spec.scenario_source())}")

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
    out = _out_dir(args.out)
    cls = load_scenario(args.scenario)
    params = {} if args.full else dict(cls.search_scope)
    params.update(_params(args.set))
    if args.cpus:
        params["ncpus"] = args.cpus
    if args.resume and not args.checkpoint:
        raise CliError("--resume needs --checkpoint FILE (the checkpoint to continue)")
    if args.checkpoint and Path(args.checkpoint).is_dir():
        raise CliError(f"--checkpoint {args.checkpoint}: is a folder; name a file")
    try:
        bounds = SearchBounds(args.preemptions, args.model_events, max_states=args.max_states,
                              max_seconds=args.max_seconds, max_memory=args.max_memory)
    except ValueError as e:
        raise CliError(str(e)) from None
    session = Session(cls(), cache=args.cache, params=params, memory=args.memory,
                      promises=args.promises)
    scope = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "as the scenario runs"
    if not args.json:
        print(f"searching {cls.name} ({scope}): at most {args.preemptions} preemptions and "
              f"{args.model_events} memory-model events")
    log = FindingsLog(session, out)

    def report(f: Finding, path: tuple[Decision, ...]) -> None:
        sched = Schedule(cls.name, session.image.digest, session.config(), path, "search",
                         None, {"strategy": "search", **bounds.space()}, session.source)
        result = session.replay(sched)  # records the findings as a run gives them
        new = log.add(Run(result, len(log.seen)), f"search-{len(log.seen)}")
        if not args.json:
            _print_findings(new, session)

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
            "peak_memory_bytes": res.peak_memory, "max_memory_bytes": bounds.max_memory,
            "findings": [{**finding_json(f, session.image.symbolize),
                          "reproducer": str(log.seen[sig].reproducer)
                          if sig in log.seen else ""}
                         for sig, (f, _) in res.findings.items()]}, indent=2))
    else:
        print(f"{res.states} states, {res.transitions} transitions, {res.finals} final states "
              f"in {res.total_seconds:.1f}s; {len(res.findings)} distinct findings; {verdict}")
        if res.history_oracle:
            print("note: the trace decoder and the perf ring's checks judge history; state "
                  "hashing can prune a path only they would flag (see testbed/search.py)")
        if not res.covered and args.checkpoint:
            print(f"resume with: testbed search {scenario_ref(cls)} --checkpoint "
                  f"{args.checkpoint} --resume (same bounds and scope)")
    return EXIT_FINDING if res.findings else EXIT_CLEAN


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import Row, ablate
    from .ablation import AblationError
    from .search import SearchBounds
    out = _out_dir(args.out)
    if args.html:
        _out_dir(args.html, "--html")
    cls = load_scenario(args.scenario)
    functions = ([f.strip() for f in args.functions.split(",") if f.strip()]
                 if args.functions is not None else None)
    if functions is not None and not functions:
        raise CliError("--functions: name at least one function")
    try:
        bounds = SearchBounds(args.preemptions, args.model_events,
                              max_seconds=args.max_seconds)
    except ValueError as e:
        raise CliError(str(e)) from None
    saved: dict[str, str] = {}
    heading = [f"ablating {cls.name}: each point alone"
               + (", then each two not shown needed alone together" if args.pairs else "")
               + f", searched at {args.preemptions} preemptions and {args.model_events} "
               f"memory-model events (search scope), then {args.schedules} random schedules"
               + (", with promises" if args.promises else "")]

    def show(r: Row) -> None:
        if heading and not args.json:  # printed with the first row: bad input prints none
            print(heading.pop(), flush=True)
        if r.needed and r.reproducer is not None:
            path = out / f"{cls.name}-ablate-{r.key}.json"
            out.mkdir(parents=True, exist_ok=True)
            r.reproducer.save(path)
            saved[r.key] = str(path)
        if args.json:
            return
        result = (f"{r.verdict.upper()}: {r.oracle} ({r.how})" if r.needed
                  else f"not shown needed: {r.how}")
        print(f"{r.name:<34} {r.where:<16} {r.what:<34} {result} [{r.seconds:.1f}s]",
              flush=True)
        if r.key in saved and r.reproducer is not None:
            print(f"{'':<34} reproduce: "
                  f"{replay_command(Path(saved[r.key]), r.reproducer.source)}", flush=True)

    try:
        report = ablate(cls, functions=functions, memory=args.memory, bounds=bounds,
                        schedules=args.schedules, pairs=args.pairs, promises=args.promises,
                        progress=show)
    except AblationError as e:
        raise CliError(f"--functions: {e}") from None
    needed = [r for r in report.rows + report.pairs if r.needed]
    if args.html:
        from .ablate import write_html
        command = " ".join([f"testbed ablate {args.scenario}",
                            *([f"--functions {args.functions}"] if args.functions else []),
                            f"--memory {report.memory} --preemptions {args.preemptions} "
                            f"--model-events {args.model_events} --schedules {args.schedules}",
                            *(["--pairs"] if args.pairs else []),
                            *(["--promises"] if args.promises else [])])
        page = write_html(report, Path(args.html), saved, command)
        if not args.json:
            print(f"wrote {page}")
    if args.json:
        print(json.dumps(report.to_json(saved), indent=2))
    else:
        pairs = (f"; {len(report.pairs)} pairs tried, "
                 f"{sum(r.needed for r in report.pairs)} needed together"
                 if args.pairs else "")
        print(f"{len(report.rows)} points ({len(report.not_executed)} more not executed in "
              f"this configuration): {sum(r.needed for r in report.rows)} needed{pairs}; "
              f"baseline: {report.baseline}; {report.seconds:.0f}s")
        writer = [r.name for r in report.rows if not r.needed and (
            r.point.kind == "release" or r.point.what.startswith(("dmb ishst", "dmb st")))]
        if writer and report.memory == "arm" and not args.promises:
            print(f"note: without --promises a CPU's stores become visible in program order, "
                  f"so these writer-side points cannot be shown needed: {', '.join(writer)}")
    return EXIT_FINDING if needed else EXIT_CLEAN


class _VerdictsAction(argparse.Action):
    """``--verdicts FILE``, repeatable: each file read and checked when it is parsed, and
    merged with the ones before it (a test given two verdicts is refused)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from .litmus_run import VerdictFileError, read_verdicts
        try:
            setattr(namespace, self.dest,
                    read_verdicts(str(values), getattr(namespace, self.dest, None)))
        except VerdictFileError as e:
            raise argparse.ArgumentError(self, _one_line(e)) from None


def cmd_litmus(args: argparse.Namespace) -> int:
    from .exploration import Bounds
    from .litmus import LitmusError
    from .litmus_run import run_many
    try:
        return run_many(args.paths, cache=args.cache, memory=args.memory,
                        bounds=Bounds(max_states=args.max_states,
                                      max_seconds=args.max_seconds),
                        random_runs=args.random, seed=args.seed, as_json=args.json,
                        out=sys.stdout, err=sys.stderr, verdicts=args.verdicts,
                        promises=args.promises)
    except (LitmusError, ValueError) as e:
        raise CliError(str(e)) from None


def cmd_disasm(args: argparse.Namespace) -> int:
    session = _session(args.scenario, None, None)
    for line in session.image.listing:
        print(f"{line.addr:#x}  {line.word:08x}  {line.text:<32} {line.symbol}")
    return EXIT_CLEAN


def _strategy_options(sp: argparse.ArgumentParser, default_k: str) -> None:
    sp.add_argument("--depth", type=_int(1, 64), default=None,
                    help="PCT's bug depth d (default 3, or the scenario's)")
    sp.add_argument("--k", type=_int(0), default=0, help=f"PCT's steps per run ({default_k})")
    sp.add_argument("--p-model", type=_float(0, 0.75), default=None,
                    help="random walk: probability of a memory-model choice at each "
                    "decision (0..0.75, default 0.05)")
    sp.add_argument("--cpus", type=_int(1, layout.MAX_CPUS),
                    help=f"CPUs (1..{layout.MAX_CPUS}; default: the scenario's)")
    sp.add_argument("--cache", type=_cache, help="IDC0, IDC1 or DIC1")
    _memory_option(sp, None)
    _promises_option(sp)


def _memory_option(sp: argparse.ArgumentParser, default: str | None) -> None:
    sp.add_argument("--memory", choices=MEMORY_MODELS, default=default,
                    help="the data-memory model: arm (the architecture's: Promising-ARM, "
                    "testbed/dataside.py) or sc (sequentially consistent: faster, for "
                    "teaching); default: " + (default or "the scenario's (arm unless it "
                                               "says)"))


def _promises_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--promises", action="store_true",
                    help="with --memory arm: a store may become visible before earlier "
                    "accesses of its CPU (Promising-ARM's promises, made at any point and "
                    "certified by a solo run: testbed/dataside.py); slower, needed for "
                    "the writer side of a message-passing race")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="testbed", description="Live code-patching races on "
                "AArch64: real kernel code on emulated CPUs, scheduled "
                "deterministically under an instruction-fetch model. Exit codes: 0 "
                "nothing found, 1 a finding, 2 bad input, 3 the scenario's own code "
                "raised.")
    p.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sp = sub.add_parser("list", help="list the scenarios")
    sp.set_defaults(func=cmd_list)
    sp = sub.add_parser("run", help="run a scenario under many schedules (exit 1 on a "
                        "finding)")
    sp.add_argument("scenario", help="scenario name or path/to/file.py[:name]")
    sp.add_argument("--schedules", "--runs", type=_int(0), default=100, dest="schedules",
                    help="schedules to run (default 100; 0: only the known failures)")
    sp.add_argument("--seed", type=_int(0), help=f"first seed (default: ${ENV_SEED} or 0)")
    sp.add_argument("--strategy", choices=[*STRATEGIES, "rr"], default=None,
                    help="default: the scenario's (random unless it names one)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    _strategy_options(sp, "default: the longest run so far, from 200")
    sp.add_argument("--out", default="testbed-findings", help="where reproducers go")
    sp.add_argument("--no-db", action="store_true", help="do not replay or record known "
                    "failures (.testbed/, or $TESTBED_DB)")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="a scenario parameter (e.g. iterations=2), repeatable")
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser("replay", help="replay a saved schedule exactly (exit 1 if its "
                        "finding reproduces)")
    sp.add_argument("file")
    sp.add_argument("--scenario", metavar="FILE", help="the scenario file of one's own the "
                    "schedule was recorded on (its SHA-256 must match)")
    sp.add_argument("--trace", action="store_true", help="print the ground-truth trace")
    sp.add_argument("--timeline", action="store_true",
                    help="print the timeline and why the finding happened")
    sp.set_defaults(func=cmd_replay)
    from .demo import add_parser as add_demo_parser
    add_demo_parser(sub)
    sp = sub.add_parser("shrink", help="shrink a reproducer, keeping its finding")
    sp.add_argument("file")
    sp.add_argument("-o", "--output", required=True, help="where the shrunk schedule goes")
    sp.add_argument("--max-runs", type=_int(1), default=2000)
    sp.add_argument("--scenario", metavar="FILE", help="the scenario file of one's own the "
                    "schedule was recorded on")
    sp.set_defaults(func=cmd_shrink)
    sp = sub.add_parser("fuzz", help="a parallel, resumable fuzz campaign (exit 1 on a "
                        "finding)")
    sp.add_argument("scenario", help="scenario name or path/to/file.py[:name]")
    sp.add_argument("--strategy", choices=["pct", "random"], default="random",
                    help="random walk (default: it found every race of the scenario table "
                    "at least as fast as PCT, see bench/ttff.py) or PCT")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--schedules", type=_int(1), help="total schedules of the campaign")
    how.add_argument("--time", type=_float(0, open_lo=True), metavar="SECONDS",
                     help="run for this long")
    sp.add_argument("--workers", type=_int(1, 1024), default=os.cpu_count() or 1)
    sp.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler (tcp://host:port) "
                    "instead of local worker processes")
    sp.add_argument("--out", required=True, help="the campaign folder")
    sp.add_argument("--resume", action="store_true",
                    help="continue the campaign in --out, skipping finished batches")
    sp.add_argument("--seed", type=_int(0), default=0, help="campaign seed (default 0)")
    sp.add_argument("--batch", type=_int(1), default=200, help="schedules per batch")
    _strategy_options(sp, "default: calibrated on 20 runs")
    sp.set_defaults(func=cmd_fuzz)
    sp = sub.add_parser("search", help="preemption-bounded exhaustive search of a scenario "
                        "(exit 1 on a finding)")
    sp.add_argument("scenario", help="scenario name or path/to/file.py[:name]")
    sp.add_argument("--preemptions", type=_int(0, 64), default=2,
                    help="preemption bound (default 2)")
    sp.add_argument("--model-events", type=_int(0, 64), default=1,
                    help="memory-model choices per schedule (default 1)")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="a scenario parameter (e.g. iterations=2), repeatable")
    sp.add_argument("--full", action="store_true",
                    help="search the scenario as it runs, not its small search scope")
    sp.add_argument("--cpus", type=_int(1, layout.MAX_CPUS))
    sp.add_argument("--cache", type=_cache)
    _memory_option(sp, None)
    _promises_option(sp)
    sp.add_argument("--max-states", type=_int(1), default=5_000_000)
    sp.add_argument("--max-seconds", type=_float(0, open_lo=True), default=3600.0)
    sp.add_argument("--max-memory", type=_size, default=4 << 30, metavar="SIZE",
                    help="stop, NOT covered, when the search holds this much (default 4G; "
                    "e.g. 512M)")
    sp.add_argument("--checkpoint", help="checkpoint file, written every 30 s and at the end")
    sp.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--out", default="testbed-findings", help="where reproducers go")
    sp.set_defaults(func=cmd_search)
    sp = sub.add_parser("ablate", help="weaken each ordering and maintenance point alone and "
                        "look for a race (exit 1 if some point is needed)")
    sp.add_argument("scenario", help="scenario name or path/to/file.py[:name]")
    sp.add_argument("--functions", metavar="F,G",
                    help="the kernel functions whose points to weaken (default: every "
                    "function the scenario executes)")
    _memory_option(sp, None)
    _promises_option(sp)
    sp.add_argument("--preemptions", type=_int(0, 64), default=2,
                    help="search's preemption bound (default 2)")
    sp.add_argument("--model-events", type=_int(0, 64), default=1,
                    help="search's memory-model choices per schedule (default 1)")
    sp.add_argument("--max-seconds", type=_float(0, open_lo=True), default=300.0,
                    help="each search's time bound (default 300)")
    sp.add_argument("--schedules", type=_int(0), default=200,
                    help="random schedules per point when the search finds nothing "
                    "(default 200)")
    sp.add_argument("--pairs", action="store_true",
                    help="then weaken every two points not shown needed alone together: "
                    "pairs needed together (each suffices without the other)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--html", metavar="FOLDER", help="also write FOLDER/index.html, each "
                    "needed point linked to a page with its reproducer's timeline")
    sp.add_argument("--out", default="testbed-findings", help="where reproducers go")
    sp.set_defaults(func=cmd_ablate)
    sp = sub.add_parser("litmus", help="run herd-format litmus tests, herd7-style verdicts")
    sp.add_argument("paths", nargs="+", metavar="PATH", help=".litmus files or folders")
    sp.add_argument("--cache", type=_cache, help="IDC0, IDC1 or DIC1 (default: the file's)")
    _memory_option(sp, "arm")
    sp.add_argument("--promises", choices=("first", "anytime"), default="first",
                    help="when the Arm model's promises are made: before anything else "
                    "(default, the paper's checker) or at any point as scenarios make "
                    "them with --promises (testbed/dataside.py)")
    sp.add_argument("--json", action="store_true",
                    help="print JSON Lines: one object per test, as each ends")
    sp.add_argument("--max-states", type=_int(1), default=500_000)
    sp.add_argument("--max-seconds", type=_float(0, open_lo=True), default=120.0)
    sp.add_argument("--random", type=_int(0), default=0, metavar="N",
                    help="sample N random schedules instead of exploring exhaustively")
    sp.add_argument("--seed", type=_int(0), default=0)
    sp.add_argument("--verdicts", action=_VerdictsAction, metavar="FILE",
                    help="herd's verdicts ('NAME Allowed|Forbidden|Required' a line, as "
                    "kinds.txt), repeatable: end with a conformance summary; exit 1 if an "
                    "outcome they forbid was observed")
    sp.set_defaults(func=cmd_litmus)
    sp = sub.add_parser("disasm", help="print a scenario's linked kernel image")
    sp.add_argument("scenario")
    sp.set_defaults(func=cmd_disasm)
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CLEAN
    from .demo import DemoError
    try:
        return int(args.func(args))
    except ScenarioCodeError as e:
        print(f"testbed: scenario error: {_one_line(e)}", file=sys.stderr)
        return EXIT_SCENARIO_CODE
    except (CliError, AsmError, ScheduleError, ScenarioError, GuestError, InvalidDecision,
            DemoError) as e:
        print(f"testbed: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `testbed disasm X | head`
        sys.stderr.close()
        return EXIT_CLEAN
