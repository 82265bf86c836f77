"""A timing model over the events of a run: what the run would cost on a real arm64 server.

The machine counts instructions and scheduling steps; a round-robin schedule runs every
CPU at one visible operation a round, which says nothing about what an IPI or a
broadcast ``IC IVAU`` costs.  This module replays what a run actually did, read from its
ground-truth log, its machine events and its data accesses
(``testbed.explain.AccessProbe``), with a cost per operation taken from measurements of
real arm64 servers (``Params``; each default's source is in ``PARAMETER_SOURCES``).  It
gives each CPU a clock in nanoseconds.  Plain Python, no Unicorn: the rules are tested
one by one on hand-made activities (``tests/test_timing.py``).

Two steps.  ``extract`` turns a run into an ``Activity``: per CPU, in the order of the
run's global steps, the operations that cost more than an instruction (data accesses
with their 64-byte line, DSBs, cache and TLB maintenance, IPI sends and
acknowledgements, exception entries and returns), each with the number of plain
instructions before it.  ``replay`` then runs the clocks over an activity under one
``Params``; replaying is cheap, so a parameter sweep needs one emulated run.

The rules (each has a test):

1. *Instruction*: every executed instruction costs ``cpi / clock_ghz`` ns on its CPU,
   except the *waiting* ones (rule 7).
2. *Cache-line transfer*: a load from a 64-byte line that another CPU wrote since this
   CPU last held it, or a store, an atomic or a load-exclusive to a line that another
   CPU holds or wrote, waits for the line: the access completes ``line_ns`` after the
   later of the CPU's clock and the time of the line's last write.  So the writes of N
   CPUs to one counter serialise, N line transfers one after the other, and a load that
   sees another CPU's store happens after it.  A load-exclusive and the store-exclusive
   that completes it count as one atomic at the store-exclusive: one transfer a
   read-modify-write, as an LSE atomic (which the kernel uses on these servers) costs;
   a load-exclusive that no store-exclusive follows is a load.  Other accesses hit (a
   line nobody else wrote costs nothing: no cold misses).
3. *Maintenance*: ``DC`` by VA costs ``line_ns`` (a line cleaned to the point of
   unification), ``IC IVAU``/``IC IALLUIS``/``TLBI ...IS`` cost ``bcast_ns``, times
   N / ``bcast_scale_cpus`` when that is set (a broadcast to every CPU whose cost grows
   with N).  They queue one after the other (the interconnect takes them in turn) and
   complete at the CPU's next ``DSB``.
4. *DSB*: costs ``dsb_ns``, and ends no earlier than the CPU's queued maintenance.
5. *IPI*: the sender pays ``ipi_send_ns`` per target (one SGI register write per target
   CPU); each target takes the interrupt ``ipi_deliver_ns`` after its SGI was written,
   and each acknowledgement (the GIC acknowledge register read) costs ``ipi_ack_ns``
   (acknowledge, end of interrupt, exception return).
6. *Other CPUs*: only the ``timed`` CPUs (the patcher) are timed all along.  Another
   CPU's own code between exceptions is not timed (it is whatever that CPU was doing; it
   is always ready to take an interrupt); an exception entry sets its clock to the
   exception's cause: an IPI's delivery (rule 5), or for a synchronous exception (a
   ``BRK``) the time the faulting instruction's line was written plus ``line_ns``.  The
   time from the entry to its ``ERET`` is time *stalled*.
7. *Waiting*: an iteration of a polling loop that came round to the same ``YIELD``
   (``cpu_relax()``) or to the same load-exclusive with nothing stored costs nothing and
   accesses nothing: the CPU was waiting, and the iteration that ends the wait pays for
   the line it waits on (rule 2).  A store-exclusive whose loop comes round again failed
   (its ``CBNZ`` branched back); one the CPU gets past stored.  Without this rule the
   spin count of a round-robin schedule would be the time.

What it leaves out: the memory model (the run is replayed in its step order, which is
the order of a sequentially consistent data side), instruction fetch and I-cache
misses, cache capacity, NUMA distance (one ``line_ns`` for every pair of CPUs), and the
work the other CPUs lose outside their exceptions.
"""

