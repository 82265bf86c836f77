"""Why a finding happened, told from the run itself; and the access probe it reads.

The **access probe** (``AccessProbe``) wraps the strategy of a run (``Session.replay(
schedule, wrap=probe)``, or ``session.run(probe(strategy))``) without changing what it
decides.  Before each STEP decision is applied, the stepping CPU is stopped *before*
its visible operation (``Machine.cpus[cpu].pc``); if that operation is a load, a store
or an atomic, the probe decodes the instruction word the CPU will execute (its I-view's)
with Capstone, reads the registers it names, computes the effective address (base,
immediate offset, pre/post index, register offset with its extend and shift) and
records an ``Access`` (``testbed.timeline``) numbered with the step the machine gives
that decision (``Machine.step_no`` + 1).  A load's value is what memory holds right
before the step (the D-side is sequentially consistent: a load reads memory when its
decision is applied), extended as the instruction extends it; a store's is its source
register(s); an atomic's is computed from both (LDADD, LDCLR, LDEOR, LDSET, LD[SU]MAX,
LD[SU]MIN, SWP, CAS, CASP, and their ST aliases).  Whether a store-exclusive stored is
read back from memory after its step.  Not recorded: prefetches, DC ZVA and SIMD
structure loads/stores (LD1...).

``explain(result, image, finding, accesses)`` says, in paragraphs, how one finding
happened, from the run's events, ground truth and (when given) accesses: per oracle
for the project's oracles, and from the finding's step, the CPU's last accesses and
its last context synchronization for the oracles of a scenario of one's own.
``explain_lines`` wraps the explanations of every finding of a run into what
``testbed replay --timeline`` prints after the timeline; ``explain_replay(session,
schedule)`` replays a schedule with the probe and returns ``(result, accesses, lines)``:
the timeline is ``timeline.render(result, image, ncpus, accesses=accesses)``.
"""

from __future__ import annotations

import re
import struct
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from unicorn.arm64_const import UC_ARM64_REG_SP

from . import emulator, layout, slab
from .access import (
    REG_BYTES,
    AccessKind,
    decode_access,
    effective_address,
    rmw,
    sext,
)
from .asm import Image
from .dataside import read_bytes
from .exceptions import NOT_SYNCHRONIZING
from .findings import Event, EventKind, Finding, OracleName
from .isa import OpKind, classify, is_cmodx
from .machine import EC_BRK64, XREG, GuestError, Machine
from .schedule import Decision, DecisionKind
from .scheduler import RunResult
from .textpoke import TextPoke, records_of
from .timeline import Access, Disassembler, data_name, site_name

if TYPE_CHECKING:
    from .scenario import Session
    from .schedule import Schedule
    from .strategies.base import Strategy

__all__ = [
    "AccessProbe",
    "Explained",
    "decode_access",
    "explain",
    "explain_lines",
    "explain_replay",
]

class _Registers:
    """X0..X30 and SP of each CPU of a machine, in one C call per read (the binding's
    reg_read costs about 9 us per register)."""

    def __init__(self, m: Machine) -> None:
        ids = [*XREG[:31], UC_ARM64_REG_SP]
        self.readers = [emulator.register_reader(c.uc, ids) for c in m.cpus]

    def read(self, cpu: int) -> tuple[int, ...]:
        return _UNPACK(self.readers[cpu]())


_UNPACK = struct.Struct("<32Q").unpack


# --------------------------------------------------------------------------- the probe

def _peek(m: Machine, cpu: int, addr: int, size: int, step: int) -> bytes | None:
    """What ``cpu`` would read at ``addr`` now, without side effects (``None``: nothing
    a load could read there)."""
    top = layout.stack_top(cpu)
    if top - layout.STACK_SIZE <= addr and addr + size <= top:  # its own stack
        off = addr - (top - layout.STACK_SIZE)
        return bytes(m.cpus[cpu].stack[off:off + size])
    if layout.GIC_BASE <= addr < layout.GIC_BASE + layout.PAGE:
        off = addr - layout.GIC_BASE
        pending = m.gic.pending[cpu]
        if off == layout.GIC_CLOCK:
            value = step  # the global step, during the step
        elif off == layout.GIC_PENDING:
            value = pending
        elif off == layout.GIC_ACK:
            value = (pending & -pending).bit_length() - 1 if pending else layout.GIC_SPURIOUS
        elif off == layout.GIC_CPUID:
            value = cpu
        else:
            value = 0
        return value.to_bytes(size, "little")
    try:
        return m.read(addr, size)
    except GuestError:
        return None


# Decisions that perform a CPU's next access: a step, or under the Arm model a step that
# reads older messages or whose store-exclusive fails.
_ACCESS_KINDS = frozenset({DecisionKind.STEP, DecisionKind.READ, DecisionKind.FAIL})


class _Probed:
    """A strategy, observed: decides exactly what the strategy it wraps decides."""

    def __init__(self, inner: Strategy, probe: AccessProbe) -> None:
        self.inner = inner
        self.probe = probe
        self.name = inner.name

    @property
    def seed(self) -> int | None:
        seed = getattr(self.inner, "seed", None)
        return seed if isinstance(seed, int) else None

    def begin(self, machine: Machine) -> None:
        self.probe.begin(machine)
        self.inner.begin(machine)

    def choose(self, machine: Machine) -> Decision | None:
        d = self.inner.choose(machine)
        self.probe.before(machine, d)
        return d

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


