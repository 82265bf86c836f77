"""``testbed demo``: watch a race happen, CPU by CPU, from a real schedule.

Each demo names a scenario, the finding it shows (or none, for the fixed protocol) and
how to tell the story.  The schedule is never scripted: a seeded random search finds a
run with the finding, delta debugging shrinks it (``testbed.shrink``), and the
timeline is drawn from a strict replay of the shrunk schedule, which is saved so that
``testbed replay FILE --timeline`` shows the same run again.  The "why" under the
timeline is computed from that run's steps, not written in advance.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from . import layout
from .findings import EventKind, Finding, OracleName, finding_text
from .machine import MEMORY_MODELS
from .oracles import oracle_names
from .runs import replay_command, reproducer, run_schedules, write_reproducer
from .scenario import Session, default_strategy, load_scenario
from .schedule import Schedule
from .scheduler import RunResult
from .textpoke import TextPoke, records_of
from .timeline import (
    LEGEND,
    Disassembler,
    Kind,
    Row,
    Segment,
    Timeline,
    build,
    fit_width,
    site_name,
)

__all__ = ["DEMOS", "Demo", "DemoError", "add_parser", "cmd_demo", "step_through"]


class DemoError(Exception):
    """A demo that cannot be shown as asked (one line; the command line exits 2)."""

NCPUS = 2  # two columns: CPU0 patches, CPU1 runs through the sites


@dataclass
class Shown:
    """One demo's run, as the "why" functions see it."""

    demo: Demo
    session: Session
    result: RunResult
    records: list[TextPoke]
    timeline: Timeline
    emulations: list[tuple[int, int, int, int]] = field(default_factory=list)
    # (cpu, step of the BRK, address, instruction emulated)

    def sym(self, addr: int) -> str:
        return site_name(self.session.image, addr)

    def dis(self, word: int, addr: int) -> str:
        return Disassembler(self.session.image)(word, addr)

    def target(self) -> Finding | None:
        hits = [f for f in self.result.findings if f.oracle == self.demo.oracle]
        return hits[0] if hits else None

    def steps_at(self, cpu: int, func: str, insn: str) -> list[int]:
        """Steps whose visible operation on ``cpu`` was the instruction of ``func`` whose
        listing text starts with ``insn`` (e.g. the handler's load of the slot)."""
        image = self.session.image
        addrs = {line.addr for line in image.listing
                 if line.symbol.split("+", 1)[0] == func and line.text.startswith(insn)}
        out: list[int] = []
        last = -1
        for step, addr, _ in self.result.ground_truth()[cpu]:
            if step != last and addr in addrs:  # a step's first instruction is its
                out.append(step)  # visible operation
            last = step
        return out

    def events(self, kind: EventKind, cpu: int | None = None) -> list[tuple[int, int, str]]:
        return [(e.step, e.addr, e.detail) for e in self.result.events
                if e.kind is kind and (cpu is None or e.cpu == cpu)]


@dataclass(frozen=True)
class Demo:
    name: str
    scenario: str
    oracle: str | None  # the finding shown; None: a run with ``wanted`` and no finding
    summary: str
    story: str
    why: Callable[[Shown], list[str]]
    focus: frozenset[str] | None = None  # functions whose every step is worth a row
    seeds: int = 300  # how many seeds the search may try
    shrink_runs: int = 300
    decode_in_search: bool = True  # False: the decode oracle only on the final replay
    wanted: Callable[[RunResult, Session], bool] | None = None
    source: tuple[str, ...] = ()  # kernel functions the HTML lists even if not shown
    memory: str | None = None  # the data-memory model (None: the scenario's)


# ------------------------------------------------------------------------- the stories

def _first(steps: Iterable[int], after: int = -1, before: int | None = None) -> int | None:
    for s in steps:
        if s > after and (before is None or s < before):
            return s
    return None


