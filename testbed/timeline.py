"""A timeline of a run: one column per CPU, one row per visible step.

Rows come from the run's record, nothing else: the ground-truth trace (the visible
operation each step performed, disassembled, with its symbol), the machine's events
(text stores, DC/IC, catch-ups, fills, evictions, write-backs, exceptions, IPIs), and
the oracles' findings at the step they name.  A caller may add text-poke records read
from the guest's ring buffer and notes of its own (e.g. what a BRK handler emulated),
and the data accesses an access probe recorded (``testbed.explain.AccessProbe``): a
memory row then says what it loaded or stored and which data symbol it touched
(``ldar w9, [x7]  site_loop+0xc  <- 0x1 from patch_done``).

Executions of watched addresses (by default: every word the run stored to) are marked
with what ran there: ``OLD`` (the initial instruction), ``NEW`` (the final one) or the
instruction in between (``BRK``), and ``stale`` when memory already held something
else.  Every kind of row starts with a marker, so the timeline reads without colour.

Rows that carry the story are anchors; the others (a loop's instructions run again
with nothing new on that CPU since, functions outside the caller's focus, model choices
on unwatched words, a site running what it ran before) fold into one line
``... N steps ...`` when they span three steps or more.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from . import layout
from .access import AccessKind
from .asm import Image
from .findings import Event, EventKind
from .isa import OpKind, classify
from .machine import EC_BRK64, EC_SVC64, EC_UNKNOWN
from .scheduler import RunResult
from .textpoke import TextPoke

__all__ = [
    "ACCESS_WIDTH",
    "LEGEND",
    "Access",
    "AccessKind",
    "Disassembler",
    "Fold",
    "Item",
    "Kind",
    "Row",
    "Segment",
    "Timeline",
    "access_text",
    "build",
    "data_name",
    "fit_width",
    "render",
    "rows",
    "site_name",
]


class Kind(enum.Enum):
    """What a row shows.  ``marker`` starts its cell; ``style`` colours it on a terminal
    (and names its CSS class in the exports)."""

    INSN = ("  ", "", "instruction", "a visible operation (load, store, barrier, cache "
            "maintenance), disassembled, with its symbol")
    SITE = ("@ ", "bold", "patched site ran", "a patched address executed: OLD (the "
            "initial instruction), NEW (the final one) or what was in between (BRK); "
            "stale: memory already held another instruction")
    STORE = (">>", "bold yellow", "text store", "a store to kernel text: the patch itself")
    MODEL = ("~ ", "cyan", "fetch model", "the instruction-fetch model: DC/IC (IC is "
             "broadcast), I-view catch-up, fill, eviction, write-back")
    EXCEPTION = ("* ", "magenta", "exception", "an exception taken (BRK, IRQ) or ERET: "
                 "a context synchronization event")
    IPI = ("->", "blue", "IPI", "an IPI sent (->) or acknowledged (<-)")
    RECORD = ("# ", "green", "text-poke record", "a PERF_RECORD_TEXT_POKE record written "
              "(its time is this step)")
    NOTE = ("= ", "bold", "guest log", "what the guest logged, read back after the run "
            "(e.g. what a BRK handler emulated)")
    HALT = ("--", "dim", "CPU off", "the CPU switched itself off")
    FINDING = ("!!", "bold white on red", "finding", "an oracle's finding, at the step it "
               "names")

    def __init__(self, marker: str, style: str, label: str, meaning: str) -> None:
        self.marker = marker
        self.style = style
        self.label = label
        self.meaning = meaning


FOLD_MARKER = "..."
# (marker, short label, meaning), for legends
LEGEND: tuple[tuple[str, str, str], ...] = (
    *((k.marker.strip(), k.label, k.meaning) for k in Kind),
    (FOLD_MARKER, "folded", "steps where nothing relevant happens"),
)


@dataclass(frozen=True)
class Row:
    step: int
    cpu: int  # -1: a memory-model choice not tied to a CPU (a write-back)
    kind: Kind
    text: str  # the instruction or the event, without marker
    symbol: str = ""  # where the instruction is, "func+0x14"
    mark: str = ""  # "OLD", "NEW, stale", "FINDING": shown as "<== mark"
    addr: int = -1  # the instruction's address (INSN, SITE)
    anchor: bool = True  # False: may be folded away
    stale: bool = False  # SITE: memory already held another word
    marker: str = ""  # overrides the kind's marker (IPI: "<-")
    access: str = ""  # INSN/SITE: what the data access did, "<- 0x1 from patch_done"

    @property
    def prefix(self) -> str:
        return self.marker or self.kind.marker

    def cell(self) -> str:
        """The cell's text, marker first."""
        body = f"{self.text:<24} {self.symbol}" if self.symbol else self.text
        if self.access:
            body = f"{body}  {self.access}"
        if self.mark:
            body = f"{body}  <== {self.mark}"
        return f"{self.prefix} {body}".rstrip()

    @property
    def function(self) -> str:
        return self.symbol.split("+", 1)[0]