class AccessProbe:
    """Records the data access of every visible load, store and atomic of a run.

    Use it as the ``wrap`` of ``Session.replay`` (``session.replay(schedule,
    wrap=probe)``) or around any strategy (``session.run(probe(RandomWalk(1)))``); then
    ``probe.accesses`` holds this run's accesses in step order (a new run starts a new
    list).  Read them right after the run: a store-exclusive's outcome is read back
    from the machine after its step.
    """

    def __init__(self) -> None:
        self._accesses: list[Access] = []
        self._pending: list[int] = []  # indices of accesses settled after their step
        self._machine: Machine | None = None
        self._run: object = None  # the machine's event list of the run being observed
        self._regs: _Registers | None = None

    def __call__(self, strategy: Strategy) -> Strategy:
        return _Probed(strategy, self)

    @property
    def accesses(self) -> list[Access]:
        m = self._machine
        if m is not None and m.events is self._run:
            self._settle(m)
            # The run loop may choose a decision it then does not apply (its bound).
            while self._accesses and self._accesses[-1].step > m.step_no:
                self._accesses.pop()
        return self._accesses

    def begin(self, machine: Machine) -> None:
        self._accesses = []
        self._pending = []
        if machine is not self._machine:
            self._regs = None
        self._machine = machine
        self._run = machine.events

    def before(self, machine: Machine, d: Decision | None) -> None:
        """``d`` is about to be applied to ``machine``."""
        if self._pending:
            self._settle(machine)
        if d is None or d.kind not in _ACCESS_KINDS or not 0 <= d.cpu < machine.ncpus \
                or machine.pending_kind(d.cpu) is not OpKind.MEMORY:
            return
        read = d.addr if d.kind is DecisionKind.READ else None
        a, late = self._access(machine, d.cpu, machine.step_no + 1, read)
        if a is not None:
            if late:
                self._pending.append(len(self._accesses))
            self._accesses.append(a)

    def _access(self, m: Machine, cpu: int, step: int,
                read: int | None = None) -> tuple[Access | None, bool]:
        pc = m.cpus[cpu].pc
        off = pc - layout.TEXT_BASE
        if not 0 <= off < m.text_size:
            return None, False
        p = decode_access(m.model.fetch(cpu, off))
        if p is None:
            return None, False
        if self._regs is None:
            self._regs = _Registers(m)
        regs = self._regs.read(cpu)
        # base, index, sources, new: their values (None: a register not read, SIMD)
        addr, vals = effective_address(p, regs)
        nsrc = len(p.sources)
        src, new = vals[2:2 + nsrc], vals[2 + nsrc:]
        n, bits = p.size, 8 * p.size
        mask = (1 << bits) - 1
        count = p.elements
        raw = (_peek(m, cpu, addr, n * count, step) if read is None
               else read_bytes(m, addr, n * count, read))  # an older message (Arm model)
        held = ([int.from_bytes(raw[i * n:(i + 1) * n], "little") for i in range(count)]
                if raw is not None else [])
        loaded: tuple[int, ...] = ()
        stored: tuple[int, ...] = ()
        ok: bool | None = None
        late = False
        if p.kind is AccessKind.LOAD:
            out = []
            for v, dest in zip(held, p.dests, strict=False):
                width = 32 if dest.startswith("w") else 8 * REG_BYTES.get(dest[:1], 8)
                out.append(sext(v, bits) & ((1 << width) - 1) if p.signed else v)
            loaded = tuple(out)
        elif p.kind is AccessKind.STORE:
            stored = tuple((v & mask) if v is not None else 0 for v in src)
            late = p.exclusive or None in src  # read back after the step
        else:
            loaded = tuple(held)
            operands = [(v or 0) & mask for v in src]
            if p.op == "cas":
                if held == operands:
                    stored, ok = tuple((v or 0) & mask for v in new), True
                else:
                    ok = False
            elif held:
                stored = (rmw(p.op, held[0], operands[0], bits),)
        return Access(step, cpu, pc, addr, n, p.kind, p.mnemonic, loaded, stored, p.acquire,
                      p.release, p.exclusive, ok), late

    def _settle(self, m: Machine) -> None:
        """Complete the accesses whose outcome is known only after their step: a
        store-exclusive stored iff memory now holds its value; a SIMD store's value is
        what memory now holds.  An access whose decision was never applied (the run hit
        its decision bound) is dropped."""
        drop: list[int] = []
        for i in self._pending:
            a = self._accesses[i]
            if m.step_no < a.step:
                drop.append(i)
                continue
            count = max(len(a.stored), 1)
            raw = _peek(m, a.cpu, a.addr, a.size * count, m.step_no)
            if raw is None:
                continue
            after = tuple(int.from_bytes(raw[k * a.size:(k + 1) * a.size], "little")
                          for k in range(count))
            if a.exclusive:
                self._accesses[i] = replace(a, ok=after == a.stored)
            else:
                self._accesses[i] = replace(a, stored=after)
        for i in reversed(drop):
            del self._accesses[i]
        self._pending = []


# ----------------------------------------------------------------------- the run, read

_ISB_KINDS = (OpKind.ISB,)


def _hex(v: int) -> str:
    return f"{v:#x}"