def _why_nosync(s: Shown) -> list[str]:
    f = s.target()
    if f is None:
        return []
    site = f.addr
    stores = [st for st, addr, _ in s.events(EventKind.TEXT_STORE, 0) if addr == site]
    store = stores[0] if stores else None
    isb = _first((st for st, _, why in s.events(EventKind.CATCH_UP, 0) if why == "ISB"),
                 after=store if store is not None else -1)
    flag = _first(s.steps_at(0, "patcher_main", "stlr"))
    syncs = [st for st, _, why in s.events(EventKind.CATCH_UP, f.cpu)
             if why != "chosen" and st < f.step]
    fill = _first((st for st, addr, _ in s.events(EventKind.FILL, f.cpu) if addr == site),
                  after=store if store is not None else -1, before=f.step)
    old, new = (s.dis(w, site) for w in f.words[:2])
    parts = [f"CPU0 stored `{new}` at {s.sym(site)}"
             + (f" at step {store}" if store is not None else "")
             + ("; its flush (DC CVAU; DSB ISH; IC IVAU; DSB ISH; ISB) was complete at "
                f"step {isb}" if isb is not None else "")
             + (f"; it set patch_done at step {flag}." if flag is not None else "."),
             f"CPU{f.cpu} read patch_done=1 and still ran `{old}` at step {f.step}."]
    parts.append(
        f"IC IVAU invalidated the line in every I-cache, CPU{f.cpu}'s too"
        + (f" (which even refilled it with `{new}` at step {fill})" if fill is not None
           else "")
        + f", but a CPU executes from its I-view, and the I-view moves forward only at a "
        "catch-up: ISB, an exception entry and ERET force one, and CPU"
        f"{f.cpu} had " + (f"its last at step {syncs[-1]}." if syncs else
                          "none since it started."))
    parts.append("The architecture allows this: a CPU \"might have fetched the instructions "
                 "at any time since its last context synchronization event\". With an ISB "
                 "after reading the flag (scenario nosync_isb) it never happens; for jump "
                 "labels Linux v6.11 added kick_all_cpus_sync() after patching (commit "
                 "cfb00a357864).")
    return parts


def _why_pre_post(s: Shown) -> list[str]:
    f = s.target()
    if f is None:
        return []
    site, cpu = f.addr, f.cpu
    assumed, ran = (*f.words, -1, -1)[:2]
    recs = [r for r in s.records if r.addr == site]
    parts: list[str] = []
    if len(recs) >= 2:
        pre, post = recs[0].time, recs[1].time
        where = ("between PRE and POST" if pre < f.step < post else
                 "after POST" if f.step >= post else "before PRE")
        parts.append(f"The records say {s.sym(site)} changed, PRE at step {pre} and POST at "
                     f"step {post}; CPU{cpu} ran `{s.dis(ran, site)}` there at step "
                     f"{f.step}, {where}.")
    catch = [(st, why) for st, addr, why in s.events(EventKind.CATCH_UP, cpu)
             if addr == site and st <= f.step]
    if catch:
        st, why = catch[-1]
        how = ("a catch-up the scheduler chose: no ISB, no exception, no ERET, so "
               "nothing in its trace marks it" if why == "chosen" else
               f"a catch-up at its {why}")
        parts.append(f"CPU{cpu}'s I-view had taken that instruction at step {st}, by {how}.")
    exc = [st for st, _, _ in s.events(EventKind.EXCEPTION, cpu) if st <= f.step]
    parts.append(
        f"The decoder knows only the initial image, the records and CPU{cpu}'s trace. It "
        f"switches CPU{cpu} to a record's new bytes at CPU{cpu}'s first traced exception "
        "after the record, the first point where the CPU must fetch them"
        + (", and CPU" + str(cpu) + " took none" if not exc else "")
        + (f", so it decoded `{s.dis(assumed, site)}` there." if assumed >= 0 else "."))
    parts.append("A PRE/POST pair brackets the store, not the moment each other CPU starts "
                 "running the new instruction, and that moment leaves no trace. The BRK "
                 "protocol of the 2019 discussion (`testbed demo brk-slot-reuse`, "
                 "`testbed demo brk-fixed`) exists to make it visible.")
    return parts