@dataclass(frozen=True)
class Fold:
    """Consecutive non-anchor rows, shown as one line."""

    first: int  # step
    last: int
    steps: int
    per_cpu: tuple[tuple[int, int, tuple[str, ...]], ...]  # (cpu, steps, functions)

    def text(self) -> str:
        parts = [f"CPU{cpu}: {n} in {', '.join(funcs)}" if funcs else f"CPU{cpu}: {n}"
                 for cpu, n, funcs in self.per_cpu]
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f"{FOLD_MARKER} {self.steps} step{'s' if self.steps != 1 else ''}{detail} ..."


Item = Row | Fold
Segment = tuple[str, str]  # (text, rich style)


@dataclass(frozen=True)
class Timeline:
    ncpus: int
    items: tuple[Item, ...]

    def lines(self, width: int = 60) -> list[list[Segment]]:
        """The timeline as styled lines: a header, a rule, then one line per item."""
        head = "step  " + "".join(f"{'CPU' + str(c):<{width}}" for c in range(self.ncpus))
        out: list[list[Segment]] = [[(head.rstrip(), "bold")],
                                    [("-" * (6 + width * self.ncpus), "")]]
        for item in self.items:
            if isinstance(item, Fold):
                out.append([(f"      {item.text()}", "dim")])
                continue
            col = min(max(item.cpu, 0), self.ncpus - 1)
            text = item.cell() if item.cpu >= 0 else f"{item.prefix} [memory] {item.text}"
            if col < self.ncpus - 1:
                text = text[:width - 1] if len(text) >= width else text
            style = _style(item)
            segs: list[Segment] = [(f"{item.step:>4}  ", "dim")]
            if col:
                segs.append((" " * (width * col), ""))
            segs.append((text, style))
            out.append(segs)
        return out

    def text(self, width: int = 60) -> str:
        return "\n".join("".join(t for t, _ in line).rstrip() for line in self.lines(width))

    def rows(self) -> list[Row]:
        return [i for i in self.items if isinstance(i, Row)]


def _style(row: Row) -> str:
    if row.kind is Kind.SITE and row.stale:
        return "bold red"
    return row.kind.style


# --------------------------------------------------------------------------- building

_BRANCHES = frozenset({"b", "bl", "cbz", "cbnz", "tbz", "tbnz"})
_LITERAL = re.compile(r"([xw]\d+), #0x([0-9a-f]+)")  # ldr Rt, <literal>


class Disassembler:
    """Capstone, with branch targets named after the image's symbols."""

    def __init__(self, image: Image) -> None:
        self.cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        self.image = image

    def __call__(self, word: int, addr: int) -> str:
        for insn in self.cs.disasm(word.to_bytes(4, "little"), addr, 1):
            mnem, ops = insn.mnemonic, insn.op_str
            if (mnem in _BRANCHES or mnem.startswith("b.")) and "#0x" in ops:
                head, _, target = ops.rpartition("#")
                name = self.image.symbolize(int(target, 16))
                if not name.startswith("0x"):
                    ops = head + name
            elif mnem == "ldr" and (m := _LITERAL.fullmatch(ops)):
                ops = f"{m.group(1)}, ={self._literal(int(m.group(2), 16), m.group(1))}"
            return f"{mnem} {ops}".strip()
        return f".word {word:#010x}"

    def _literal(self, addr: int, reg: str) -> str:
        """A literal pool entry as the source wrote it: ``ldr x6, =site_log``."""
        off = addr - self.image.text_base
        size = 8 if reg.startswith("x") else 4
        if not 0 <= off <= len(self.image.text) - size:
            return f"[{addr:#x}]"
        value = int.from_bytes(self.image.text[off:off + size], "little")
        name = self.image.symbolize(value)
        return name if not name.startswith("0x") else f"{value:#x}"

    def short(self, word: int, addr: int) -> str:
        """The mnemonic alone ("b", "nop", "brk")."""
        return self(word, addr).split(" ", 1)[0]