class _Run:
    """One finished run, with the questions the explanations ask of it."""

    def __init__(self, result: RunResult, image: Image, accesses: Sequence[Access] | None,
                 records: Sequence[TextPoke]) -> None:
        self.result = result
        self.image = image
        self.has_accesses = accesses is not None
        self.accesses = sorted(accesses or (), key=lambda a: a.step)
        self.records = list(records)
        self.truth = result.ground_truth()
        self.events = result.events
        self._dis = Disassembler(image)
        self._names: dict[int, str] = {}
        self.first: dict[tuple[int, int], tuple[int, int]] = {}  # (cpu, step) -> (addr, word)
        for cpu, seq in enumerate(self.truth):
            for step, addr, word in seq:
                self.first.setdefault((cpu, step), (addr, word))

    # -- names -----------------------------------------------------------------------
    def sym(self, addr: int) -> str:
        return site_name(self.image, addr)

    def where(self, addr: int) -> str:
        name = self._names.get(addr)
        if name is None:
            name = self._names[addr] = data_name(self.image, addr)
        return name

    def dis(self, word: int, addr: int) -> str:
        return self._dis(word, addr)

    def value(self, v: int, size: int = 8) -> str:
        """A value, with what it names when it is a text address."""
        if layout.TEXT_BASE <= v < layout.TEXT_BASE + layout.TEXT_MAX and size == 8:
            return f"{v:#x} ({self.sym(v)})"
        return _hex(v)

    def op(self, cpu: int, step: int) -> str:
        """The visible operation ``cpu`` performed at ``step``: "`ldar w9, [x7]` at
        site_loop+0xc"."""
        hit = self.first.get((cpu, step))
        if hit is None:
            return ""
        addr, word = hit
        return f"`{self.dis(word, addr)}` at {self.image.symbolize(addr)}"

    def ordering(self, a: Access) -> str:
        what = []
        if a.exclusive:
            what.append("exclusive")
        if a.acquire and a.release:
            what.append("acquire-release")
        elif a.acquire:
            what.append("load-acquire" if a.kind is AccessKind.LOAD else "acquire")
        elif a.release:
            what.append("store-release" if a.kind is AccessKind.STORE else "release")
        return f", {' '.join(what)}" if what else ""

    def access(self, a: Access, *, who: bool = True) -> str:
        """One access in words: "CPU0 stored 0x1 to patch_done at step 15 (`stlr w3,
        [x2]` at patcher_main+0x1c, store-release)"."""
        subject = f"CPU{a.cpu} " if who else ""
        if a.kind is AccessKind.LOAD:
            vals = ", ".join(self.value(v, a.size) for v in a.loaded) or "?"
            verb = f"loaded {vals} from {self.where(a.addr)}"
        elif a.kind is AccessKind.STORE:
            vals = ", ".join(self.value(v, a.size) for v in a.stored)
            verb = f"stored {vals} to {self.where(a.addr)}"
            if a.ok is False:
                verb = f"tried to store {vals} to {self.where(a.addr)} (the exclusive failed)"
        else:
            old = ", ".join(_hex(v) for v in a.loaded)
            new = ", ".join(_hex(v) for v in a.stored)
            verb = (f"atomically turned {self.where(a.addr)} from {old} into {new}" if a.stored
                    else f"compared {self.where(a.addr)} ({old}) and did not store")
        op = self.op(a.cpu, a.step)
        return f"{subject}{verb} at step {a.step} ({op}{self.ordering(a)})" if op else \
            f"{subject}{verb} at step {a.step}"

    # -- history ---------------------------------------------------------------------
    def evs(self, kind: EventKind, cpu: int | None = None) -> list[Event]:
        return [e for e in self.events if e.kind is kind and (cpu is None or e.cpu == cpu)]

    def stores_over(self, addr: int, before: int | None = None) -> list[Event]:
        """Text stores that wrote any byte of the word at ``addr``."""
        out = []
        for e in self.evs(EventKind.TEXT_STORE):
            size = int(e.detail.split()[-1]) if e.detail.startswith("size ") else 4
            if e.addr < addr + 4 and addr < e.addr + size and (before is None or e.step <= before):
                out.append(e)
        return out

    def isb_steps(self, cpu: int) -> list[int]:
        return sorted(step for (c, step), (_, word) in self.first.items()
                      if c == cpu and classify(word).kind in _ISB_KINDS)

    def syncs(self, cpu: int, before: int) -> list[tuple[int, str]]:
        """``cpu``'s context synchronization events before ``before``, in order: ISB,
        exception entries, ERETs (steps at which its I-view had to catch up)."""
        out = [(s, "ISB") for s in self.isb_steps(cpu) if s < before]
        for e in self.events:
            if e.cpu != cpu or e.step >= before or e.detail.startswith(NOT_SYNCHRONIZING):
                continue
            if e.kind is EventKind.EXCEPTION:
                out.append((e.step, f"exception entry ({self.exception(e)})"))
            elif e.kind is EventKind.ERET:
                out.append((e.step, "ERET"))
        return sorted(set(out))

    def exception(self, e: Event) -> str:
        if e.value < 0:
            return f"IRQ at {self.image.symbolize(e.addr)}"
        ec, iss = (e.value >> 26) & 0x3F, e.value & 0xFFFF
        what = f"BRK #{iss}" if ec == EC_BRK64 else f"ESR {e.value:#x}"
        return f"{what} at {self.sym(e.addr)}"

    def last_sync(self, cpu: int, before: int) -> str:
        syncs = self.syncs(cpu, before)
        if not syncs:
            return f"CPU{cpu} had no context synchronization event before step {before}"
        step, what = syncs[-1]
        return (f"CPU{cpu}'s last context synchronization event before step {before} was "
                f"its {what} at step {step}")

    def of(self, cpu: int | None = None, *, before: int | None = None, after: int = -1,
           kind: AccessKind | None = None, addr: int | None = None) -> list[Access]:
        return [a for a in self.accesses
                if (cpu is None or a.cpu == cpu) and a.step > after
                and (before is None or a.step < before) and (kind is None or a.kind is kind)
                and (addr is None or a.touches(addr))]

    def writes_to(self, a: Access, before: int, *, other_than: int = -1) -> list[Access]:
        """Accesses that wrote any byte ``a`` reads, before step ``before``."""
        return [w for w in self.accesses if w.step < before and w.writes
                and w.cpu != other_than and w.addr < a.end and a.addr < w.end]

    def iview_word(self, cpu: int, addr: int, step: int) -> int:
        """The word ``cpu``'s I-view held at ``addr`` when ``step`` began."""
        w = addr - layout.TEXT_BASE
        word = int.from_bytes(self.result.initial_text[w:w + 4], "little")
        for s, start, end in self.result.logs[cpu]:
            if s >= step:
                break
            if start < 0 and ~start == w:
                word = end
        return word

    def initial(self, addr: int) -> int:
        w = addr - layout.TEXT_BASE
        return int.from_bytes(self.result.initial_text[w:w + 4], "little")

    def private(self, a: Access) -> bool:
        """A CPU's own stack: no other CPU reads it."""
        return layout.STACK_BASE <= a.addr < layout.STACK_BASE + layout.STACK_SIZE * \
            layout.MAX_CPUS

    def no_probe(self) -> str:
        return ("(Replay with the access probe, testbed.explain.AccessProbe, to see the "
                "values loaded and stored.)")