def _why_brk_slot(s: Shown) -> list[str]:
    f = s.target()
    if f is None:
        return []
    site, cpu = f.addr, f.cpu
    emulated, wanted = (*f.words, -1, -1)[:2]
    # The BRK whose handler emulated the wrong word (the finding names the last BRK).
    brk = next((st for c, st, addr, insn in s.emulations
                if (c, addr, insn) == (cpu, site, emulated) and st >= 0), f.step)
    h_addr = _first(s.steps_at(cpu, "text_poke_single_handler", "ldr x10"), after=brk)
    h_insn = _first(s.steps_at(cpu, "text_poke_single_handler", "ldr w1"),
                    after=h_addr if h_addr is not None else brk)
    parts = [f"CPU{cpu} hit the BRK at {s.sym(site)} at step {brk}. Its handler, "
             "text_poke_single_handler, reads the one global slot with two loads: "
             "nosync_addr (it matched regs->pc)"
             + (f" at step {h_addr}" if h_addr is not None else "")
             + ", then nosync_insn" + (f" at step {h_insn}" if h_insn is not None else "")
             + "."]
    other = [a for a, word in _finals(s).items() if word == emulated and a != site]
    if h_addr is not None and h_insn is not None:
        def between(insn: str) -> int | None:
            return _first(s.steps_at(0, "text_poke_brk_single", insn), after=h_addr,
                          before=h_insn)
        clear, pub_addr, pub_insn = between("str xzr"), between("str x19"), between("str w20")
        done = [f"cleared the slot at step {clear}"] if clear is not None else []
        if pub_addr is not None and pub_insn is not None:
            nxt = s.sym(other[0]) if other else "the next site"
            done.append(f"published {nxt}'s {{nosync_addr, nosync_insn}} at steps "
                        f"{pub_addr} and {pub_insn}")
        if done:
            parts.append(f"In between, CPU0 finished {s.sym(site)}: it "
                         + ", then ".join(done) + ".")
    whose = (f"{s.sym(other[0])}'s instruction ({emulated:#010x}, which at {s.sym(site)} "
             f"reads `{s.dis(emulated, site)}`)" if other
             else f"`{s.dis(emulated, site)}`")
    parts.append(f"So the handler emulated {whose} instead of `{s.dis(wanted, site)}`: "
                 f"CPU{cpu} went on at the wrong place. x86 closed this with a descriptor per "
                 "patch and a refcount the patcher waits on (text_poke_bp_batch): `testbed "
                 "demo brk-fixed` runs the same workload with that protocol.")
    return parts


def _finals(s: Shown) -> dict[int, int]:
    """Each patched word's last stored value (its final instruction)."""
    out: dict[int, int] = {}
    for e in s.result.events:
        if e.kind is EventKind.TEXT_STORE and e.detail == "size 4":
            out[e.addr] = e.value & 0xFFFF_FFFF
    return out


def _why_brk_fixed(s: Shown) -> list[str]:
    finals = _finals(s)
    emu = s.emulations
    right = sum(1 for _, _, addr, insn in emu if finals.get(addr) == insn)
    ipis = len(s.events(EventKind.IPI_SEND))
    brks = [(st, addr) for st, addr, _ in s.events(EventKind.EXCEPTION, 1)
            if addr in finals]
    parts = [f"CPU1 hit a BRK {len(brks)} time{'s' if len(brks) != 1 else ''} (step"
             f"{'s' if len(brks) != 1 else ''} {', '.join(str(st) for st, _ in brks)}); "
             f"its handler emulated {len(emu)} instruction{'s' if len(emu) != 1 else ''}, "
             f"{right} of them the one being patched at that address (rows marked =).",
             "The handler, text_poke_sync_handler, reads a descriptor made for this patch "
             "and takes a reference on it; the patcher drops the descriptor and waits for "
             "the references to go before it moves on, so no handler can read the next "
             "site's instruction.",
             f"kick_all_cpus_sync() after writing the BRK and after writing the final "
             f"instruction sent {ipis} IPI{'s' if ipis != 1 else ''}: each is an exception "
             "entry on CPU1, a context synchronization event, so once static_key_enable() "
             "returns no CPU can still run an old site, and the decoder learns, from the "
             "timestamped exception after each record, when CPU1 switched."]
    if not s.result.findings:
        parts.append("Every oracle checked this run (BRK emulation, static-key coherence, "
                     "trace decode, and the machine's: CMODX, torn word, guest fault, "
                     "liveness) and none fired.")
    return parts


