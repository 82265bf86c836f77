"""``testbed ablate``: is each ordering and maintenance point of a protocol needed?

For each point (``testbed.ablation``) alone, the scenario's image is rebuilt with that
instruction weakened, and the project's own means look for a finding in it:

1. the preemption-bounded exhaustive search on the scenario's search scope, stopped at
   the first finding of any oracle;
2. if it finds none, a random campaign of ``schedules`` runs of the scenario as it runs
   (seeds 0, 1, ...).

A point is **needed** when either finds something: the row carries the oracle, the
message and a reproducer shrunk with ``testbed.shrink`` (its config records the
ablation, so ``testbed replay`` rebuilds the same weakened image).  Otherwise it is
**not shown needed** within the bounds the row states (the search's, whether it
covered them, and the number of random schedules): never "redundant".

The points are those of the functions named, by default of every function some CPU
executes in reference runs (random seeds 0-9 of the search scope and of the scenario
as it runs), and of those only the ones these runs executed (a point on a path the
configuration never takes, such as the ``IDC`` branch of ``caches_clean_inval_pou`` on
an ``IDC=0`` machine, cannot be shown needed here; the report counts them).

With ``pairs``, every two points that are each not shown needed alone are then weakened
together, within the same bounds: a finding there makes the pair **needed together**
(each of the two suffices where the other is missing, as the kick's ``DSB`` and the
flush's last ``DSB`` in ``jump_label_kick``).  A pair holding a point needed alone
says nothing new and is not tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .ablation import Point, find_points, functions_at, to_config
from .explain import explain_replay
from .export import Page, table_html
from .export import write_html as write_page
from .findings import finding_text
from .runs import replay_command
from .scenario import Scenario, Session, session_for
from .schedule import Schedule
from .search import SearchBounds, search
from .shrink import shrink
from .strategies import RandomWalk
from .timeline import build

__all__ = ["AblationReport", "Row", "ablate", "executed", "weaken_and_search", "write_html"]


@dataclass
class Row:
    """One point weakened alone, or two weakened together (``pairs``)."""

    points: tuple[Point, ...]
    verdict: str = "not shown needed"  # or "needed" ("needed together" for a pair)
    how: str = ""  # what found it ("search", "random seed 7"), or the bounds it held for
    oracle: str = ""
    message: str = ""
    reproducer: Schedule | None = None
    states: int = 0
    covered: bool = False
    schedules: int = 0
    seconds: float = 0.0

    @property
    def point(self) -> Point:
        return self.points[0]

    @property
    def needed(self) -> bool:
        return self.verdict.startswith("needed")

    @property
    def key(self) -> str:
        """``site_loop+0x18``, or ``f+0x10,g+0x4`` for a pair: file names, HTML pages."""
        return ",".join(p.name for p in self.points)

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.points)

    @property
    def what(self) -> str:
        return " + ".join(p.what for p in self.points)

    @property
    def where(self) -> str:
        """``insn.S:42``, or ``a.S:1, b.S:2`` for a pair (``?``: no source line)."""
        return ", ".join(f"{Path(p.file).name}:{p.line}" if p.file else "?"
                         for p in self.points)

    def to_json(self, reproducer: str = "") -> dict[str, object]:
        return {"points": [{"function": p.function, "offset": p.offset, "addr": p.addr,
                            "kind": p.kind, "weakened": p.what, "file": p.file,
                            "line": p.line, "source": p.source} for p in self.points],
                "verdict": self.verdict, "how": self.how, "oracle": self.oracle,
                "message": self.message, "search_states": self.states,
                "search_covered": self.covered, "random_schedules": self.schedules,
                "seconds": round(self.seconds, 3), "reproducer": reproducer}


@dataclass
class AblationReport:
    scenario: str
    memory: str
    bounds: SearchBounds
    schedules: int
    functions: list[str]
    rows: list[Row] = field(default_factory=list)  # each point alone
    pairs: list[Row] = field(default_factory=list)  # with ``pairs``: two together
    not_executed: list[Point] = field(default_factory=list)
    baseline: str = ""  # the unablated scenario's own result within the same bounds
    seconds: float = 0.0
    promises: bool = False

    def to_json(self, reproducers: Mapping[str, str] | None = None) -> dict[str, object]:
        """``reproducers``: where each needed row's reproducer was saved, by ``Row.key``."""
        saved = reproducers or {}
        return {"scenario": self.scenario, "memory": self.memory, "promises": self.promises,
                **self.bounds.space(),
                "random_schedules": self.schedules, "functions": self.functions,
                "baseline": self.baseline, "seconds": round(self.seconds, 3),
                "rows": [r.to_json(saved.get(r.key, "")) for r in self.rows],
                "pairs": [r.to_json(saved.get(r.key, "")) for r in self.pairs],
                "not_executed": [{"function": p.function, "offset": p.offset,
                                  "weakened": p.what} for p in self.not_executed]}