def site_name(image: Image, addr: int) -> str:
    """A patched address's name: the last label defined there (``jl_site_a`` rather than
    the function label ``jl_func_a`` at the same address), else the usual symbol."""
    here = [s for s in image.symbols.values() if s.addr == addr and s.section == "text"
            and not s.name.startswith(".L")]  # in definition order
    if here:  # labels from one macro expansion share its line: the later one wins
        return max(enumerate(here), key=lambda item: (item[1].line, item[0]))[1].name
    return image.symbolize(addr)


# ------------------------------------------------------------------------ data accesses

@dataclass(frozen=True, slots=True)
class Access:
    """The data access of one visible operation, as the access probe saw it
    (``testbed.explain.AccessProbe``).

    ``loaded``: for a load, what each destination register received (extended as the
    instruction extends it; a pair has two values); for an atomic, what memory held
    before it.  A load's value is what memory held right before its step: the D-side is
    sequentially consistent, a load reads memory when its decision is applied.
    ``stored``: what each element wrote; empty for a compare-and-swap that did not
    store.  An empty ``loaded`` of a load: the address could not be read (unmapped)."""

    step: int
    cpu: int
    pc: int
    addr: int  # the effective address
    size: int  # bytes per element (a pair: two elements)
    kind: AccessKind
    mnemonic: str  # "ldar", "stlxr", "ldaddal"...
    loaded: tuple[int, ...] = ()
    stored: tuple[int, ...] = ()
    acquire: bool = False
    release: bool = False
    exclusive: bool = False
    ok: bool | None = None  # a store-exclusive or a compare-and-swap: whether it stored

    @property
    def value(self) -> int:
        """A load's (first) value, a store's or an atomic's (first) stored value; -1 if
        there is none."""
        vals = self.loaded if self.kind is AccessKind.LOAD else self.stored
        return vals[0] if vals else -1

    @property
    def end(self) -> int:
        return self.addr + self.size * max(len(self.loaded), len(self.stored), 1)

    def touches(self, addr: int, size: int = 1) -> bool:
        """Whether the access overlaps ``[addr, addr + size)``."""
        return self.addr < addr + size and addr < self.end

    @property
    def writes(self) -> bool:
        return bool(self.stored) and self.ok is not False


_PERCPU_FIELDS = ((layout.PERCPU_EMUL_LOG, "emul_log"), (layout.PERCPU_EMUL_COUNT, "emul_count"),
                  (layout.PERCPU_IPI_COUNT, "ipi_count"))  # by descending offset
_GIC_REGS = {getattr(layout, n): n for n in ("GIC_SEND", "GIC_SEND_OTHERS", "GIC_PENDING",
                                             "GIC_ACK", "GIC_CPUID", "GIC_CPU_OFF", "GIC_DIE",
                                             "GIC_CLOCK")}