def _why_uaf(s: Shown) -> list[str]:
    f = s.target()
    if f is None:
        return []
    lit, site = s.session.machine.addr("traced_func_dyn_literal"), s.session.machine.addr(
        "ftrace_site_dyn")
    stores = {addr: st for st, addr, _ in reversed(s.events(EventKind.TEXT_STORE, 0))}
    read = [st for st in s.steps_at(f.cpu, "ftrace_caller", "ldur") if st < f.step]
    frees = s.steps_at(0, "kfree", "str")
    parts = [f"CPU{f.cpu} entered ftrace_caller through the callsite's BL and loaded the "
             "callsite's literal, the pointer to its ftrace_ops (dyn_ops)"
             + (f", at step {read[-1]}" if read else "") + "."]
    parts.append("CPU0 then unregistered those ops: ftrace_make_nop() pointed the literal at "
                 "ftrace_nop_ops" + (f" (step {stores[lit]})" if lit in stores else "")
                 + " and turned the BL back into a NOP"
                 + (f" (step {stores[site]})" if site in stores else "")
                 + ", and, with no grace period, kfree()d dyn_ops"
                 + (f" at step {frees[0]}" if frees else "")
                 + ", filling it with SLUB's poison.")
    parts.append(f"CPU{f.cpu} still held the old pointer: at step {f.step} it read "
                 "dyn_ops->func and got the poison, a use after free (with a real kfree the "
                 "memory could already hold another object, and the BLR would call it).")
    parts.append("Turning the callsite off does not stop a CPU that is already past it. "
                 "ftrace_shutdown() waits for a Tasks RCU grace period before dynamic ops may "
                 "be freed (scenario call_ops_free): every CPU must pass a voluntary context "
                 "switch, which none does inside ftrace_caller. Linux lacked the wait on one "
                 "path until commit 0e792b89e680 (v6.1, CVE-2022-49892).")
    return parts


def _brk_taken_and_emulated(result: RunResult, session: Session) -> bool:
    m = session.machine
    count = int.from_bytes(m.read(layout.percpu_base(1) + layout.PERCPU_EMUL_COUNT, 8),
                           "little")
    return count > 0 and not result.findings


_PATCHING = frozenset({"aarch64_insn_patch_text_nosync", "aarch64_insn_write",
                       "caches_clean_inval_pou"})