def _session(cls: type[Scenario], memory: str | None, scope: bool,
             points: Sequence[Point] = (), promises: bool = False) -> Session:
    return Session(cls(), params=dict(cls.search_scope) if scope else None, memory=memory,
                   ablate=to_config(list(points)), promises=promises)


def executed(session: Session, runs: int = 10) -> set[int]:
    """The addresses some CPU executes in ``runs`` runs of ``session`` (random seeds 0,
    1, ...)."""
    ran: set[int] = set()
    for seed in range(runs):
        r = session.run(RandomWalk(seed))
        ran |= {addr for entries in r.ground_truth() for _, addr, _ in entries}
    return ran


def ablate(cls: type[Scenario], *, functions: Collection[str] | None = None,
           memory: str | None = None, bounds: SearchBounds | None = None,
           schedules: int = 200, shrink_runs: int = 300, pairs: bool = False,
           promises: bool = False,
           progress: Callable[[Row], None] | None = None) -> AblationReport:
    """Weaken each point alone and look for a finding, then with ``pairs`` every two not
    shown needed alone (module docstring); ``bounds``: the search's (default 2
    preemptions, 1 model event); ``promises``: the Arm model's, made at any point
    (``Session``).  ``progress`` sees each row as it is done."""
    bounds = bounds or SearchBounds(2, 1)
    t0 = time.monotonic()
    ref = _session(cls, memory, True, promises=promises)
    if functions is not None:  # unknown names refused before any run
        find_points(ref.image, functions, cls.ablatable)
    ran = executed(ref) | executed(_session(cls, memory, False, promises=promises))
    chosen = sorted(set(functions) if functions is not None
                    else functions_at(ref.image, ran))
    points = find_points(ref.image, chosen, cls.ablatable)
    report = AblationReport(cls.name, ref.memory, bounds, schedules, chosen,
                            promises=promises)
    base = search(_session(cls, memory, True, promises=promises), bounds, stop_on="*")
    report.baseline = (f"{len(base.findings)} finding(s) without ablation"
                       if base.findings else
                       f"no finding without ablation ({base.states} states, "
                       + ("covered" if base.covered else f"not covered: {base.reason}") + ")")
    for p in points:
        if p.addr in ran:
            row = weaken_and_search(cls, (p,), memory=memory, bounds=bounds,
                                    schedules=schedules, shrink_runs=shrink_runs,
                                    promises=promises)
            report.rows.append(row)
            if progress is not None:
                progress(row)
        else:
            report.not_executed.append(p)
    if pairs:
        alone = [r.point for r in report.rows if not r.needed]
        for i, a in enumerate(alone):
            for b in alone[i + 1:]:
                row = weaken_and_search(cls, (a, b), memory=memory, bounds=bounds,
                                        schedules=schedules, shrink_runs=shrink_runs,
                                        promises=promises)
                report.pairs.append(row)
                if progress is not None:
                    progress(row)
    report.seconds = time.monotonic() - t0
    return report


def weaken_and_search(cls: type[Scenario], points: Sequence[Point], *, memory: str | None,
                      bounds: SearchBounds, schedules: int, shrink_runs: int = 300,
                      promises: bool = False) -> Row:
    """Weaken ``points`` together in the scenario's image; search its scope within
    ``bounds``, then ``schedules`` random runs as it runs; shrink what is found."""
    points = tuple(points)
    row = Row(points)
    t = time.monotonic()
    s = _session(cls, memory, True, points, promises)
    res = search(s, bounds, stop_on="*")
    row.states, row.covered = res.states, res.covered
    found: tuple[Session, Schedule] | None = None
    if res.findings:
        sig = next(iter(res.findings))
        found = (s, res.witness(s, sig))
        row.how = "search"
    else:
        full_s = _session(cls, memory, False, points, promises)
        for seed in range(schedules):
            r = full_s.run(RandomWalk(seed))
            row.schedules = seed + 1
            if r.findings:
                found = (full_s, r.schedule)
                row.how = f"random seed {seed}"
                break
    if found is not None:
        session, schedule = found
        try:
            small = shrink(session, schedule, max_runs=shrink_runs).shrunk
        except ValueError:
            small = schedule
        f = session.replay(small).findings[0]
        row.verdict = "needed" if len(points) == 1 else "needed together"
        row.oracle, row.message, row.reproducer = f.oracle, f.message, small
    else:
        cover = "covered" if res.covered else f"NOT covered ({res.reason})"
        row.how = (f"search {bounds.preemptions} preemptions, {bounds.model_events} model "
                   f"events: {res.states} states, {cover}; {row.schedules} random "
                   "schedules")
    row.seconds = time.monotonic() - t
    return row