from __future__ import annotations

import array
import enum
import heapq
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from operator import itemgetter
from typing import Protocol

from . import layout
from .access import AccessKind
from .findings import Event, EventKind
from .isa import ERET, OpKind, classify

__all__ = ["LINE", "PARAMETER_SOURCES", "Activity", "Item", "Params", "Timing", "extract",
           "replay"]

LINE = 64  # bytes: the coherence granule (CTR_EL0.CWG of Neoverse N1 and the testbed's)
MAX_LOOP = 64  # instructions: a polling-loop iteration longer than this is not waiting


@dataclass(frozen=True)
class Params:
    """Costs of the operations the model charges (ns, except ``cpi`` and ``clock_ghz``).

    Defaults: a Neoverse N1 server (AWS Graviton2); ``PARAMETER_SOURCES`` says where each
    comes from, and which have no published figure."""

    clock_ghz: float = 2.5
    cpi: float = 1.0
    line_ns: float = 47.0
    dsb_ns: float = 30.0
    bcast_ns: float = 350.0
    bcast_scale_cpus: int = 0  # 0: a broadcast costs bcast_ns on any N
    ipi_send_ns: float = 50.0
    ipi_deliver_ns: float = 1000.0
    ipi_ack_ns: float = 200.0

    @property
    def insn_ns(self) -> float:
        return self.cpi / self.clock_ghz

    def bcast(self, ncpus: int) -> float:
        """What one broadcast maintenance operation costs on ``ncpus`` CPUs."""
        if self.bcast_scale_cpus <= 0:
            return self.bcast_ns
        return self.bcast_ns * ncpus / self.bcast_scale_cpus

    def scaled(self, name: str, factor: float) -> Params:
        """These parameters with ``name`` multiplied by ``factor`` (for ``clock_ghz``,
        divided: an instruction then costs ``factor`` times as much)."""
        value = getattr(self, name)
        return replace(self, **{name: value / factor if name == "clock_ghz" else value * factor})

    def shown(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Where each default comes from.  Searched (2026-12): papers, kernel mailing lists and
# commits, vendor and review sites, for Graviton 2/3, Ampere Altra, ThunderX2, Kunpeng
# 920; "no published figure" means that search found none.
PARAMETER_SOURCES: tuple[tuple[str, str], ...] = (
    ("clock_ghz", "2.5 GHz: AWS Graviton2, 64 Neoverse N1 cores 'clocked in at a bit lower "
     "2.5GHz' (A. Frumusanu, 'A Peek Into Graviton2: Amazon's Neoverse N1 Server Chip First "
     "Impressions', AnandTech, March 2020; WikiChip 'AWS Graviton2': 2,500 MHz)"),
    ("cpi", "1.0: no published figure for this code; an assumption (N1 decodes 4 "
     "instructions a cycle; kernel code with loads and branches runs near 1)"),
    ("line_ns", "47 ns: median core-to-core latency of a cache line bounced with "
     "compare-and-swap, AWS Graviton2 64 cores (Graviton3: 46 ns; Kunpeng 920-6426: 72 "
     "ns), one way (round trip / 2) (N. Viennot, 'core-to-core-latency', "
     "github.com/nviennot/core-to-core-latency, README and src/bench/cas.rs, 2022-2023)"),
    ("dsb_ns", "30 ns: no published figure for a DSB with nothing outstanding; an "
     "assumption (a store-buffer drain, tens of cycles)"),
    ("bcast_ns", "350 ns: eliding the TLB flush of mprotect() (flush_tlb_range(): "
     "broadcast TLBIs over the range, its size not stated, and the DSB ISH that completes "
     "them) took the none->rw transition from 3.2 us to 2.85 us on an arm64 machine the "
     "message does not name (D. Jain, '[PATCH v2] arm64/mm: Elide TLB flush in certain pte "
     "protection transitions', linux-arm-kernel, September 2025; Linux commit "
     "c320dbb7c80d); IC IVAU is assumed to cost the same (no published figure).  How it "
     "grows with N: 'the latency of the tlbi broadcast instruction increases almost "
     "linearly with the number of CPUs trying to send tlbi broadcasts at the same time' "
     "(A. Arcangeli, 'arm64: tlb: skip tlbi broadcast', an RFC of 2020, commit 78e8089e340e "
     "of his aa.git tree, measured on a 32-CPU Ampere): one CPU broadcasts here, so flat "
     "by default (bcast_scale_cpus = 0); the sweep tries linear in N"),
    ("bcast_scale_cpus", "0 (flat): see bcast_ns"),
    ("ipi_send_ns", "50 ns per target: no published figure for an ICC_SGI1R_EL1 write; an "
     "assumption.  One write per target, not per 16: the MPIDRs of Ampere Altra Max and "
     "NVIDIA Grace give every CPU its own Aff1, so GICv3's 16-CPU target lists never "
     "batch (r1mikey, 'gicthree: provide rationale for lack of SGI batching', "
     "richlowe/illumos-gate pull request 276, 2026)"),
    ("ipi_deliver_ns", "1000 ns: no published native figure for an arm64 server found; "
     "an assumption, bounded by 'perf bench sched pipe -l 2500000' on c6g.metal "
     "(Graviton2): 17.6 s, 7.0 us a round trip with two cross-CPU wake-ups, each an IPI "
     "plus the scheduler's work (H. Okanovic, 'arm64: cpuidle: Add arm_poll_idle', LKML, "
     "April 2024)"),
    ("ipi_ack_ns", "200 ns: no published figure; an assumption (ICC_IAR1_EL1 read, "
     "ICC_EOIR1_EL1 write, exception return)"),
)


class Op(enum.IntEnum):
    """What an ``Item`` of an activity is."""

    END = 0  # the CPU's last instructions (arg unused)
    MARK = 1  # a mark requested by the caller (arg: its instruction index)
    LOAD = 2  # arg: the line
    STORE = 3  # a store, an atomic, a successful store-exclusive (arg: the line)
    DSB = 4
    DC = 5  # DC by VA: a line to the point of unification
    BCAST = 6  # IC IVAU, IC IALLUIS, TLBI ...IS/OS: a broadcast to every CPU
    SEND = 7  # arg: index into Activity.targets
    ACK = 8  # the GIC acknowledge read of a pending IPI
    IRQ = 9  # an interrupt taken (the entry; plain counts the code before it)
    TRAP = 10  # a synchronous exception taken (arg: the line of the faulting instruction)
    ERET = 11
    LOADX = 12  # a load-exclusive (arg: the line): with its store-exclusive, one atomic


Item = tuple[int, int, int, int]  # (cpu, Op, arg, plain instructions before it, its own included)


@dataclass
class Activity:
    """A run as the timing model sees it (``extract``): items in the run's step order."""

    ncpus: int
    cpu: array.array[int] = field(default_factory=lambda: array.array("H"))
    op: array.array[int] = field(default_factory=lambda: array.array("B"))
    arg: array.array[int] = field(default_factory=lambda: array.array("q"))
    plain: array.array[int] = field(default_factory=lambda: array.array("L"))
    targets: list[tuple[int, ...]] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # per CPU: instructions not charged

    def add(self, cpu: int, op: Op, arg: int = 0, plain: int = 0) -> None:
        self.cpu.append(cpu)
        self.op.append(op)
        self.arg.append(arg)
        self.plain.append(plain)

    def send(self, cpu: int, targets: Sequence[int], plain: int = 0) -> None:
        self.targets.append(tuple(targets))
        self.add(cpu, Op.SEND, len(self.targets) - 1, plain)

    def __len__(self) -> int:
        return len(self.op)

    def items(self) -> Iterator[Item]:
        return zip(self.cpu, self.op, self.arg, self.plain, strict=True)


class AccessRecord(Protocol):
    """What the model reads of an access (``testbed.timeline.Access`` has it).  Not its
    ``ok``: a store-exclusive that failed while memory held the value it meant to store
    reads back as stored, so rule 7 tells from the control flow instead."""

    @property
    def step(self) -> int: ...
    @property
    def cpu(self) -> int: ...
    @property
    def pc(self) -> int: ...
    @property
    def addr(self) -> int: ...
    @property
    def kind(self) -> AccessKind: ...


# -- extract ---------------------------------------------------------------------------

_DSB_MASK, _DSB = 0xFFFFF0FF, 0xD503309F
_SYS_MASK, _SYS = 0xFFF80000, 0xD5080000
_YIELDS = (OpKind.YIELD, OpKind.WFE)
_PLAIN, _YIELD, _DSB_K, _DC, _BCAST, _ERET_K, _MEM, _LDX, _STX = range(9)


def _word_kind(word: int) -> int:
    """The few kinds of instruction the extraction tells apart."""
    if word & _DSB_MASK == _DSB:
        return _DSB_K
    if word == ERET:
        return _ERET_K
    if word & _SYS_MASK == _SYS and (word >> 12) & 15 == 8:  # TLBI
        return _BCAST if (word >> 8) & 15 in (1, 3) else _PLAIN  # the ...OS, ...IS forms
    info = classify(word)
    if info.kind in _YIELDS:
        return _YIELD
    if info.kind is OpKind.DC:
        return _DC
    if info.kind is OpKind.IC:
        return _BCAST if info.op in ("ivau", "ialluis") else _PLAIN
    if info.kind is OpKind.MEMORY:
        mem = info.mem
        if mem is not None and mem.exclusive:
            return _LDX if mem.kind.value == "load" else _STX
        return _MEM
    return _PLAIN


def _line(addr: int) -> int:
    """The line of a data address; the text alias is the text (a patched instruction's
    line is the line its fetch reads)."""
    if layout.TEXT_ALIAS <= addr < layout.TEXT_ALIAS + layout.TEXT_MAX:
        addr += layout.TEXT_BASE - layout.TEXT_ALIAS
    return addr // LINE


def _gic(addr: int) -> bool:
    return layout.GIC_BASE <= addr < layout.GIC_BASE + layout.PAGE


class _Stream:
    """One CPU's items as they are found, with its polling-loop iterations left out."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.out: list[tuple[int, int, int, object, int]] = []  # (step, cpu, op, arg, plain)
        self.plain = 0  # instructions since the last item
        self.head: tuple[int, int] | None = None  # (kind, pc) of the loop head
        self.pre = 0  # instructions before the head not yet in an item
        self.buf: list[tuple[int, int, int, object, int]] = []  # items since the head
        self.buf_plain = 0  # instructions since the head
        self.stx = -1  # the pc of a store-exclusive whose outcome is not known yet
        self.waiting = 0

    def insn(self, pc: int) -> None:
        self.plain += 1
        self.buf_plain += 1
        past = self.stx >= 0 and pc > self.stx + 4  # past its CBNZ: it stored
        if past or (self.head is not None and self.buf_plain > MAX_LOOP):
            self.commit()

    def item(self, step: int, op: Op, arg: object = 0, *, tentative: int = -1) -> None:
        """An item; loads, and a store-exclusive (``tentative``: its pc), stay in the
        buffer, which a waiting iteration drops."""
        self.buf.append((step, self.cpu, op, arg, self.plain))
        self.plain = 0
        if tentative >= 0:
            self.stx = tentative
        elif op is not Op.LOAD and op is not Op.LOADX:
            self.commit()

    def commit(self) -> None:
        """What is buffered happened: not a waiting iteration."""
        self.out.extend(self.buf)
        self.buf = []
        self.head = None
        self.stx = -1

    def loop_head(self, kind: int, pc: int) -> None:
        """A ``YIELD`` (after it) or a load-exclusive (at it, just counted) at ``pc``: if
        the CPU came round to the same one with nothing committed, the iteration since
        the last one was waiting."""
        own = 1 if kind == _LDX else 0
        if self.head == (kind, pc):
            self.waiting += self.buf_plain - own
            self.buf = []
            self.stx = -1  # it failed: the loop came round
            self.plain = self.pre + own
        else:
            self.commit()
            self.head = (kind, pc)
            self.pre = self.plain - own
        self.buf_plain = own


def extract(initial: bytes, logs: Sequence[Sequence[tuple[int, int, int]]],
            events: Sequence[Event], accesses: Sequence[AccessRecord], *,
            marks: Mapping[int, Collection[int]] | None = None,
            text_base: int = layout.TEXT_BASE) -> Activity:
    """The activity of one run from its raw ground-truth logs (``RunResult.logs``), its
    events and its accesses (``AccessProbe.accesses`` of the same run).  ``marks``: per
    CPU, instruction indices (in the CPU's ground truth) at which ``replay`` records the
    clock, as it is before that instruction runs."""
    ncpus = len(logs)
    want = {c: set(v) for c, v in (marks or {}).items()}
    by_step: dict[tuple[int, int], AccessRecord] = {(a.cpu, a.step): a for a in accesses}
    sends: dict[tuple[int, int], tuple[int, ...]] = {}
    acks: set[tuple[int, int]] = set()
    # per CPU: the exceptions it took, (step, vector, an IRQ?, ELR)
    entries: dict[int, list[tuple[int, int, bool, int]]] = {}
    irqs = {(e.cpu, e.step) for e in events if e.kind is EventKind.IRQ}
    for e in events:
        if e.kind is EventKind.IPI_SEND:
            sends[(e.cpu, e.step)] = tuple(int(t[3:]) for t in e.detail[3:].split(","))
        elif e.kind is EventKind.IPI_ACK:
            acks.add((e.cpu, e.step))
        elif e.kind is EventKind.EXCEPTION:
            vector = int(e.detail.rsplit("vector ", 1)[1], 16)
            irq = (e.cpu, e.step) in irqs
            entries.setdefault(e.cpu, []).append((e.step, vector, irq, e.addr))
    words = array.array("I", initial)
    streams = []
    for cpu, log in enumerate(logs):
        s = _Stream(cpu)
        view = words.tolist()
        kinds = [-1] * len(view)  # a word's kind, found on first use
        pending = entries.get(cpu, [])[::-1]  # exception entries not yet reached
        marked = want.get(cpu, set())
        index = 0
        for step, start, end in log:
            if start < 0:  # the I-view changed at a catch-up
                view[~start >> 2] = end
                kinds[~start >> 2] = -1
                continue
            w = (start - text_base) >> 2
            for pc in range(start, end, 4):
                if index in marked:
                    s.item(step, Op.MARK, index)
                if pending and pending[-1][0] <= step and pending[-1][1] == pc:
                    _, _, irq, elr = pending.pop()
                    if irq:
                        s.item(step, Op.IRQ)
                    else:
                        s.item(step, Op.TRAP, _line(elr))
                k = kinds[w]
                if k < 0:
                    k = kinds[w] = _word_kind(view[w])
                w += 1
                index += 1
                s.insn(pc)
                if k == _PLAIN:
                    continue
                if k == _YIELD:
                    s.loop_head(_YIELD, pc)
                elif k == _DSB_K:
                    s.item(step, Op.DSB)
                elif k == _DC:
                    s.item(step, Op.DC)
                elif k == _BCAST:
                    s.item(step, Op.BCAST)
                elif k == _ERET_K:
                    s.item(step, Op.ERET)
                else:
                    if k == _LDX:
                        s.loop_head(_LDX, pc)
                    a = by_step.get((cpu, step))
                    if a is None or a.pc != pc:
                        continue  # not a visible access (the CPU's own per-CPU data...)
                    if _gic(a.addr):
                        if (cpu, step) in sends:
                            s.item(step, Op.SEND, sends[(cpu, step)])
                        elif (cpu, step) in acks:
                            s.item(step, Op.ACK)
                        continue
                    if a.kind is AccessKind.LOAD:
                        s.item(step, Op.LOADX if k == _LDX else Op.LOAD, _line(a.addr))
                    else:
                        s.item(step, Op.STORE, _line(a.addr), tentative=pc if k == _STX else -1)
        s.commit()
        s.item(log[-1][0] if log else 0, Op.END)
        streams.append(s)
    act = Activity(ncpus)
    for _, cpu, op, arg, plain in heapq.merge(*(s.out for s in streams),
                                                 key=itemgetter(0, 1)):
        if isinstance(arg, tuple):
            act.send(cpu, arg, plain)
        else:
            assert isinstance(arg, int)
            act.add(cpu, Op(op), arg, plain)
    act.waiting = [s.waiting for s in streams]
    return act


# -- replay ----------------------------------------------------------------------------

COUNTS = ("instructions", "transfers", "dsb", "dc", "bcast", "ipi_targets", "acks",
          "irqs", "traps")


@dataclass(frozen=True)
class Timing:
    """The clocks of one replay.  ``end_ns``: each CPU's clock at its end; ``marks``:
    (cpu, instruction index) -> (ns, the CPU's counts so far); ``stalled_ns`` and
    ``exceptions``: per CPU, the time from each exception entry to its ``ERET``, and how
    many (untimed CPUs); ``counts``: per CPU, what it was charged (rule by rule;
    untimed CPUs only inside exceptions)."""

    params: Params
    end_ns: tuple[float, ...]
    marks: dict[tuple[int, int], tuple[float, dict[str, int]]]
    stalled_ns: tuple[float, ...]
    exceptions: tuple[int, ...]
    counts: tuple[dict[str, int], ...]

    def between(self, cpu: int, start: int, end: int) -> tuple[float, dict[str, int]]:
        """The time and the counts of ``cpu`` between two of its marks."""
        t0, c0 = self.marks[(cpu, start)]
        t1, c1 = self.marks[(cpu, end)]
        return t1 - t0, {k: c1[k] - c0[k] for k in COUNTS}

    def stalled(self, cpus: Collection[int]) -> tuple[float, dict[str, int]]:
        """Total stalled time and counts of ``cpus``."""
        total = {k: sum(self.counts[c][k] for c in cpus) for k in COUNTS}
        return sum(self.stalled_ns[c] for c in cpus), total


class _Line:
    """A 64-byte line: who wrote it last and when, and which CPUs hold a copy."""

    __slots__ = ("holders", "time", "writer")

    def __init__(self) -> None:
        self.writer = -1  # nobody: the line as the image left it
        self.time = 0.0
        self.holders: set[int] = set()


def replay(act: Activity, params: Params, timed: Collection[int] = (0,)) -> Timing:
    """Run the clocks of ``act`` under ``params`` (the rules are in the module doc)."""
    n = act.ncpus
    insn, line_ns, dsb_ns = params.insn_ns, params.line_ns, params.dsb_ns
    bcast_ns = params.bcast(n)
    send_ns, deliver_ns, ack_ns = params.ipi_send_ns, params.ipi_deliver_ns, params.ipi_ack_ns
    clock = [0.0] * n
    busy = [c in timed for c in range(n)]
    always = list(busy)
    depth = [0] * n
    entry = [0.0] * n
    last_end = [0.0] * n
    stalled = [0.0] * n
    exceptions = [0] * n
    queue = [0.0] * n  # when the CPU's queued maintenance completes
    queued = [False] * n
    pending: list[list[float]] = [[] for _ in range(n)]  # per CPU: IPI write times, a heap
    lines: dict[int, _Line] = {}
    ldx = [-1] * n  # per CPU: the line of a load-exclusive waiting for its store

    def access(cpu: int, line: int, store: bool, b: bool, cnt: dict[str, int]) -> None:
        ln = lines.get(line)
        if ln is None:
            ln = lines[line] = _Line()
        if store:
            miss = bool(ln.holders - {cpu}) or ln.writer not in (-1, cpu)
        else:
            miss = cpu not in ln.holders and ln.writer not in (-1, cpu)
            ln.holders.add(cpu)
        if b and miss:
            clock[cpu] = max(clock[cpu], ln.time) + line_ns
            cnt["transfers"] += 1
        if store:
            ln.writer = cpu
            ln.time = clock[cpu] if b else last_end[cpu]
            ln.holders = {cpu}

    counts = [dict.fromkeys(COUNTS, 0) for _ in range(n)]
    marks: dict[tuple[int, int], tuple[float, dict[str, int]]] = {}
    targets = act.targets
    for cpu, op, arg, plain in act.items():
        b = busy[cpu]
        cnt = counts[cpu]
        if ldx[cpu] >= 0 and not (op == Op.STORE and arg == ldx[cpu]):
            access(cpu, ldx[cpu], False, b, cnt)  # no store-exclusive: it was a load
        ldx[cpu] = -1
        if b:
            clock[cpu] += plain * insn
            cnt["instructions"] += plain
        if op == Op.LOADX:
            ldx[cpu] = arg
        elif op == Op.LOAD or op == Op.STORE:
            access(cpu, arg, op == Op.STORE, b, cnt)
        elif op == Op.DSB:
            if b:
                cnt["dsb"] += 1
                clock[cpu] += dsb_ns
                if queued[cpu]:
                    clock[cpu] = max(clock[cpu], queue[cpu])
            queued[cpu] = False
        elif op == Op.DC or op == Op.BCAST:
            if b:
                cost = line_ns if op == Op.DC else bcast_ns
                cnt["dc" if op == Op.DC else "bcast"] += 1
                queue[cpu] = max(queue[cpu] if queued[cpu] else 0.0, clock[cpu]) + cost
                queued[cpu] = True
        elif op == Op.SEND:
            t = clock[cpu] if b else last_end[cpu]
            for target in targets[arg]:
                t += send_ns if b else 0.0
                heapq.heappush(pending[target], t)
            if b:
                cnt["ipi_targets"] += len(targets[arg])
                clock[cpu] = t
        elif op == Op.ACK:
            if pending[cpu]:
                sent = heapq.heappop(pending[cpu])
                if b:
                    clock[cpu] = max(clock[cpu], sent + deliver_ns)
            if b:
                clock[cpu] += ack_ns
                cnt["acks"] += 1
        elif op == Op.IRQ or op == Op.TRAP:
            if op == Op.IRQ:
                cause = pending[cpu][0] + deliver_ns if pending[cpu] else 0.0
            else:
                ln = lines.get(arg)
                cause = 0.0
                if ln is not None:
                    if ln.writer not in (-1, cpu):
                        cause = ln.time + line_ns
                    ln.holders.add(cpu)
            if depth[cpu] == 0 and not always[cpu]:
                busy[cpu] = True
                clock[cpu] = max(last_end[cpu], cause)
                entry[cpu] = clock[cpu]
                exceptions[cpu] += 1
            else:
                clock[cpu] = max(clock[cpu], cause)
            depth[cpu] += 1
            counts[cpu]["irqs" if op == Op.IRQ else "traps"] += 1
        elif op == Op.ERET:
            depth[cpu] = max(depth[cpu] - 1, 0)
            if depth[cpu] == 0 and not always[cpu]:
                busy[cpu] = False
                stalled[cpu] += clock[cpu] - entry[cpu]
                last_end[cpu] = clock[cpu]
        elif op == Op.MARK:
            marks[(cpu, arg)] = (clock[cpu], dict(cnt))
    return Timing(params, tuple(clock), marks, tuple(stalled), tuple(exceptions),
                  tuple(counts))