DEMOS: dict[str, Demo] = {d.name: d for d in (
    Demo("nosync-stale", "nosync_stale", OracleName.STALE_AFTER_FLUSH,
         "CPU1 runs the old instruction after CPU0's flush has completed",
         "CPU0 patches `nop` at patch_site into `b site_new` with "
         "aarch64_insn_patch_text_nosync (one store through the text alias, then DC CVAU; "
         "DSB ISH; IC IVAU; DSB ISH; ISB on CPU0 only) and sets patch_done. CPU1 loops "
         "through the site, reading patch_done first, with no ISB.",
         _why_nosync, seeds=200, shrink_runs=300,
         source=("aarch64_insn_patch_text_nosync",)),
    Demo("pre-post-ambiguity", "text_poke_pre_post", OracleName.TRACE_DECODE,
         "a decoder cannot tell what CPU1 ran between the PRE and POST records",
         "CPU0 enables a static key with three sites (jl_site_a/b/c: `nop` -> `b`), each "
         "patched with aarch64_insn_patch_text_nosync between a PRE and a POST "
         "PERF_RECORD_TEXT_POKE record, no IPI. CPU1 runs through the sites; a perf-style "
         "decoder rebuilds CPU1's path from the initial image, the records and CPU1's "
         "ETM-like trace, and is checked against what CPU1 really ran.",
         _why_pre_post, focus=_PATCHING | {"text_poke_pre_post", "static_key_enable"},
         seeds=300, shrink_runs=100,
         source=("text_poke_pre_post", "perf_text_poke_insn", "perf_event_text_poke")),
    Demo("brk-slot-reuse", "brk_single_slot", OracleName.BRK_EMULATION,
         "the BRK handler emulates the next site's instruction",
         "CPU0 enables a static key with three sites using the 2019 BRK sketch: per site, "
         "publish {nosync_addr, nosync_insn} in one global slot, write BRK, flush, emit "
         "the text-poke record, write the final `b`, flush, clear the slot; no IPI. "
         "CPU1 runs through the sites; a CPU that hits the BRK has its handler emulate "
         "the slot's instruction if regs->pc matches the slot's address.",
         _why_brk_slot, focus=_PATCHING | {"text_poke_brk_single",
                                           "text_poke_single_handler"},
         seeds=2000, shrink_runs=150, decode_in_search=False,
         source=("text_poke_brk_single", "text_poke_single_handler",
                 "aarch64_insn_patch_text_nosync")),
    Demo("brk-fixed", "brk_refcount_sync", None,
         "the same workload with a descriptor, a refcount and IPIs: correct",
         "As brk-slot-reuse, with the fixed protocol: a descriptor per patch with a "
         "refcount the handler takes and the patcher waits on (x86 text_poke_bp_batch), "
         "and kick_all_cpus_sync() after writing the BRK and after writing the final "
         "instruction. The search looks for a run in which CPU1 hits a BRK and its "
         "handler emulates.",
         _why_brk_fixed, focus=_PATCHING | {"text_poke_brk_sync", "text_poke_sync_handler",
                                            "kick_all_cpus_sync"},
         seeds=300, decode_in_search=False, wanted=_brk_taken_and_emulated,
         source=("text_poke_brk_sync", "text_poke_sync_handler", "kick_all_cpus_sync",
                 "aarch64_insn_patch_text_nosync")),
    Demo("call-ops-uaf", "call_ops_free_early", OracleName.USE_AFTER_FREE,
         "CPU1 calls through ftrace ops that CPU0 has already freed",
         "CPU0 unregisters dynamically allocated ftrace ops from a CALL_OPS callsite: "
         "ftrace_make_nop() (the callsite's literal back to ftrace_nop_ops, then BL -> NOP) "
         "and, without waiting for a grace period, kfree() of the ops, which fills them "
         "with SLUB's poison. CPU1 calls the traced function in a loop; ftrace_caller "
         "loads the ops pointer from the literal and then the ops' func.",
         _why_uaf, focus=frozenset({"ftrace_caller", "kfree", "ftrace_make_nop"}),
         seeds=300, shrink_runs=300,
         source=("ftrace_make_nop", "ftrace_modify_code", "ftrace_caller", "kfree")),
)}


# ------------------------------------------------------------------------ the pipeline

def _demo(name: str) -> Demo:
    demo = DEMOS.get(name) or DEMOS.get(name.replace("_", "-"))
    if demo is None:
        raise DemoError(f"unknown demo {name!r}; known: {', '.join(DEMOS)} "
                       "(`testbed demo` lists them)")
    return demo


def _session(demo: Demo, *, search: bool = False) -> Session:
    """A session for the demo.  For the search, the decode oracle is off when it is not
    the one sought (it costs most of a run); the final replay runs every oracle."""
    scenario = load_scenario(demo.scenario)()
    names = [n for n in oracle_names(scenario)
             if not (search and not demo.decode_in_search and n == OracleName.TRACE_DECODE)]
    session = Session(scenario, ncpus=NCPUS, oracles=names, memory=demo.memory)
    session.learning = False  # a demo's story must not depend on its search's history
    return session


@dataclass
class Found:
    schedule: Schedule
    seed: int
    tried: int
    shrunk_from: int  # decisions before shrinking (== after, if not shrunk)
    shrink_runs: int