def write_html(report: AblationReport, folder: Path, reproducers: Mapping[str, str],
               command: str) -> Path:
    """``folder/index.html``: the report's table (points alone, then the pairs tried),
    each needed row linked to a page of its own with the reproducer's timeline (as
    ``testbed demo --html`` draws one)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[list[str], str]] = []
    for r in report.rows + report.pairs:
        where = r.where
        source = "; ".join(p.source for p in r.points)
        verdict = escape(r.verdict)
        if r.needed and r.reproducer is not None:
            name = f"{r.key}.html"
            session = session_for(r.reproducer)
            explained = explain_replay(session, r.reproducer)
            timeline = build(explained.result, session.image, session.machine.ncpus,
                             records=explained.records, accesses=explained.accesses)
            replay = (replay_command(Path(reproducers[r.key]), r.reproducer.source, "replay",
                                     "--timeline") if r.key in reproducers else "(not saved)")
            why = " ".join(line.strip() for line in explained.lines if line.strip())
            alone = ("this point" if len(r.points) == 1 else
                     "these points together (each alone was not shown needed)")
            write_page(Page(
                title=f"testbed ablate {report.scenario}: {r.name} ({r.what})",
                summary=f"Without {alone}: {r.oracle}",
                story=f"{r.name} ({where}: {source}) weakened: {r.what}, in an image "
                      "otherwise the scenario's. The run below is the shrunk reproducer "
                      "that shows " + ("the point is needed." if len(r.points) == 1 else
                                       "the pair is needed together."),
                provenance=f"Found by the {r.how} under --memory {report.memory}"
                           + (" --promises." if report.promises else "."),
                timeline=timeline, image=session.image,
                findings=[finding_text(f) for f in explained.result.findings],
                target=r.oracle, why=[why] if why else [], replay=replay, command=command,
                functions=tuple(sorted({p.function for p in r.points}))), folder / name)
            verdict = f'<a href="{escape(name)}">{escape(r.verdict)}</a>: {escape(r.oracle)}'
        rows.append(([escape(r.name), escape(where), f"<code>{escape(source)}</code>",
                      escape(r.what), verdict, escape(r.how), f"{r.seconds:.1f}"],
                     "finding" if r.needed else ""))
    space = report.bounds.space()
    notes = [f"Search: the scenario's search scope, {space['preemptions']} preemptions and "
             f"{space['model_events']} memory-model events, then {report.schedules} random "
             "schedules of the scenario as it runs" + (", with promises (a store may "
             "become visible before earlier accesses of its CPU)" if report.promises else
             ", without promises (a CPU's stores become visible in program order: a "
             "writer-side ordering cannot be shown needed)") + ". \"not shown needed\" "
             "holds for those bounds only; it never means redundant.",
             f"Baseline: {report.baseline}.",
             f"{len(report.not_executed)} more points are in code this configuration never "
             "executes: " + ", ".join(f"{p.name} ({p.what})" for p in report.not_executed)]
    if report.pairs:
        notes.append(f"{len(report.pairs)} pairs of points not shown needed alone were "
                     "weakened together within the same bounds; "
                     f"{sum(r.needed for r in report.pairs)} are needed together.")
    path = folder / "index.html"
    needed = sum(r.needed for r in report.rows)
    path.write_text(table_html(
        f"testbed ablate {report.scenario}", f"{needed} of {len(report.rows)} points needed"
        + (f", {sum(r.needed for r in report.pairs)} of {len(report.pairs)} pairs needed "
           "together" if report.pairs else "") + f", under --memory {report.memory}",
        ["point", "source", "line", "weakened to", "verdict", "bound or how found", "s"],
        rows, notes, command), encoding="utf-8")
    return path