def _list(items: Sequence[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _steps(steps: Iterable[int]) -> str:
    s = sorted(set(steps))
    return ("step " if len(s) == 1 else "steps ") + _list([str(x) for x in s])


# ------------------------------------------------------------------------- the stories

def _why_stale(r: _Run, f: Finding) -> list[str]:
    """stale-after-flush, static-key-incoherence: a CPU saw the patch as done and ran
    the old instruction."""
    site, cpu = f.addr, f.cpu
    old = f.words[0] if f.words else r.initial(site)
    new = f.words[1] if len(f.words) > 1 else -1
    stores = r.stores_over(site, f.step)
    store = next((e for e in reversed(stores) if e.value & 0xFFFF_FFFF == new), None) \
        or (stores[-1] if stores else None)
    parts: list[str] = []
    if store is None:
        parts.append(f"No CPU stored to {r.sym(site)} before step {f.step}, yet CPU{cpu} ran "
                     f"`{r.dis(old, site)}` there.")
        return parts
    patcher = store.cpu
    text = (f"CPU{patcher} stored `{r.dis(store.value & 0xFFFF_FFFF, site)}` "
            f"({store.value & 0xFFFF_FFFF:#010x}) to {r.sym(site)} at step {store.step}")
    how = r.op(patcher, store.step)
    text += f" ({how}, through the text alias)" if how else ""
    # Its flush: cache maintenance of the site's line up to the patcher's next ISB
    # (and before its next text store).
    line = site & ~63
    later = [e.step for e in r.evs(EventKind.TEXT_STORE, patcher) if e.step > store.step]
    isbs = [s for s in r.isb_steps(patcher) if store.step < s <= f.step]
    until = min([*later[:1], *isbs[:1], f.step])
    flush: list[tuple[int, str]] = []
    for e in r.events:
        if e.cpu != patcher or not store.step <= e.step <= until:
            continue
        va = e.addr - layout.TEXT_ALIAS + layout.TEXT_BASE if e.addr >= layout.TEXT_ALIAS \
            else e.addr
        if e.kind in (EventKind.DC, EventKind.IC) and (
                e.detail in ("iallu", "ialluis") or va & ~63 == line):
            flush.append((e.step, f"{e.kind.value.upper()} {e.detail.upper()} at step {e.step}"))
    if isbs and isbs[0] == until:
        flush.append((until, f"ISB at step {until}"))
    if flush:
        text += "; then " + _list([t for _, t in sorted(flush)])
    parts.append(text + ".")
    # The flag: the last thing the reader loaded that the patcher wrote after the patch.
    if r.has_accesses:
        seen = None
        for a in reversed(r.of(cpu, before=f.step, kind=AccessKind.LOAD)):
            if r.private(a):
                continue
            ws = [w for w in r.writes_to(a, a.step) if w.cpu != cpu]
            if ws and ws[-1].step > store.step:
                seen = (ws[-1], a)
                break
        if seen is not None:
            w, a = seen
            parts.append(f"After the patch {r.access(w)}, and {r.access(a)}: CPU{cpu} had "
                         f"seen the patch done before step {f.step}.")
        else:
            parts.append(f"CPU{cpu} loaded nothing CPU{patcher} had written after the patch "
                         f"before step {f.step}.")
    else:
        parts.append(r.no_probe())
    # The reader's I-side.
    syncs = r.syncs(cpu, f.step)
    sync = r.last_sync(cpu, f.step)
    if syncs and syncs[-1][0] < store.step:
        sync += f", before CPU{patcher}'s store at step {store.step}"
    elif syncs:
        sync += f", after CPU{patcher}'s store"
    side = []
    for e in r.evs(EventKind.FILL, cpu):
        if e.addr == site and store.step < e.step < f.step:
            side.append(f"its I-cache was refilled {e.detail} with `{r.dis(e.value, site)}` at "
                        f"step {e.step}")
    for e in r.evs(EventKind.EVICT, cpu):
        if e.addr == site and store.step < e.step < f.step:
            side.append(f"the word was evicted from its I-cache at step {e.step}")
    catch = [e for e in r.evs(EventKind.CATCH_UP, cpu) if e.addr == site and e.step < f.step]
    view = r.iview_word(cpu, site, f.step)
    if catch:
        last = catch[-1]
        how = "a catch-up the scheduler chose" if last.detail == "chosen" else \
            f"its {last.detail}"
        side.append(f"its I-view last took {r.sym(site)} at step {last.step}, by {how}, as "
                    f"`{r.dis(last.value, site)}`")
    else:
        side.append(f"its I-view never caught up on {r.sym(site)}: it still held the "
                    f"initial `{r.dis(view, site)}`")
    parts.append(sync + "; " + "; ".join(side) + ".")
    done = [e.step for e in r.evs(EventKind.COMPLETE, patcher) if e.step < f.step]
    synced_after = bool(syncs) and syncs[-1][0] > store.step
    why = (f"CPU{cpu} did synchronize after the store, but CPU{patcher}'s invalidation had "
           "not completed by then: under the Arm model cache maintenance completes only at "
           "a DSB of the CPU that issued it (or when the scheduler chooses"
           + (f", which it did at step {done[-1]}" if done else "") + "), and no DSB "
           "came between the IC and what told this CPU the patch was done"
           if synced_after else
           f"nothing made CPU{cpu} synchronize its instruction stream after it saw the "
           "flag (an ISB there, or an IPI as kick_all_cpus_sync() sends, would have)")
    parts.append(f"So at step {f.step} CPU{cpu} executed `{r.dis(old, site)}` at {r.sym(site)} "
                 f"from its I-view, though memory had held `{r.dis(new, site)}` since step "
                 f"{store.step}: {why}.")
    return parts


def _why_cmodx(r: _Run, f: Finding) -> list[str]:
    site, cpu = f.addr, f.cpu
    syncs = r.syncs(cpu, f.step)
    since = syncs[-1][0] if syncs else 0
    stores = [e for e in r.stores_over(site, f.step) if e.cpu != cpu]
    racing = [e for e in stores if e.step > since] or stores[-1:]
    parts = []
    for e in racing:
        size = int(e.detail.split()[-1]) if e.detail.startswith("size ") else 4
        what = (f"`{r.dis(e.value & 0xFFFF_FFFF, site)}`" if size == 4 and e.addr == site
                else f"{e.value:#x} ({size} bytes at {r.image.symbolize(e.addr)})")
        how = r.op(e.cpu, e.step)
        parts.append(f"CPU{e.cpu} stored {what} over {r.sym(site)} at step {e.step}"
                     + (f" ({how})" if how else "") + ".")
    ran = r.iview_word(cpu, site, f.step)
    old, new = (*f.words, -1, -1)[:2]
    parts.append(r.last_sync(cpu, f.step) + (", before that store" if racing and
                                                syncs and syncs[-1][0] < racing[0].step
                                                else "")
                 + f". So at step {f.step} CPU{cpu} fetched {r.sym(site)} while it was being "
                 f"modified; its I-view held `{r.dis(ran, site)}`.")
    if r.has_accesses:
        loads = [a for a in r.of(cpu, before=f.step, after=racing[0].step if racing else -1,
                                 kind=AccessKind.LOAD) if not r.private(a)]
        if loads:
            parts.append(f"In between, CPU{cpu} {r.access(loads[-1], who=False)}.")
    bad = [f"`{r.dis(w, site)}`" for w in (old, new) if w >= 0 and not is_cmodx(w)]
    parts.append(f"{_list(bad) or 'The pair'} {'is' if len(bad) == 1 else 'are'} not among "
                 "the instructions the architecture lets one CPU modify while another "
                 "executes them (B, BL, NOP, BRK, SVC, ISB...), so the architecture promises "
                 "neither the old nor the new instruction there: the patcher must stop the "
                 "other CPUs first (stop_machine) or go through a BRK.")
    return parts


def _why_torn(r: _Run, f: Finding) -> list[str]:
    site, cpu = f.addr, f.cpu
    torn = f.words[0] if f.words else r.iview_word(cpu, site, f.step)
    stores = r.stores_over(site, f.step)
    pieces = []
    for e in stores:
        size = int(e.detail.split()[-1]) if e.detail.startswith("size ") else 4
        how = r.op(e.cpu, e.step)
        pieces.append(f"{e.value & ((1 << 8 * size) - 1):#0{2 + 2 * size}x} ({size} bytes) to "
                      f"{r.image.symbolize(e.addr)} at step {e.step}" + (f" ({how})" if how
                                                                          else ""))
    parts = []
    writers = sorted({e.cpu for e in stores})
    if pieces:
        parts.append(f"CPU{'/'.join(map(str, writers))} wrote {r.sym(site)} in {len(pieces)} "
                     f"piece{'s' if len(pieces) != 1 else ''}: {_list(pieces)}.")
    took = [e for e in r.evs(EventKind.CATCH_UP, cpu) if e.addr == site and e.step <= f.step
            and e.value == torn]
    fills = [e for e in r.evs(EventKind.FILL, cpu) if e.addr == site and e.step <= f.step
             and e.value == torn]
    if fills:
        e = fills[-1]
        parts.append(f"CPU{cpu}'s I-cache was filled {e.detail} at step {e.step}, between the "
                     f"stores, with the half-written word {torn:#010x}.")
    if took:
        e = took[-1]
        how = "a catch-up the scheduler chose" if e.detail == "chosen" else f"its {e.detail}"
        parts.append(f"CPU{cpu}'s I-view took {torn:#010x} at step {e.step}, by {how}.")
    old, final = r.initial(site), _final_word(r, site)
    parts.append(f"At step {f.step} CPU{cpu} executed {torn:#010x} at {r.sym(site)}: neither "
                 f"the old `{r.dis(old, site)}` nor the new `{r.dis(final, site)}`, a word no "
                 "single store wrote. An instruction must be written with one single-copy "
                 "atomic 32-bit store for another CPU to see old or new and nothing else.")
    return parts


def _final_word(r: _Run, addr: int) -> int:
    w = addr - layout.TEXT_BASE
    text = bytearray(r.result.initial_text[w:w + 4])
    for e in r.stores_over(addr):
        size = int(e.detail.split()[-1]) if e.detail.startswith("size ") else 4
        data = (e.value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        for i, byte in enumerate(data):
            if 0 <= e.addr + i - addr < 4:
                text[e.addr + i - addr] = byte
    return int.from_bytes(text, "little")


def _why_brk(r: _Run, f: Finding) -> list[str]:
    site, cpu = f.addr, f.cpu
    emulated, wanted = (*f.words, -1, -1)[:2]
    brks = [e for e in r.evs(EventKind.EXCEPTION, cpu)
            if e.addr == site and e.value >= 0 and (e.value >> 26) & 0x3F == EC_BRK64]
    erets = [e.step for e in r.evs(EventKind.ERET, cpu)]
    windows = [(e.step, next((s for s in erets if s > e.step), r.result.decisions + 1))
               for e in brks]
    # The BRK whose handler loaded the word it emulated.
    chosen = windows[-1] if windows else (f.step, f.step + 1)
    slot = None
    if r.has_accesses:
        for lo, hi in windows:
            hit = [a for a in r.of(cpu, after=lo, before=hi, kind=AccessKind.LOAD)
                   if a.size == 4 and emulated in a.loaded and not r.private(a)]
            if hit:
                chosen, slot = (lo, hi), hit[0]
                break
    brk, end = chosen
    parts = [f"CPU{cpu} hit the BRK at {r.sym(site)} at step {brk}"
             + (f" and its handler returned (ERET) at step {end}" if end <= r.result.decisions
                else "") + "."]
    if not r.has_accesses:
        parts.append(r.no_probe())
    else:
        # What the handler read that another CPU writes: the slot.
        shared = {w.addr for w in r.accesses if w.cpu != cpu and w.writes}
        loads = [a for a in r.of(cpu, after=brk, before=end, kind=AccessKind.LOAD)
                 if a.addr in shared or a is slot]
        if loads:
            parts.append("Its handler " + _list([r.access(a, who=False) for a in loads]) + ".")
        first = loads[0].step if loads else brk
        last = slot.step if slot is not None else (loads[-1].step if loads else end)
        touched = {a.addr for a in loads}
        moved = [w for w in r.of(None, after=brk, before=last, kind=AccessKind.STORE)
                 if w.cpu != cpu and w.addr in touched and w.writes]
        if moved:
            parts.append(f"Meanwhile, after the BRK (step {brk})"
                         + (f" and the handler's first load (step {first})" if loads else "")
                         + ", " + _list([r.access(w) for w in moved]) + ".")
        if slot is not None:
            src = [w for w in r.writes_to(slot, slot.step) if w.cpu != cpu]
            gave = [w for w in src if w.stored and w.stored[0] == emulated]
            if src and gave and gave[-1] is src[-1]:
                w = src[-1]
                parts.append(f"So the handler's load of {r.where(slot.addr)} at step "
                             f"{slot.step} returned {emulated:#x}, what CPU{w.cpu} had stored "
                             f"at step {w.step}" + (" (after the BRK)" if w.step > brk else "")
                             + ".")
            elif src:  # an older write than the latest: the Arm data-memory model's choice
                w = src[-1]
                older = (f"CPU{gave[-1].cpu}'s of step {gave[-1].step}" if gave
                         else "the initial value")
                parts.append(f"So the handler's load of {r.where(slot.addr)} at step "
                             f"{slot.step} returned {emulated:#x} ({older}), not the "
                             f"{w.stored[0] if w.stored else 0:#x} CPU{w.cpu} had stored at "
                             f"step {w.step}: nothing ordered that load after the store "
                             "(no acquire or barrier on the handler's side, no release on "
                             "the patcher's), so on Arm it may read the older value.")
    finals = {e.addr: e.value & 0xFFFF_FFFF for e in r.evs(EventKind.TEXT_STORE)
              if e.detail == "size 4"}
    other = [a for a, word in finals.items() if word == emulated and a != site]
    whose = (f"{r.sym(other[0])}'s instruction ({emulated:#010x}, which at {r.sym(site)} "
             f"reads `{r.dis(emulated, site)}`)" if other else
             f"{emulated:#010x} (`{r.dis(emulated, site)}`)")
    want = (f" instead of {wanted:#010x} (`{r.dis(wanted, site)}`), the instruction being "
            f"patched at {r.sym(site)}" if wanted >= 0 else "")
    parts.append(f"The handler emulated {whose}{want}"
                 + (": nothing the patcher waits for kept the slot while the handler read "
                    f"it, so the patcher moved on to {r.sym(other[0])} in between."
                    if other and slot is not None else "."))
    return parts


def _why_decode(r: _Run, f: Finding) -> list[str]:
    site, cpu = f.addr, f.cpu
    parts = []
    if len(f.words) >= 2:
        assumed, ran = f.words[0], f.words[1]
        parts.append(f"At step {f.step} CPU{cpu} ran `{r.dis(ran, site)}` ({ran:#010x}) at "
                     f"{r.sym(site)}; the decoder, which knows only the initial image, the "
                     f"text-poke records and CPU{cpu}'s trace, assumed `{r.dis(assumed, site)}`"
                     f" ({assumed:#010x}).")
    else:
        ran = f.words[0] if f.words else r.iview_word(cpu, site, f.step)
        parts.append(f"At step {f.step} CPU{cpu} ran {ran:#010x} at {r.sym(site)}, and the "
                     f"decoder lost its way there: {f.message}.")
    recs = [rec for rec in r.records if rec.addr == site]
    if len(recs) == 2 and (recs[0].old, recs[0].new) == (recs[1].old, recs[1].new):
        pre, post = recs[0].time, recs[1].time
        at = ("between them" if pre < f.step < post else "after POST" if f.step >= post
              else "before PRE")
        parts.append(f"The text-poke records of {r.sym(site)} ({_change(r, recs[0])}) are a "
                     f"PRE at step {pre} and a POST at step {post}; step {f.step} is {at}.")
    elif recs:
        parts.append(f"The text-poke records of {r.sym(site)} are at "
                     + _list([f"step {rec.time} ({_change(r, rec)})" for rec in recs]) + ".")
    elif r.records:
        parts.append(f"No text-poke record names {r.sym(site)}; the records are at "
                     f"{_steps(rec.time for rec in r.records)}.")
    took = [e for e in r.evs(EventKind.CATCH_UP, cpu) if e.addr == site and e.step <= f.step
            and e.value == ran]
    if took:
        e = took[-1]
        how = ("a catch-up the scheduler chose: no ISB, no exception, no ERET, nothing in "
               "its trace marks it") if e.detail == "chosen" else f"a catch-up at its {e.detail}"
        parts.append(f"CPU{cpu}'s I-view took that instruction at step {e.step}, by {how}.")
    after = min((rec.time for rec in recs), default=-1)
    exc = [e.step for e in r.evs(EventKind.EXCEPTION, cpu) if after < e.step <= f.step]
    parts.append(f"The decoder switches CPU{cpu} to a record's new bytes only at CPU{cpu}'s "
                 "first traced exception after the record; "
                 + (f"CPU{cpu} took exceptions at {_steps(exc)}" if exc else
                    f"CPU{cpu} took none between the record and step {f.step}")
                 + ". A record brackets the store, not the moment each other CPU starts "
                 "running the new instruction.")
    return parts


def _change(r: _Run, rec: TextPoke) -> str:
    if len(rec.old) == 4 and len(rec.new) == 4:
        old = int.from_bytes(rec.old, "little")
        new = int.from_bytes(rec.new, "little")
        return f"`{r.dis(old, rec.addr)}` -> `{r.dis(new, rec.addr)}`"
    return f"{len(rec.old)} -> {len(rec.new)} bytes"


def _where_cpus(r: _Run, f: Finding) -> list[str]:
    """liveness, guest-fault, kernel-die: where each CPU was and what it waited for."""
    parts = []
    end = f.step if f.step >= 0 else r.result.decisions + 1
    for cpu, seq in enumerate(r.truth):
        if not seq:
            parts.append(f"CPU{cpu} never ran.")
            continue
        step, addr, word = seq[-1]
        halted = any(e.kind is EventKind.HALT and e.cpu == cpu for e in r.events)
        text = (f"CPU{cpu} {'switched itself off after' if halted else 'was last at'} "
                f"`{r.dis(word, addr)}` in {r.image.symbolize(addr)} (step {step})")
        kind = classify(word).kind
        if kind is OpKind.WFI:
            text += ", waiting for an interrupt"
        if r.has_accesses and not halted:
            mine = [a for a in r.of(cpu, before=end + 1) if not r.private(a)]
            if mine:
                last = mine[-1]
                same = [a for a in mine if a.pc == last.pc and a.addr == last.addr]
                spin = 0
                for a in reversed(mine):
                    if a.pc != last.pc or a.addr != last.addr or a.loaded != last.loaded:
                        break
                    spin += 1
                if last.kind is AccessKind.LOAD and spin >= 3:
                    text += (f", waiting for {r.where(last.addr)} to change: it loaded "
                             f"{_hexes(last.loaded)} from it {spin} times in a row since step "
                             f"{same[-spin].step}")
                    ws = [w for w in r.writes_to(last, end + 1) if w.cpu != cpu]
                    text += (f"; the last store to it: {r.access(ws[-1])}" if ws else
                             "; no other CPU stored to it")
                else:
                    text += f"; its last access: it {r.access(last, who=False)}"
        parts.append(text + ".")
    if f.cpu >= 0:
        parts.append(r.last_sync(f.cpu, end) + ".")
    if not r.has_accesses:
        parts.append(r.no_probe())
    return parts


def _hexes(values: Sequence[int]) -> str:
    return ", ".join(_hex(v) for v in values) or "?"


def _generic(r: _Run, f: Finding) -> list[str]:
    """A scenario's own oracle: the finding's step, the CPU's last accesses and its last
    context synchronization."""
    end = f.step if f.step >= 0 else r.result.decisions + 1
    where = f" at {r.sym(f.addr)}" if f.addr >= 0 else ""
    parts = [f"The {f.oracle} finding is dated step {end}" + (f", on CPU{f.cpu}" if f.cpu >= 0
                                                             else "") + where + "."]
    cpus = [f.cpu] if f.cpu >= 0 else list(range(len(r.truth)))
    for cpu in cpus:
        if r.has_accesses:
            mine = [a for a in r.of(cpu, before=end + 1) if not r.private(a)][-3:]
            if mine:
                parts.append(f"CPU{cpu}'s last accesses: " + _list([r.access(a, who=False)
                                                                     for a in mine]) + ".")
        parts.append(r.last_sync(cpu, end + 1) + ".")
    if f.addr >= 0 and layout.TEXT_BASE <= f.addr < layout.TEXT_BASE + layout.TEXT_MAX:
        stores = r.stores_over(f.addr, end)
        if stores:
            parts.append(f"{r.sym(f.addr)} was stored to at {_steps(e.step for e in stores)} "
                         f"(by CPU{'/'.join(sorted({str(e.cpu) for e in stores}))}).")
    if not r.has_accesses:
        parts.append(r.no_probe())
    return parts


def _why_uaf(r: _Run, f: Finding) -> list[str]:
    """use-after-free: who freed the object (the stores of kfree()'s poison) and where
    the reader had the pointer from."""
    m = re.match(r"CPU\d+ reads (\S+?)(?:\+(0x[0-9a-f]+))? at ", f.message)
    try:
        base = r.image.addr(m.group(1)) if m else None
    except KeyError:
        base = None
    if base is None:
        return _where_cpus(r, f)
    at = base + (int(m.group(2), 16) if m and m.group(2) else 0)
    op = r.op(f.cpu, f.step) or r.image.symbolize(f.addr)
    parts = [f"CPU{f.cpu} read {r.where(at)} at step {f.step} ({op}) and got kfree()'s "
             "poison: the object had been freed before this load."]
    if not r.has_accesses:
        return [*parts, r.no_probe()]
    # a poisoned doubleword: all POISON_FREE, or ending with POISON_END (the last one)
    poison = {int.from_bytes(slab.poison(16)[i:i + 8], "little") for i in (0, 8)}
    frees = [a for a in r.accesses if a.writes and a.step <= f.step and a.stored
             and all(v in poison for v in a.stored) and base <= a.addr < base + 64]
    if frees:
        first = frees[0]
        parts.append(f"CPU{first.cpu} freed it: kfree() filled it with the poison from step "
                     f"{first.step} ({r.op(first.cpu, first.step)}).")
    held = [a for a in r.of(f.cpu, before=f.step, kind=AccessKind.LOAD)
            if any(base <= v < base + 64 for v in a.loaded)]
    if held:
        parts.append(f"CPU{f.cpu} had the pointer from before: it "
                     + r.access(held[-1], who=False) + ".")
    parts.append("A CPU may keep using an object until it passes the point the freeing side "
                 "waits for (a grace period: every CPU past a quiescent state); freed sooner, "
                 "the memory can hold another object by the time the CPU reads it.")
    return parts


_STORIES: dict[str, Callable[[_Run, Finding], list[str]]] = {
    OracleName.STALE_AFTER_FLUSH: _why_stale,
    OracleName.STATIC_KEY_INCOHERENCE: _why_stale,
    OracleName.CMODX_VIOLATION: _why_cmodx,
    OracleName.TORN_WORD: _why_torn,
    OracleName.BRK_EMULATION: _why_brk,
    OracleName.TRACE_DECODE: _why_decode,
    OracleName.LIVENESS: _where_cpus,
    OracleName.GUEST_FAULT: _where_cpus,
    OracleName.KERNEL_DIE: _where_cpus,
    OracleName.USE_AFTER_FREE: _why_uaf,
}


def explain(result: RunResult, image: Image, finding: Finding,
            accesses: Sequence[Access] | None = None, *,
            records: Sequence[TextPoke] = ()) -> list[str]:
    """Paragraphs saying how ``finding`` happened in ``result``, from its events, ground
    truth and (when given, from an ``AccessProbe``) data accesses; ``records``: the
    text-poke records the guest wrote (``textpoke.read_ring``), for trace-decode."""
    run = _Run(result, image, accesses, records)
    story = _STORIES.get(str(finding.oracle), _generic)
    if finding.step < 0:  # judged on the final state, undated: the end of the run
        finding = replace(finding, step=result.decisions + 1)
    return story(run, finding)


def explain_lines(result: RunResult, image: Image, accesses: Sequence[Access] | None = None,
                  *, records: Sequence[TextPoke] = (), width: int = 88) -> list[str]:
    """The why of every finding of ``result`` (one per oracle and address), wrapped to
    ``width`` columns: what ``testbed replay --timeline`` prints after the timeline.
    One finding: ``Why: ...`` as the demos print it; several: a ``Why (ORACLE, step
    N): ...`` paragraph each, separated by an empty line."""
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for f in result.findings:
        if (str(f.oracle), f.addr) not in seen:
            seen.add((str(f.oracle), f.addr))
            findings.append(f)
    out: list[str] = []
    for f in findings:
        why = explain(result, image, f, accesses, records=records)
        head = "Why: " if len(findings) == 1 else f"Why ({f.oracle}, step {f.step}): "
        if out:
            out.append("")
        out += textwrap.wrap(head + " ".join(why), width, break_on_hyphens=False) or [""]
    return out


class Explained(NamedTuple):
    """A replay with the access probe (``explain_replay``): unpacks as ``result,
    accesses, lines, records``."""

    result: RunResult
    accesses: list[Access]
    lines: list[str]  # the why of each finding, wrapped: printed as they are
    records: Sequence[TextPoke] = ()  # the guest's text-poke records, if it keeps any


def explain_replay(session: Session, schedule: Schedule) -> Explained:
    """Replay ``schedule`` exactly, with the access probe, and explain its findings.

    The run is the same as ``session.replay(schedule)`` (same decisions, same trace).
    ``lines`` is what ``testbed replay --timeline`` prints after the timeline (which is
    ``timeline.render(result, image, ncpus, accesses=accesses)``): the why of each
    finding, wrapped, ready to print (no lines when nothing was found)."""
    probe = AccessProbe()
    result = session.replay(schedule, wrap=probe)
    accesses = probe.accesses
    records = records_of(session.machine)
    lines = explain_lines(result, session.image, accesses, records=records)
    return Explained(result, accesses, lines, records)