def find(demo: Demo, seed0: int) -> Found:
    """A real schedule for ``demo``: the first seed from ``seed0`` whose random run shows
    the finding (or, for a demo without one, is wanted and finds nothing), shrunk."""
    from .shrink import shrink
    session = _session(demo, search=True)
    for run in run_schedules(session, default_strategy(type(session.scenario)),
                             range(seed0, seed0 + demo.seeds)):
        result, i = run.result, run.index
        if demo.oracle is None:
            if demo.wanted is None or demo.wanted(result, session):
                break
        elif any(f.oracle == demo.oracle for f in result.findings):
            break
    else:
        what = f"a {demo.oracle} finding" if demo.oracle else "a run to show"
        raise DemoError(f"no {what} in {demo.seeds} random schedules of {demo.scenario} "
                       f"from seed {seed0}; try another --seed")
    seed = seed0 + i
    schedule = result.schedule
    n = len(schedule.decisions)
    runs = 0
    if demo.oracle is not None:
        target = next(f for f in result.findings if f.oracle == demo.oracle)
        try:
            res = shrink(session, schedule, oracle=target.oracle, addr=target.addr,
                         max_runs=demo.shrink_runs)
        except ValueError as e:  # the found run did not replay: a bug, said plainly
            raise DemoError(f"shrinking the {demo.name} schedule failed: {e}") from None
        schedule, runs = res.shrunk, res.runs
    meta = {**dict(schedule.meta), "demo": demo.name, "found_by": f"random seed {seed}"}
    return Found(replace(schedule, seed=seed, meta=meta), seed, i + 1, n, runs)


def _emulations(session: Session, result: RunResult) -> list[tuple[int, int, int, int]]:
    """What each CPU's BRK handler emulated (its per-CPU log), matched in order to the
    BRKs it took at that address: (cpu, BRK step, address, instruction)."""
    m = session.machine
    out: list[tuple[int, int, int, int]] = []
    for cpu in range(m.ncpus):
        base = layout.percpu_base(cpu)
        count = min(int.from_bytes(m.read(base + layout.PERCPU_EMUL_COUNT, 8), "little"), 64)
        brks = [e for e in result.events if e.kind is EventKind.EXCEPTION and e.cpu == cpu
                and e.value >= 0]
        k = 0
        for i in range(count):
            entry = m.read(base + layout.PERCPU_EMUL_LOG + 16 * i, 16)
            addr = int.from_bytes(entry[:8], "little")
            insn = int.from_bytes(entry[8:], "little") & 0xFFFF_FFFF
            while k < len(brks) and brks[k].addr != addr:
                k += 1
            step = brks[k].step if k < len(brks) else -1
            k += 1
            out.append((cpu, step, addr, insn))
    return out


def _notes(shown: Shown) -> list[Row]:
    """A row per emulation, at the ERET that ends the handler."""
    finals = _finals(shown)
    erets = {cpu: [st for st, _, _ in shown.events(EventKind.ERET, cpu)]
             for cpu in range(NCPUS)}
    rows: list[Row] = []
    for cpu, step, addr, insn in shown.emulations:
        at = _first(erets.get(cpu, []), after=step)
        want = finals.get(addr)
        ok = want == insn
        other = [a for a, w in finals.items() if w == insn and a != addr]
        mark = "" if ok else ("WRONG: " + (f"the instruction for {shown.sym(other[0])}"
                                          if other else "not the one being patched"))
        rows.append(Row(at if at is not None else step, cpu, Kind.NOTE,
                        f"handler emulated {shown.dis(insn, addr)} at {shown.sym(addr)}",
                        mark=mark))
    return rows


def show(demo: Demo, found: Found) -> Shown:
    """Replay ``found`` strictly, with every oracle, and build its timeline."""
    from .explain import AccessProbe
    session = _session(demo)
    probe = AccessProbe()
    result = session.replay(found.schedule, wrap=probe)
    if demo.oracle is not None and not any(f.oracle == demo.oracle for f in result.findings):
        raise DemoError(f"the shrunk schedule of {demo.name} lost its {demo.oracle} finding "
                       "on replay: a bug in the testbed")
    records = records_of(session.machine)
    shown = Shown(demo, session, result, records, Timeline(NCPUS, ()))
    shown.emulations = _emulations(session, result)
    notes = _notes(shown)
    shown.timeline = build(result, session.image, NCPUS, focus=demo.focus,
                           records=records, notes=notes, accesses=probe.accesses)
    return shown