def data_name(image: Image, addr: int) -> str:
    """The name of a data address: a symbol of the image (``patch_done``,
    ``site_log+0x8``; a text address or its writable alias by the text's symbol), a
    per-CPU field (``CPU1.emul_log+0x8``), a CPU's stack (``CPU1 stack-0x110``, from its
    top), an interrupt controller register, else the address."""
    if layout.TEXT_ALIAS <= addr < layout.TEXT_ALIAS + layout.TEXT_MAX:
        addr += layout.TEXT_BASE - layout.TEXT_ALIAS
    if layout.TEXT_BASE <= addr < layout.TEXT_BASE + layout.TEXT_MAX:
        return site_name(image, addr) if addr & 3 == 0 else image.symbolize(addr)
    if layout.PERCPU_BASE <= addr < layout.PERCPU_BASE + layout.PERCPU_SIZE * layout.MAX_CPUS:
        cpu, off = divmod(addr - layout.PERCPU_BASE, layout.PERCPU_SIZE)
        base, name = next(f for f in _PERCPU_FIELDS if off >= f[0])
        return f"CPU{cpu}.{name}" + (f"+{off - base:#x}" if off != base else "")
    if layout.STACK_BASE <= addr < layout.STACK_BASE + layout.STACK_SIZE * layout.MAX_CPUS:
        cpu = (addr - layout.STACK_BASE) // layout.STACK_SIZE
        return f"CPU{cpu} stack-{layout.stack_top(cpu) - addr:#x}"
    if layout.GIC_BASE <= addr < layout.GIC_BASE + layout.PAGE:
        off = addr - layout.GIC_BASE
        return _GIC_REGS.get(off, f"GIC+{off:#x}")
    name = image.symbolize(addr)
    label, plus, rest = name.partition("+")
    sym = image.symbols.get(label)
    if sym is not None:  # of the labels there, the one defined last names what follows
        here = [s for s in image.symbols.values() if s.addr == sym.addr
                and s.section == sym.section and s.file == sym.file
                and not s.name.startswith(".L")]
        if len(here) > 1:
            best = max(enumerate(here), key=lambda item: (item[1].line, item[0]))[1]
            return best.name + plus + rest
    return name


def _hexes(values: Sequence[int]) -> str:
    return ", ".join(f"{v:#x}" for v in values) if values else "?"


def access_text(a: Access, name: Callable[[int], str]) -> str:
    """What an access did, for its row: ``<- 0x1 from patch_done`` (a load),
    ``-> 0xd503201f to nosync_insn`` (a store), ``<- 0x1 -> 0x0 at refs`` (an atomic);
    ``name`` names the data address."""
    where = name(a.addr)
    if a.kind is AccessKind.LOAD:
        return f"<- {_hexes(a.loaded)} from {where}"
    if a.kind is AccessKind.STORE:
        text = f"-> {_hexes(a.stored)} to {where}"
        return text + " (exclusive: failed)" if a.ok is False else text
    stored = f" -> {_hexes(a.stored)}" if a.stored else " (no store)"
    return f"<- {_hexes(a.loaded)}{stored} at {where}"