# ---------------------------------------------------------------------------- output

T = TypeVar("T")
QUIT_KEYS = frozenset({"q", "Q", "\x03", "\x04", "\x1b"})


def step_through(lines: Sequence[T], show_line: Callable[[T], None],
                 keys: Iterable[str]) -> int:
    """Show ``lines`` one per key press: ``c`` shows the rest at once, ``q`` (or Esc,
    Ctrl-C, Ctrl-D, or the keys running out) stops.  Returns how many were shown."""
    it = iter(keys)
    rest = False
    shown = 0
    for line in lines:
        if not rest:
            key = next(it, "q")
            if key in QUIT_KEYS:
                break
            rest = key in ("c", "C")
        show_line(line)
        shown += 1
    return shown


@contextmanager
def _keys(fd: int) -> Generator[Iterator[str], None, None]:
    """Single key presses from the terminal on ``fd``, no Enter needed (cbreak mode;
    keys typed before it are dropped), until the block ends."""
    import termios
    import tty
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read() -> Iterator[str]:
        while data := os.read(fd, 1):
            yield data.decode("latin-1")

    try:
        yield read()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _use_colour(mode: str, out: TextIO) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()


class _Printer:
    """Plain ``print`` off a terminal; rich styles on one (markers are in the text
    either way, so nothing depends on colour)."""

    def __init__(self, colour: bool, out: TextIO) -> None:
        self.out = out
        self.console = None
        if colour:
            from rich.console import Console
            self.console = Console(file=out, force_terminal=True, highlight=False,
                                   soft_wrap=True, emoji=False)

    def line(self, segs: Sequence[Segment]) -> None:
        if self.console is None:
            print("".join(t for t, _ in segs).rstrip(), file=self.out)
            return
        from rich.text import Text
        text = Text()
        for t, style in segs:
            text.append(t, style=style or None)
        text.rstrip()
        self.console.print(text)
        self.out.flush()

    def text(self, s: str = "", style: str = "") -> None:
        self.line([(s, style)])


def _wrap(text: str, width: int = 88, indent: str = "") -> list[str]:
    import textwrap
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent) or [""]


def _provenance(demo: Demo, found: Found, seed0: int) -> str:
    what = (f"the {demo.oracle} finding" if demo.oracle else "the run it wanted")
    spec = default_strategy(load_scenario(demo.scenario))
    how = (f"PCT, d={spec.depth}" if spec.name == "pct" else "RandomWalk")
    text = (f"The schedule is a real one, not a script: a seeded random search of "
            f"{demo.scenario} on {NCPUS} CPUs ({how}, seeds from {seed0}) found "
            f"{what} in its {_nth(found.tried)} run (seed {found.seed})")
    if demo.oracle is not None:
        text += (f"; delta debugging shrank it from {found.shrunk_from} to "
                 f"{len(found.schedule.decisions)} decisions in {found.shrink_runs} runs")
    else:
        text += f" ({found.shrunk_from} decisions; with no finding there is nothing to shrink)"
    return text + ". The timeline is its strict replay, with every oracle on."


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _legend_line() -> str:
    return "Legend: " + ", ".join(f"{m} {label}" for m, label, _ in LEGEND if m)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.name is None:
        print("demos (testbed demo NAME [--seed S] [--step] [--svg FILE] [--html FILE]):")
        for d in DEMOS.values():
            print(f"  {d.name:<20} {d.summary}")
        print("start with: testbed demo nosync-stale")
        return 0
    demo = _demo(args.name)
    if args.memory is not None:
        demo = replace(demo, memory=args.memory)
    if args.seed is not None and args.seed < 0:
        raise DemoError(f"--seed must be 0 or more, not {args.seed}")
    if args.width is not None and not 30 <= args.width <= 400:
        raise DemoError(f"--width must be between 30 and 400 characters, not {args.width}")
    if args.step and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise DemoError("--step waits for key presses, so it needs a terminal on stdin and "
                       "stdout; run it in a terminal, or drop --step to print the timeline")
    exports = [Path(p) for p in (args.svg, args.html) if p]
    for path in exports:
        if not path.parent.is_dir():
            raise DemoError(f"{path}: no such folder {path.parent}")
    seed0 = args.seed if args.seed is not None else 0
    found = find(demo, seed0)
    shown = show(demo, found)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise DemoError(f"--out {args.out}: is a file, not a folder")
    saved = write_reproducer(reproducer(replace(shown.result, schedule=found.schedule),
                                        shown.session), Path(args.out), f"demo-{found.seed}")
    replay = replay_command(saved, None, "replay", "--timeline")

    out = sys.stdout
    p = _Printer(_use_colour(args.color, out), out)
    p.text(f"testbed demo {demo.name}: {demo.summary}", "bold")
    p.text()
    for line in _wrap(demo.story):
        p.text(line)
    p.text()
    for line in _wrap(_provenance(demo, found, seed0)):
        p.text(line)
    p.text()
    width = args.width or fit_width(shown.timeline)
    lines = shown.timeline.lines(width)
    if args.step:
        for segs in lines[:2]:
            p.line(segs)
        with _keys(sys.stdin.fileno()) as keys:
            print("(Enter or space: next row; c: the rest; q: stop)", file=sys.stderr,
                  flush=True)
            step_through(lines[2:], p.line, keys)
    else:
        for segs in lines:
            p.line(segs)
    p.text()
    p.text(_legend_line(), "dim")
    p.text()
    if shown.result.findings:
        for f in shown.result.findings:
            style = "bold red" if f.oracle == demo.oracle else ""
            for i, line in enumerate(_wrap(finding_text(f), 88)):
                p.text(line if i == 0 else "    " + line, style)
    else:
        p.text("No finding: every oracle passed on this run.", "bold green")
    why = demo.why(shown)
    if why:
        p.text()
        for line in _wrap("Why: " + " ".join(why), 88):
            p.text(line)
    p.text()
    p.text(f"Replay it: {replay}", "bold")
    if exports:
        from .export import Page, write_html, write_svg
        page = Page(title=f"testbed demo {demo.name}", summary=demo.summary,
                    story=demo.story, provenance=_provenance(demo, found, seed0),
                    timeline=shown.timeline, image=shown.session.image,
                    findings=[finding_text(f) for f in shown.result.findings],
                    target=demo.oracle, why=why, replay=replay,
                    command=f"testbed demo {demo.name} --seed {seed0}",
                    functions=(*demo.source, *sorted(_PATCHING)))
        try:
            if args.svg:
                write_svg(page, Path(args.svg), width)
                p.text(f"wrote {args.svg}")
            if args.html:
                write_html(page, Path(args.html))
                p.text(f"wrote {args.html}")
        except OSError as e:
            raise DemoError(f"cannot write the export: {e}") from None
    return 0


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    sp = sub.add_parser("demo", help="watch a race happen, CPU by CPU (no NAME: list the "
                        "demos)")
    sp.add_argument("name", nargs="?", metavar="NAME", help="the demo (omit to list them)")
    sp.add_argument("--seed", type=int, help="the first seed the search tries (default 0)")
    sp.add_argument("--step", action="store_true",
                    help="advance one row per key press (terminal only)")
    sp.add_argument("--svg", metavar="FILE", help="also write the timeline as an SVG picture")
    sp.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page "
                    "(timeline, legend, kernel source)")
    sp.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                    help="colour on a terminal (default auto; NO_COLOR is honoured)")
    sp.add_argument("--width", type=int, help="characters per CPU column (default: as wide "
                    "as the rows with their values need, 60 to 100)")
    sp.add_argument("--out", default="testbed-findings", help="where the schedule goes")
    sp.add_argument("--memory", choices=MEMORY_MODELS, default=None,
                    help="the data-memory model: arm or sc (default: the scenario's)")
    sp.set_defaults(func=cmd_demo)