def _auto_watch(result: RunResult, dis: Disassembler) -> dict[int, dict[int, str]]:
    """Every word the run stored to: its initial word is OLD, its last NEW, the rest
    named by their mnemonic (a BRK written in between)."""
    final: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    text = bytearray(result.initial_text)
    for ev in result.events:
        if ev.kind is not EventKind.TEXT_STORE:
            continue
        size = _store_size(ev)
        off = ev.addr - layout.TEXT_BASE
        text[off:off + size] = (ev.value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        for w in range(off & ~3, off + size, 4):
            word = int.from_bytes(text[w:w + 4], "little")
            seen.setdefault(w, []).append(word)
            final[w] = word
    watch: dict[int, dict[int, str]] = {}
    for w, words in seen.items():
        addr = layout.TEXT_BASE + w
        initial = int.from_bytes(result.initial_text[w:w + 4], "little")
        labels = {word: dis.short(word, addr).upper() for word in words}
        labels[final[w]] = "NEW"
        labels[initial] = "OLD"
        watch[addr] = labels
    return watch


def _store_size(ev: Event) -> int:
    return int(ev.detail.split()[-1]) if ev.detail.startswith("size ") else 4


def _line_of(addr: int, line: int) -> int:
    if layout.TEXT_ALIAS <= addr < layout.TEXT_ALIAS + layout.TEXT_MAX:
        addr += layout.TEXT_BASE - layout.TEXT_ALIAS  # the writable alias of the text
    return addr & ~(line - 1)


class _Builder:
    def __init__(self, result: RunResult, image: Image, watch: Mapping[int, Mapping[int, str]],
                 focus: Iterable[str] | None, dis: Disassembler, line: int) -> None:
        self.image = image
        self.watch = watch
        self.focus = frozenset(focus) if focus is not None else None
        self.dis = dis
        self.line = line
        self.names = {a: site_name(image, a) for a in watch}
        self.watched_lines = {_line_of(a, line) for a in watch}
        self.dside = bytearray(result.initial_text)
        self.last_store: dict[int, int] = {}  # line -> the watched word stored last
        self.last_label: dict[tuple[int, int], str] = {}
        # A loop's repeat is an instruction run again with no anchor of its CPU since.
        self.anchors: dict[int, int] = {}  # cpu -> anchors so far
        self.last_run: dict[tuple[int, int], int] = {}  # (cpu, addr) -> anchors then
        # (cpu, addr) -> what its access did last time: a repeat that loads or stores
        # something new is not a mere repeat.
        self.last_value: dict[tuple[int, int], tuple[object, ...]] = {}
        self.data_names: dict[int, str] = {}

    def dname(self, addr: int) -> str:
        name = self.data_names.get(addr)
        if name is None:
            name = self.data_names[addr] = data_name(self.image, addr)
        return name

    def access(self, cpu: int, addr: int, a: Access | None) -> tuple[str, bool]:
        """The row's access text, and whether it differs from what this instruction's
        access did the last time this CPU ran it."""
        if a is None:
            return "", False
        key = (a.kind, a.loaded, a.stored, a.ok)
        old = self.last_value.get((cpu, addr))
        self.last_value[(cpu, addr)] = key
        return access_text(a, self.dname), old is not None and old != key

    def sym(self, addr: int) -> str:
        name = self.names.get(addr)
        return name if name is not None else self.image.symbolize(addr)

    def line_name(self, addr: int) -> str:
        base = _line_of(addr, self.line)
        inside = [a for a in self.watch if _line_of(a, self.line) == base]
        if not inside:
            return f"line {self.sym(base)}"
        which = self.last_store.get(base, min(inside))
        return f"line of {self.sym(which)}"

    def counted(self, row: Row) -> Row:
        if row.anchor and row.cpu >= 0:
            self.anchors[row.cpu] = self.anchors.get(row.cpu, 0) + 1
        return row

    # -- instructions ------------------------------------------------------------------
    def insn(self, step: int, cpu: int, addr: int, word: int, a: Access | None = None) -> Row:
        count = self.anchors.get(cpu, 0)
        text, changed = self.access(cpu, addr, a)
        repeat = self.last_run.get((cpu, addr)) == count and not changed
        sym = self.sym(addr)
        infocus = self.focus is None or sym.split("+", 1)[0] in self.focus
        row = self.counted(Row(step, cpu, Kind.INSN, self.dis(word, addr), sym, addr=addr,
                               anchor=infocus and not repeat, access=text))
        self.last_run[(cpu, addr)] = self.anchors.get(cpu, 0)
        return row

    def site(self, step: int, cpu: int, addr: int, word: int, a: Access | None = None) -> Row:
        text, _ = self.access(cpu, addr, a)
        labels = self.watch[addr]
        label = labels.get(word, f"{word:#010x}")
        off = addr - layout.TEXT_BASE
        stale = int.from_bytes(self.dside[off:off + 4], "little") != word
        key = (cpu, addr)
        changed = self.last_label.get(key) != label
        self.last_label[key] = label
        return Row(step, cpu, Kind.SITE, self.dis(word, addr), self.sym(addr),
                   label + (", stale" if stale else ""), addr, changed or stale, stale,
                   access=text)

    # -- events ------------------------------------------------------------------------
    def events(self, evs: Sequence[Event]) -> list[Row]:
        out: list[Row] = []
        catch: dict[tuple[int, str], list[Event]] = {}
        irq = {(e.step, e.cpu) for e in evs if e.kind is EventKind.IRQ}
        for ev in evs:
            if ev.kind is EventKind.CATCH_UP:
                catch.setdefault((ev.cpu, ev.detail), []).append(ev)
                continue
            row = self.event(ev, (ev.step, ev.cpu) in irq)
            if row is not None:
                out.append(row)
        for (cpu, why), group in catch.items():
            what = ", ".join(f"{self.dis(e.value, e.addr)} at {self.sym(e.addr)}"
                             for e in group)
            how = "model choice, no CSE" if why == "chosen" else why
            out.append(Row(group[0].step, cpu, Kind.MODEL,
                           f"catch-up ({how}): I-view now {what}"))
        return out

    def event(self, ev: Event, irq: bool) -> Row | None:
        k, step, cpu = ev.kind, ev.step, ev.cpu
        if k is EventKind.TEXT_STORE:
            off = ev.addr - layout.TEXT_BASE
            size = _store_size(ev)
            self.dside[off:off + size] = (ev.value & ((1 << 8 * size) - 1)).to_bytes(
                size, "little")
            if ev.addr in self.watch:
                self.last_store[_line_of(ev.addr, self.line)] = ev.addr
            what = (self.dis(ev.value, ev.addr) if size == 4
                    else f"{size}-byte value {ev.value:#x}")
            return Row(step, cpu, Kind.STORE, f"text store: {what} to {self.sym(ev.addr)}")
        if k is EventKind.DC or k is EventKind.IC:
            op = ev.detail
            anchor = _line_of(ev.addr, self.line) in self.watched_lines
            if op == "iallu":
                text, anchor = "IC IALLU: this CPU's I-cache invalid", True
            elif op == "ialluis":
                text, anchor = "IC IALLUIS broadcast: every I-cache invalid", True
            elif k is EventKind.IC:
                text = f"IC {op.upper()} broadcast: {self.line_name(ev.addr)} invalid"
            else:
                text = f"DC {op.upper()} {self.line_name(ev.addr)}: to the PoU"
            return Row(step, cpu, Kind.MODEL, text, anchor=anchor)
        if k is EventKind.FILL:
            return Row(step, cpu, Kind.MODEL, f"fill {self.sym(ev.addr)} {ev.detail}: "
                       f"{self.dis(ev.value, ev.addr)}", anchor=ev.addr in self.watch)
        if k is EventKind.EVICT:
            return Row(step, cpu, Kind.MODEL, f"evict {self.sym(ev.addr)} from the I-cache",
                       anchor=ev.addr in self.watch)
        if k is EventKind.WRITE_BACK:
            return Row(step, cpu, Kind.MODEL,
                       f"write-back {self.line_name(ev.addr)} to the PoU",
                       anchor=_line_of(ev.addr, self.line) in self.watched_lines)
        if k is EventKind.IRQ:
            return None  # shown with its exception entry
        if k is EventKind.EXCEPTION:
            if irq or ev.value < 0:
                return Row(step, cpu, Kind.EXCEPTION, f"IRQ taken at {self.sym(ev.addr)}")
            ec, iss = (ev.value >> 26) & 0x3F, ev.value & 0xFFFF
            what = {EC_BRK64: f"BRK #{iss}", EC_SVC64: f"SVC #{iss}",
                    EC_UNKNOWN: "undefined instruction"}.get(ec, f"ESR {ev.value:#x}")
            return Row(step, cpu, Kind.EXCEPTION, f"{what} taken at {self.sym(ev.addr)}")
        if k is EventKind.ERET:
            return Row(step, cpu, Kind.EXCEPTION, f"ERET at {self.sym(ev.addr)}")
        if k is EventKind.IPI_SEND:
            return Row(step, cpu, Kind.IPI, f"IPI {ev.value} sent {ev.detail}".rstrip())
        if k is EventKind.IPI_ACK:
            return Row(step, cpu, Kind.IPI, f"IPI {ev.value} acknowledged", marker="<-")
        if k is EventKind.HALT:
            return Row(step, cpu, Kind.HALT, f"CPU off at {self.sym(ev.addr)}")
        if k is EventKind.READ:  # the Arm data-memory model's choices
            return Row(step, cpu, Kind.MODEL, f"an older write: {ev.detail}", anchor=True)
        if k is EventKind.PROMISE:
            return Row(step, cpu, Kind.MODEL, f"promises {ev.value:#x} to "
                       f"{self.sym(ev.addr)}", anchor=True)
        if k is EventKind.COMPLETE:
            return Row(step, cpu, Kind.MODEL, f"its cache maintenance {ev.detail} completes",
                       anchor=True)
        return None


# An instruction row is left out when an event row already names it.
_SAYS_INSN = (EventKind.ERET, EventKind.HALT)


def rows(result: RunResult, image: Image,
         watch: Mapping[int, Mapping[int, str]] | None = None, *,
         focus: Iterable[str] | None = None, records: Sequence[TextPoke] = (),
         notes: Sequence[Row] = (), iline: int = 64,
         accesses: Sequence[Access] | None = None) -> list[Row]:
    """Every row of the timeline, in step order.

    ``watch``: address -> {word: label} to mark executions (default: every word the
    run stored to, labelled OLD / NEW / mnemonic).  ``focus``: function names whose
    instructions are anchors (default: all; a loop's repeats are not, unless their
    access loads or stores a value other than last time).  ``accesses``: the run's data
    accesses (``testbed.explain.AccessProbe``), shown on the rows of the operations that
    made them.
    """
    dis = Disassembler(image)
    watch = dict(watch) if watch is not None else _auto_watch(result, dis)
    b = _Builder(result, image, watch, focus, dis, iline)
    by_step: dict[int, list[tuple[int, int, int]]] = {}  # step -> (cpu, addr, word)
    for cpu, seq in enumerate(result.ground_truth()):
        for step, addr, word in seq:
            by_step.setdefault(step, []).append((cpu, addr, word))
    events: dict[int, list[Event]] = {}
    for ev in result.events:
        events.setdefault(ev.step, []).append(ev)
    done: dict[tuple[int, int], Access] = {(a.step, a.cpu): a for a in accesses or ()}
    findings: dict[int, list[Row]] = {}
    end = max([*by_step, *events, 0]) + 1
    for f in result.findings:
        step = f.step if f.step >= 0 else end
        findings.setdefault(step, []).append(
            Row(step, f.cpu, Kind.FINDING, f.oracle, mark="FINDING"))
    extra: dict[int, list[Row]] = {}
    for row in _record_rows(records, by_step, dis, b.sym):
        extra.setdefault(row.step, []).append(row)
    for row in notes:
        extra.setdefault(row.step, []).append(row)
    out: list[Row] = []
    for step in sorted({*by_step, *events, *findings, *extra}):
        evs = events.get(step, [])
        entering = any(e.kind in (EventKind.EXCEPTION, EventKind.IRQ) for e in evs)
        named = {e.cpu for e in evs if e.kind in _SAYS_INSN}
        ran: list[Row] = []
        folded: list[Row] = []
        seen: set[int] = set()
        for cpu, addr, word in by_step.get(step, []):
            # The first instruction a CPU ran in a step is the operation it performed.
            a = done.get((step, cpu)) if cpu not in seen else None
            if a is not None and a.pc != addr:
                a = None
            if addr in watch:
                ran.append(b.site(step, cpu, addr, word, a))
            elif cpu not in seen and not entering and cpu not in named:
                ran.append(b.insn(step, cpu, addr, word, a))  # the step's visible operation
            elif cpu in seen and classify(word).kind in _FOLDED:
                folded.append(b.insn(step, cpu, addr, word, None))  # within the step
            seen.add(cpu)
        ev_rows = b.events(evs)
        if entering:  # the exception entry came first, then the vector's code
            here = ev_rows + ran + folded
        else:
            # The visible operation first, then what it did; a site it ran on to after
            # the operation goes after the events (an ISB's catch-up, then the site).
            here = [r for r in ran if r.kind is Kind.INSN]
            here += [r for r in ev_rows if r.kind is not Kind.HALT]
            here += folded  # (what the step performed on the way, after what it did)
            here += [r for r in ran if r.kind is not Kind.INSN]
            here += [r for r in ev_rows if r.kind is Kind.HALT]
        here += extra.get(step, []) + findings.get(step, [])
        out += [r if r.kind is Kind.INSN else b.counted(r) for r in here]
    return out


# Operations a step performs on the way (folded steps, execute.py): shown at its step.
_FOLDED = frozenset({OpKind.BARRIER, OpKind.YIELD, OpKind.WFE, OpKind.SEV})


def _record_rows(records: Sequence[TextPoke], by_step: Mapping[int, list[tuple[int, int, int]]],
                 dis: Disassembler, sym: Callable[[int], str]) -> list[Row]:
    """One row per text-poke record, at the step its time was read (the GIC clock is
    the global step), in the column of the CPU that read it."""
    count = Counter((r.addr, r.old, r.new) for r in records)
    nth: Counter[tuple[int, bytes, bytes]] = Counter()
    out: list[Row] = []
    for r in records:
        key = (r.addr, r.old, r.new)
        tag = ""
        if count[key] == 2:  # a PRE/POST pair brackets one patch
            tag = ("PRE ", "POST ")[nth[key]]
        nth[key] += 1
        ran = by_step.get(r.time, [])
        cpu = ran[0][0] if ran else 0
        if len(r.old) == 4 and len(r.new) == 4:
            change = (f"{dis(int.from_bytes(r.old, 'little'), r.addr)} -> "
                      f"{dis(int.from_bytes(r.new, 'little'), r.addr)}")
        else:
            change = f"{len(r.old)} -> {len(r.new)} bytes"
        out.append(Row(r.time, cpu, Kind.RECORD, f"{tag}text-poke record: {sym(r.addr)}: "
                       f"{change}"))
    return out


def fold_rows(rows: Sequence[Row], min_run: int = 3) -> list[Item]:
    """Rows, with every run of non-anchors spanning ``min_run`` steps or more replaced
    by a ``Fold``."""
    out: list[Item] = []
    run: list[Row] = []

    def flush() -> None:
        if len({r.step for r in run}) >= min_run:
            per: dict[int, Counter[str]] = {}
            steps: dict[int, set[int]] = {}
            for r in run:
                per.setdefault(r.cpu, Counter())
                if r.function:
                    per[r.cpu][r.function] += 1
                steps.setdefault(r.cpu, set()).add(r.step)
            per_cpu = tuple((cpu, len(steps[cpu]),
                             tuple(name for name, _ in per[cpu].most_common(2)))
                            for cpu in sorted(per))
            out.append(Fold(run[0].step, run[-1].step, len({r.step for r in run}), per_cpu))
        else:
            out.extend(run)
        run.clear()

    for r in rows:
        if r.anchor:
            flush()
            out.append(r)
        else:
            run.append(r)
    flush()
    return out


def build(result: RunResult, image: Image, ncpus: int, *,
          watch: Mapping[int, Mapping[int, str]] | None = None,
          focus: Iterable[str] | None = None, records: Sequence[TextPoke] = (),
          notes: Sequence[Row] = (), fold: int = 3, iline: int = 64,
          accesses: Sequence[Access] | None = None) -> Timeline:
    """The timeline of ``result``; ``fold``: the shortest run of non-anchors folded;
    ``accesses``: the run's data accesses, shown on memory rows (see ``rows``)."""
    all_rows = rows(result, image, watch, focus=focus, records=records, notes=notes,
                    iline=iline, accesses=accesses)
    return Timeline(ncpus, tuple(fold_rows(all_rows, fold)))


# The widest a CPU column grows to show an instruction, its symbol and its access.
ACCESS_WIDTH = 100


def fit_width(timeline: Timeline, least: int = 60, most: int = ACCESS_WIDTH) -> int:
    """A column width that shows every cell of the timeline whole (a cell longer than
    its column is cut, but in the last column), between ``least`` and ``most``."""
    cells = [len(i.cell()) for i in timeline.items if isinstance(i, Row)
             and 0 <= i.cpu < timeline.ncpus - 1]
    return min(max([least, *(n + 1 for n in cells)]), most)


def render(result: RunResult, image: Image, ncpus: int, *,
           watch: Mapping[int, Mapping[int, str]] | None = None, width: int | None = None,
           fold: int = 3, accesses: Sequence[Access] | None = None,
           records: Sequence[TextPoke] = ()) -> str:
    """The timeline as plain text, ``width`` characters per CPU column (default 60; with
    ``accesses``, whose rows are longer, as wide as the longest cell needs, up to
    ``ACCESS_WIDTH``)."""
    tl = build(result, image, ncpus, watch=watch, fold=fold, records=records,
               accesses=accesses)
    if width is None:
        width = 60 if accesses is None else fit_width(tl)
    return tl.text(width)
