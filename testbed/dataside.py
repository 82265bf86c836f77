"""The machine's data side under the Arm model (``--memory arm``): ``armmem`` driven by
the emulator, one visible operation at a time.

Under ``sc`` every load reads the host buffer, which is what every CPU sees.  Under
``arm`` the buffers of the shared data, the per-CPU areas and the text's D-side (the
*modelled* memory) hold each 8-byte granule's latest message of ``armmem.ArmMemory``,
and this module does what the machine must around each access there (``access``),
each barrier (``barrier``), and each stretch of code between them (``track``):

- a **load** (``LDR``, ``LDP``, ``LDAR``, ``LDAPR``, ``LDXR``...) reads the latest
  message when a CPU simply steps; a model decision ``READ`` makes it read an older
  message the model allows (R1, R2): that message's bytes are put in the buffer, the
  emulator executes the one instruction, and the latest bytes go back.  The registers
  it loads take the read's view (R3-R5);
- a **store** is executed by the emulator on the latest bytes; each granule it wrote
  becomes a message (W1-W3), or fulfils a promise of the CPU's (P2), and the buffer is
  set to the granule's latest message again (a fulfilled promise may be older);
- a **store-exclusive** is performed here, not by the emulator: it succeeds only if the
  model allows (W4); a model decision ``FAIL`` makes it fail where it could succeed
  (the architecture allows a spurious failure);
- an **atomic** (``CAS``, ``SWP``, ``LD<op>``, ``ST<op>``) reads the latest message and
  writes right after it (A1); a ``CAS`` whose comparison fails only reads;
- ``DMB``/``DSB`` (B1) by their type: ``LD``, ``ST`` or full; ``ISB``, exception entry
  and ``ERET`` (context synchronization events) apply B2;
- the instructions between visible operations carry register views (``deps.apply``):
  data and address dependencies, and conditional branches' control views (C1);
- an IPI carries the sender's write view to the value the receiver acknowledges (I1,
  I2);
- the **text** is modelled memory too, through its address and its writable alias
  (one location per granule, named by the text address): a load of it (a literal,
  ``aarch64_insn_read``) is a load like any other, and a store to it, which the text
  side performs (``textside.text_store``), becomes a message with the views this module
  leaves in ``Cpu.text_write`` (it is never promised; exclusives and atomics on the
  text are not modelled);
- a CPU about to execute a word stores touched is ordered after the W2 view of the
  store it fetched (F1, ``execute.step``); a ``DC`` that cleans a text line may clean
  it as it was at an earlier time (F2: ``clean_choices``, a ``READ`` decision on the
  ``DC``; the fetch model's rule 10 through ``TextHistory``); cache maintenance
  completes at the issuing CPU's ``DSB`` (fetch rule 9 in ``memory.py``, driven from
  ``execute.step``).

Promises (P1-P3) let a store become visible before program-order-earlier accesses of
its CPU (load buffering, and the writer side of message passing: ``MP+po+addr``).
What a CPU may promise is what a solo run of it from the current state stores
(``promise_choices``).  Two modes:

- **promise-first** (``Machine(promises=True)``, litmus tests): only while no CPU has
  done anything else, as in the Promising-ARM paper's checker (every execution of the
  model has an equivalent one whose promises all come first, since a promise only
  appends a message and the later steps read and fulfil against the same order); an
  unfulfilled promise at the end makes the run no execution (P3).  Only stores that a
  barrier does not order after every earlier access of the solo run are offered
  (``_unordered``): the others' promises give no execution the plain store does not;
- **at any point** (``Machine(promises="anytime")``, scenarios with
  ``Session(promises=True)`` / ``--promises``): a scenario's stores are thousands of
  instructions in, beyond any solo run from the start.  A CPU whose next operation is an
  access to the shared data (``.data``) may promise a later store its solo run makes to
  the shared data before the next barrier that orders that access before stores
  (``DMB ST``/full for a store, ``DMB LD``/full for a load), each location's first
  store only (a store cannot pass the CPU's own earlier store to its location), one
  outstanding promise per CPU, and only one a second solo run with the promise made
  fulfils (the paper's certification; the solo run reads as a plain step does, never
  the CPU's own outstanding promise, ``_unpromised``).  The run still ends invalid if
  the promise is left unfulfilled (the other CPUs changed what it reads), and an
  invalid run has no finding (``Session.run``).  Each restriction only removes
  executions, never adds one: on ``tests/data/litmus/arm_rules`` both modes give
  herd7's verdicts (``tests/test_dataside.py``).  Without promises a scenario's stores
  become visible in program order, so a writer-side ordering (a release, a ``DMB ST``
  between two stores) is never shown needed.

Accesses elsewhere (the CPU's stack through a register other than SP, the interrupt
controller) and literal loads (``LDR`` literal, not a visible operation: they read the
latest bytes) stay sequentially consistent; a load from a stack takes the view of what
the CPU stored there (``ThreadState.spill``), the acknowledge register I2's view, other
loads from the interrupt controller the bottom view.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from unicorn import arm64_const as A

from . import layout, trace
from .access import Plan, decode_access, effective_address, slot
from .armmem import GRANULE, ArmMemory, ReadOrd, ThreadState, WriteOrd, granules
from .cpu import NO_COUNT, UNTIL, XREG, Cpu, CpuState, UcError, owns
from .deps import apply
from .findings import EventKind, OracleName
from .isa import MemKind, MemOp, OpKind, classify
from .schedule import Decision, DecisionKind, step
from .textside import restore_text_reads, text_offset

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["Access", "ModelChoiceError", "TextHistory", "access", "barrier", "choices",
           "clean_choices", "decode", "pack", "promise", "promise_choices", "track", "unpack"]

_UNPACK = struct.Struct("<32Q").unpack_from
TS_BITS = 20  # a READ decision packs one timestamp per granule, 20 bits each
MAX_GRANULES = 3
_Buf = bytearray | memoryview
_Locs = list[tuple[int, _Buf, int, int, int]]  # see _locs


class ModelChoiceError(Exception):
    """A READ, FAIL or PROMISE decision that is not possible now."""


@dataclass(frozen=True, slots=True)
class Access:
    """One load/store word, decoded once: what it does and which register slots give
    its address, supply its data and receive its result (slots as ``deps``: 0-30, SP
    31; the zero register is left out)."""

    op: MemOp
    plan: Plan
    addr_slots: tuple[int, ...]
    data_slots: tuple[int, ...]
    dest_slots: tuple[int, ...]
    nbytes: int


def _slots(names: tuple[str, ...]) -> tuple[int, ...]:
    out = []
    for n in names:
        s = slot(n)
        if s is not None and s[0] >= 0:
            out.append(s[0])
    return tuple(out)


@lru_cache(maxsize=4096)
def decode(word: int) -> Access | None:
    """The access ``word`` makes, or ``None`` if the model cannot describe it."""
    info = classify(word)
    op, plan = info.mem, decode_access(word)
    if op is None or plan is None:
        return None
    addr = _slots((plan.base, plan.index) if plan.index else (plan.base,))
    data = _slots(plan.sources + plan.new)
    dests = () if op.kind is MemKind.STORE else _slots(plan.dests)
    if op.simd:  # SIMD&FP registers carry no tracked views (deps.py): a store of one has
        data, dests = (), ()  # no data view (the kernels and litmus tests use none)
    return Access(op, plan, addr, data, dests, op.size * op.count)


def _region(m: Machine, addr: int, size: int,
            text: bool = False) -> tuple[_Buf, int, int] | None:
    """The modelled buffer holding [addr, addr + size): (buffer, offset in it, the
    address its locations are named by).  ``text``: the text is modelled too, through
    the text address or its writable alias (both name one location, by the text
    address): for plain and acquire loads, whose stores the text side performs."""
    if addr >= layout.DATA_BASE and addr + size <= layout.DATA_BASE + len(m.data):
        return m.data, addr - layout.DATA_BASE, layout.DATA_BASE
    if addr >= layout.PERCPU_BASE and addr + size <= layout.PERCPU_BASE + len(m.percpu):
        return m.percpu, addr - layout.PERCPU_BASE, layout.PERCPU_BASE
    if text:
        for base in (layout.TEXT_BASE, layout.TEXT_ALIAS):
            if addr >= base and addr + size <= base + m.text_size:
                return m.dside_text, addr - base, layout.TEXT_BASE
    return None


def _text_load(op: MemOp) -> bool:
    """Whether an access to the text is modelled here: a load (not exclusive); the text
    side performs stores to the text and makes their messages (``textside``)."""
    return op.kind is MemKind.LOAD and not op.exclusive


def pack(stamps: list[int]) -> int:
    out = 0
    for i, ts in enumerate(stamps):
        out |= ts << (TS_BITS * i)
    return out


def unpack(choice: int, n: int) -> list[int]:
    mask = (1 << TS_BITS) - 1
    return [(choice >> (TS_BITS * i)) & mask for i in range(n)]


def _read_ord(op: MemOp) -> ReadOrd:
    if op.acquire:
        return ReadOrd.ACQUIRE
    return ReadOrd.ACQUIRE_PC if op.acquire_pc else ReadOrd.PLAIN


def pending_access(m: Machine, c: Cpu) -> tuple[Access, int, tuple[int, ...]] | None:
    """The modelled access ``c`` performs next: (what, address, register values); the
    text is modelled for plain and acquire loads (``_region``)."""
    if c.exc is not None or c.kind_at.get(c.pc) != 1:  # OpKind.MEMORY
        return None
    off = c.pc - layout.TEXT_BASE
    a = decode(int.from_bytes(m.iviews[c.index][off:off + 4], "little"))
    if a is None:
        return None
    regs = _UNPACK(c.read_regs())
    ea, _ = effective_address(a.plan, regs)
    if (c.private and owns(c, ea, a.nbytes)) or _region(m, ea, a.nbytes,
                                                          _text_load(a.op)) is None:
        return None
    return a, ea, regs


def _locs(m: Machine, ea: int, n: int) -> _Locs:
    """(loc, buffer, offset of the granule in it, offset in the granule, bytes)."""
    arm = m.arm
    assert arm is not None
    out = []
    for g, goff, k in granules(ea, n):
        where = _region(m, g, GRANULE, True)
        assert where is not None  # the buffers are whole granules long
        buf, off, base = where
        loc = base + off
        arm.know(loc, bytes(buf[off:off + GRANULE]))
        out.append((loc, buf, off, goff, k))
    return out


# -- what the scheduler may choose ------------------------------------------------------
def choices(m: Machine, c: Cpu) -> list[Decision]:
    """The model decisions of ``c``'s next access: READs of a load (or of an atomic that
    may fulfil a promise), FAIL of a store-exclusive that could succeed."""
    if c.exc is None and c.kind_at.get(c.pc) is OpKind.DC:
        return [Decision(DecisionKind.READ, c.index, t) for t in clean_choices(m, c)]
    p = pending_access(m, c)
    if p is None:
        return []
    a, ea, _ = p
    if a.op.kind is MemKind.STORE:
        return [Decision(DecisionKind.FAIL, c.index)] if _can_fail(m, c, a, ea) else []
    return [Decision(DecisionKind.READ, c.index, packed)
            for packed in _read_choices(m, c, a, ea)]


def _read_choices(m: Machine, c: Cpu, a: Access, ea: int) -> list[int]:
    """Each a packed timestamp per granule: every combination the model allows but the
    all-latest one (a plain STEP)."""
    arm = m.arm
    assert arm is not None
    th = arm.threads[c.index]
    if a.op.kind is MemKind.RMW and not any(
            arm.msgs[ts - 1][0] == g for ts in th.promises
            for g, _, _ in granules(ea, a.nbytes)):
        return []  # an atomic reads an older message only to fulfil a promise (P2)
    views = th.regs
    vaddr = max((views[s] for s in a.addr_slots), default=0)
    ordr = _read_ord(a.op)
    lists = [arm.readable(c.index, loc, vaddr, ordr)
             for loc, *_ in _locs(m, ea, a.nbytes)[:MAX_GRANULES]]
    if all(len(ts) == 1 for ts in lists) or any(t[-1] >> TS_BITS for t in lists):
        return []
    combos: list[list[int]] = [[]]
    for ts in lists:
        combos = [[*co, t] for co in combos for t in ts]
    default = [_unpromised(th, t) for t in lists] if m.anytime else [t[-1] for t in lists]
    return [pack(co) for co in combos if co != default]


def _unpromised(th: ThreadState, readable: list[int]) -> int:
    """What a plain STEP reads with promises at any time: the latest message readable
    that is not one of the CPU's own outstanding promises (reading one is never an
    execution: coherence would pass the promise, P3)."""
    return next((ts for ts in reversed(readable) if ts not in th.promises), readable[-1])


def _default_read(m: Machine, tid: int, locs: _Locs, latest: list[int], vaddr: int,
                  ordr: ReadOrd) -> list[int]:
    """The timestamps a plain STEP's load reads: the latest messages, or with promises at
    any time the latest that are not the CPU's own (``_unpromised``)."""
    arm = m.arm
    assert arm is not None
    th = arm.threads[tid]
    if not m.anytime or not th.promises:
        return latest
    return [_unpromised(th, arm.readable(tid, loc, vaddr, ordr)) if ts in th.promises
            else ts for (loc, *_), ts in zip(locs, latest, strict=True)]


class TextHistory:
    """The text's stores in the Arm model's order, for the fetch model's rule 10."""

    def __init__(self, arm: ArmMemory, initial: bytes) -> None:
        self.arm = arm
        self.initial = initial

    def now(self) -> int:
        return len(self.arm.msgs)

    def line_at(self, line: int, size: int, t: int) -> bytes:
        arm, out = self.arm, b""
        for g in range(line, line + size, GRANULE):
            loc = layout.TEXT_BASE + g
            out += (arm.value(loc, arm.last_at_or_below(loc, t)) if loc in arm.initial
                    else self.initial[g:g + GRANULE])
        return out


_CLEANS = frozenset({"cvau", "cvac", "civac", "cvap", "cvadp"})  # all clean to the PoU


def clean_choices(m: Machine, c: Cpu) -> list[int]:
    """F2: the times as of which ``c``'s next instruction, a ``DC`` that cleans a text
    line to the PoU (IDC=0), may clean it, but the latest (a plain STEP): the first
    time it may (``ArmMemory.clean_view``, and no earlier than the PoU's own time,
    rule 10), then each later store to the line but the last."""
    model, arm = m.model, m.arm
    if arm is None or model.pou_shared:
        return []
    off = c.pc - layout.TEXT_BASE
    info = classify(int.from_bytes(m.iviews[c.index][off:off + 4], "little"))
    if info.op not in _CLEANS:
        return []
    va = c.regs.read(XREG[info.rt]) if info.rt != 31 else 0
    where = text_offset(m, va)
    if where is None:
        return []
    dline = model.config.dline
    line = where & ~(dline - 1)
    locs = [layout.TEXT_BASE + g for g in range(line, line + dline, GRANULE)]
    th = arm.threads[c.index]
    low = max(arm.clean_view(c.index, th.regs[info.rt] if info.rt != 31 else 0, locs),
              model.pou_time.get(line, 0))
    later = sorted(ts for loc in locs for ts in arm.by_loc.get(loc, ()) if ts > low)
    return [low, *later[:-1]] if later else []


def read_bytes(m: Machine, addr: int, size: int, read: int) -> bytes | None:
    """The bytes a load of ``size`` at ``addr`` sees under the READ decision ``read``
    (packed timestamps, one per granule), for timelines; ``None`` outside the modelled
    memory."""
    arm = m.arm
    if arm is None or _region(m, addr, size, True) is None:
        return None
    parts = granules(addr, size)
    stamps = unpack(read, min(len(parts), MAX_GRANULES))
    out = b""
    for i, (g, goff, k) in enumerate(parts):
        where = _region(m, g, GRANULE, True)
        assert where is not None
        buf, off, base = where
        loc = base + off
        value = (arm.value(loc, stamps[i]) if i < len(stamps) and loc in arm.initial
                 else bytes(buf[off:off + GRANULE]))
        out += value[goff:goff + k]
    return out


def _can_fail(m: Machine, c: Cpu, a: Access, ea: int) -> bool:
    """Whether a store-exclusive could succeed now (and so may also fail spuriously)."""
    if not a.op.exclusive:
        return False
    arm = m.arm
    assert arm is not None
    return all(arm.exclusive_ok(c.index, g) for g, _, _ in granules(ea, a.nbytes))


# -- performing one access ---------------------------------------------------------------
def access(m: Machine, c: Cpu, pc: int, read: int | None = None,
           fail: bool = False) -> int | None:
    """Perform ``c``'s access at ``pc`` under the model; where ``c`` goes on from, -1 if
    it stopped (a fault), ``None`` if the access is not to modelled memory (the caller
    runs it as under ``sc``).  ``read``: a READ decision's packed timestamps; ``fail``:
    a FAIL decision."""
    arm = m.arm
    assert arm is not None
    off = pc - layout.TEXT_BASE
    word = int.from_bytes(m.iviews[c.index][off:off + 4], "little")
    a = decode(word)
    if a is None:
        if read is not None or fail:
            raise ModelChoiceError("the next operation is not an access the model describes")
        return None
    regs = _UNPACK(c.read_regs())
    ea, vals = effective_address(a.plan, regs)
    tid = c.index
    th = arm.threads[tid]
    views = th.regs
    # The CPU's private data is not the model's, as its stack is not, whether the code
    # hook let an access there run (a plain one: ``track``) or it stopped (acquire,
    # release, exclusive, atomic: ``_unmodelled``).
    where = None if c.private and owns(c, ea, a.nbytes) else \
        _region(m, ea, a.nbytes, _text_load(a.op))
    if where is None:
        if read is not None or fail:
            raise ModelChoiceError("the next access is not to modelled memory")
        _unmodelled(m, c, a, ea)
        if a.op.kind is not MemKind.LOAD:  # perhaps a store to the text (textside)
            c.text_write = (max((views[s] for s in a.addr_slots), default=0),
                            max((views[s] for s in a.data_slots), default=0),
                            WriteOrd.RELEASE if a.op.release else WriteOrd.PLAIN)
        return None
    vaddr = max((views[s] for s in a.addr_slots), default=0)
    op = a.op
    locs = _locs(m, ea, a.nbytes)
    if m.solo_stores is not None and op.kind is not MemKind.STORE:
        m.solo_stores.append((tid, -1, b""))  # a read: see promise_choices
    if op.kind is MemKind.LOAD:
        ordr = _read_ord(op)
        latest = [arm.latest(loc) for loc, *_ in locs]
        default = _default_read(m, tid, locs, latest, vaddr, ordr)
        stamps = default if read is None else _chosen(arm, tid, locs, read, default,
                                                      vaddr, ordr)
        swapped = []
        for (loc, buf, boff, _, _), ts, top in zip(locs, stamps, latest, strict=True):
            if ts != top:
                swapped.append((buf, boff, bytes(buf[boff:boff + GRANULE])))
                buf[boff:boff + GRANULE] = arm.value(loc, ts)
        text = where[0] is m.dside_text
        c.text_read_mode = text  # a load from the text address sees the D-side's bytes
        try:
            nxt = _execute(m, c, pc)
        finally:
            if text:
                c.text_read_mode = False
                restore_text_reads(m, c)
            for buf, boff, old in swapped:
                buf[boff:boff + GRANULE] = old
        if nxt < 0:
            return nxt
        got = [arm.read(tid, loc, ts, vaddr, ordr, op.exclusive)[1]
               for (loc, *_), ts in zip(locs, stamps, strict=True)]
        dests = a.dest_slots
        if len(dests) == 2 and len(got) == 2 and op.size == GRANULE:
            views[dests[0]], views[dests[1]] = got
        else:
            for d in dests:
                views[d] = max(got)
        if read is not None:
            m.add_event(tid, EventKind.READ, ea, stamps[0],
                        "reads " + ", ".join(f"message {t} of {loc:#x}"
                                             for (loc, *_), t in zip(locs, stamps, strict=True)))
        return nxt
    if read is not None and op.kind is MemKind.STORE:
        raise ModelChoiceError("the next access is not a load")
    vdata = max((views[s] for s in a.data_slots), default=0)
    if op.kind is MemKind.STORE and op.exclusive:
        return _store_exclusive(m, c, pc, a, locs, regs, vaddr, vdata, fail)
    if fail:
        raise ModelChoiceError("the next access is not a store-exclusive")
    if op.kind is MemKind.STORE:
        nxt = _execute(m, c, pc)
        if nxt < 0:
            return nxt
        ordw = WriteOrd.RELEASE if op.release else WriteOrd.PLAIN
        for loc, buf, boff, _, _ in locs:
            _store(m, tid, loc, buf, boff, vaddr, vdata, ordw, False)
        return nxt
    # An atomic read-modify-write (A1): reads the latest message and writes right after
    # it, or (a READ decision) reads an older one and fulfils a promise right after it.
    cas = op.op == "cas"
    noret = (op.rs if cas else op.rt) == 31  # A2: ST<op>, XZR destination or compare
    ordr = ReadOrd.ACQUIRE if op.acquire and not noret else ReadOrd.PLAIN
    latest = [arm.latest(loc) for loc, *_ in locs]
    stamps = latest if read is None else _chosen(arm, tid, locs, read, latest, vaddr, ordr)
    before = [arm.value(loc, ts) for (loc, *_), ts in zip(locs, stamps, strict=True)]
    swapped = [(buf, boff, bytes(buf[boff:boff + GRANULE]))
               for (loc, buf, boff, _, _), ts, top in zip(locs, stamps, latest, strict=True)
               if ts != top]
    for (_, buf, boff, _, _), value in zip(locs, before, strict=True):
        buf[boff:boff + GRANULE] = value  # the message read (the latest but for READ)
    try:
        nxt = _execute(m, c, pc)
        after = [bytes(buf[boff:boff + GRANULE]) for _, buf, boff, _, _ in locs]
    finally:
        for buf, boff, old in swapped:
            buf[boff:boff + GRANULE] = old
    if nxt < 0:
        return nxt
    got = [arm.read(tid, loc, ts, vaddr, ordr, True, noret)[1]
           for (loc, *_), ts in zip(locs, stamps, strict=True)]
    rview = max(got)
    plan = a.plan
    operand = max((views[s] for s in _slots(plan.sources)), default=0)
    if cas:
        old = b"".join(b[goff:goff + k] for b, (_, _, _, goff, k) in zip(before, locs,
                                                                         strict=True))
        cmp = b"".join((vals[2 + i] or 0).to_bytes(8, "little")[:op.size]
                       for i in range(op.count))
        if old != cmp:  # failed (A3): a read only; the result registers take its view
            for d in a.dest_slots:
                views[d] = rview
            if stamps != latest:
                _invalid(m, "an atomic read an older message and wrote nothing")
            return nxt
        # succeeded (A3): each result register holds its compare value, which the CPU
        # may take from the register or from memory: for later reads it depends on
        # whichever came first; later writes wait for the read (control-like), and its
        # own write for the compare value too
        for d in a.dest_slots:
            views[d] = min(views[d], rview)
        arm.control(tid, rview)
        vctl = operand  # whether it writes at all depends on the compare value
        vdata = max((views[s] for s in _slots(plan.new)), default=0)
    else:
        for d in a.dest_slots:
            views[d] = rview
        vdata, vctl = operand, 0
    vdata = max(vdata, rview)  # A1: a read of this write (forwarded) is after the read
    ordw = WriteOrd.RELEASE if op.release else WriteOrd.PLAIN
    for i, ((loc, buf, boff, _, _), value) in enumerate(zip(locs, after, strict=True)):
        _store(m, tid, loc, buf, boff, vaddr, vdata, ordw, i == 0, value, vctl)
    return nxt


def _chosen(arm: ArmMemory, tid: int, locs: _Locs,
            read: int, latest: list[int], vaddr: int, ordr: ReadOrd) -> list[int]:
    """A READ decision's timestamps, each checked readable (R1, R2)."""
    n = min(len(locs), MAX_GRANULES)
    stamps = unpack(read, n) + latest[n:]
    for (loc, *_), ts in zip(locs, stamps, strict=True):
        if ts not in arm.readable(tid, loc, vaddr, ordr):
            raise ModelChoiceError(f"message {ts} of {loc:#x} is not readable now")
    return stamps


def _invalid(m: Machine, why: str) -> None:
    """The run is not an execution of the model (a promise can no longer be kept, an
    atomic that read an older message cannot write right after it): it ends, with no
    outcome and no finding (``Machine.valid``)."""
    m.invalid = why
    m.stopped = True


def _store(m: Machine, tid: int, loc: int, buf: _Buf, boff: int, vaddr: int,
           vdata: int, ordw: WriteOrd, ex: bool, value: bytes | None = None,
           vctl: int = 0) -> None:
    """The granule's new bytes (``value``, else the buffer's) become a message, or fulfil
    a promise (P2); the buffer holds the latest message again."""
    arm = m.arm
    assert arm is not None
    if value is None:
        value = bytes(buf[boff:boff + GRANULE])
    fl = arm.fulfillable(tid, loc, value, vaddr, vdata, ordw, ex, vctl)
    if fl:
        arm.write(tid, loc, value, vaddr, vdata, ordw, ex, fl[0], vctl)
    elif ex and not arm.exclusive_ok(tid, loc):
        _invalid(m, f"an atomic's write to {loc:#x} can neither follow its read nor "
                 "fulfil a promise")
        return
    else:
        arm.write(tid, loc, value, vaddr, vdata, ordw, ex, vctl=vctl)
    buf[boff:boff + GRANULE] = arm.value(loc, arm.latest(loc))
    if m.solo_stores is not None:
        m.solo_stores.append((tid, loc, value))


def _store_exclusive(m: Machine, c: Cpu, pc: int, a: Access,
                     locs: _Locs, regs: tuple[int, ...],
                     vaddr: int, vdata: int, fail: bool) -> int:
    """W4, in Python: the emulator's own monitor knows nothing of older messages."""
    arm = m.arm
    assert arm is not None
    tid, op = c.index, a.op
    ok = all(arm.exclusive_ok(tid, loc) for loc, *_ in locs)
    if fail and not ok:
        raise ModelChoiceError("the store-exclusive fails anyway: no spurious failure to choose")
    if ok and not fail:
        data = b"".join((regs[r] if r != 31 else 0).to_bytes(8, "little")[:op.size]
                        for r in (op.rt, op.rt2)[:op.count])
        ordw = WriteOrd.RELEASE if op.release else WriteOrd.PLAIN
        pos = 0
        for i, (loc, buf, boff, goff, k) in enumerate(locs):
            buf[boff + goff:boff + goff + k] = data[pos:pos + k]
            pos += k
            _store(m, tid, loc, buf, boff, vaddr, vdata, ordw, i == 0)
    else:
        arm.fail_exclusive(tid)
    if op.rs != 31:
        c.regs.write(XREG[op.rs], 0 if ok and not fail else 1)
        arm.threads[tid].regs[op.rs] = 0  # W4: the status has the bottom view
    c.log.append((m.step_no, pc, pc + 4))
    return pc + 4


def _execute(m: Machine, c: Cpu, pc: int) -> int:
    """Let the emulator execute the one instruction at ``pc``; where it goes on, -1 on
    a fault (a finding)."""
    c.skip = pc
    c.counting = True  # (cpu.Cpu.left)
    c.left = NO_COUNT  # Unicorn counts the one step
    c.stepping = True  # (cpu._block_hook)
    try:
        c.start(pc, UNTIL, 1)
    except UcError as e:
        where = c.regs.read(A.UC_ARM64_REG_PC)
        trace.cut(c.log, where)
        m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} faults at "
                      f"{m.image.symbolize(where)}: {e}", where)
        return -1
    finally:
        c.stepping = False
    if c.hook_error is not None:
        raise RuntimeError("internal error in a code hook") from c.hook_error
    nxt: int = c.regs.read(A.UC_ARM64_REG_PC)
    trace.cut(c.log, nxt)
    return nxt


def _unmodelled(m: Machine, c: Cpu, a: Access, ea: int) -> None:
    """The register views of an access outside the modelled memory (run as under sc)."""
    arm = m.arm
    assert arm is not None
    th = arm.threads[c.index]
    views = th.regs
    on_stack = any(layout.stack_top(i) - layout.STACK_SIZE <= ea < layout.stack_top(i)
                   for i in range(len(m.cpus))) or owns(c, ea, a.nbytes)
    if a.op.kind is not MemKind.LOAD:
        if on_stack:
            th.spill = max(th.spill, *(views[s] for s in a.data_slots), 0)
        if a.op.kind is MemKind.STORE:
            return
    view = th.spill if on_stack else 0
    if ea == layout.GIC_BASE + layout.GIC_ACK:
        view = arm.acknowledge(c.index)  # I2
    for d in a.dest_slots:
        views[d] = view


# -- barriers and the code between visible operations -------------------------------------
def barrier(m: Machine, c: Cpu, word: int) -> None:
    """``DMB``/``DSB`` (B1): CRm's low bits give the type (01 LD, 10 ST, 11 all; the
    00 forms, reserved or speculation barriers, are taken as full: more order)."""
    arm = m.arm
    assert arm is not None
    kind = (word >> 8) & 3
    if m.solo_stores is not None:  # a barrier (-2 full, -3 LD, -4 ST): promise_choices
        m.solo_stores.append((c.index, -2 - (kind == 1) - 2 * (kind == 2), b""))
    if kind == 1:
        arm.dmb(c.index, rr=True, rw=True, wr=False, ww=False)
    elif kind == 2:
        arm.dmb(c.index, rr=False, rw=False, wr=False, ww=True)
    else:
        arm.dmb(c.index)


def track(m: Machine, c: Cpu, start: int, skip: int = -1) -> None:
    """Carry register views through what ``c`` ran since its log had ``start`` entries
    (``deps.apply``); a conditional branch's control view goes to the model (C1).
    ``skip``: the visible operation the run began with, whose views ``access`` set."""
    arm = m.arm
    assert arm is not None
    th = arm.threads[c.index]
    views, spill, ctrl = th.regs, th.spill, 0
    view = m.iviews[c.index]
    own = bool(c.private)  # a plain access that ran is then to the CPU's private data
    log = c.log
    base = layout.TEXT_BASE
    for i in range(start, len(log)):
        _, lo, hi = log[i]
        if lo < 0:
            continue
        if i == start and lo == skip:
            lo += 4
        for addr in range(lo, hi, 4):
            off = addr - base
            b, spill = apply(views, int.from_bytes(view[off:off + 4], "little"), spill,
                             own)
            if b > ctrl:
                ctrl = b
    th.spill = spill
    if ctrl:
        arm.control(c.index, ctrl)


# -- promises ------------------------------------------------------------------------------
def promise_choices(m: Machine, cpu: int) -> list[tuple[int, bytes]]:
    """What ``cpu`` may promise now: the (granule, value) of each store a solo run of it
    from the current state makes, less those it has promised already (P1)."""
    arm = m.arm
    assert arm is not None
    at_store = False
    if m.anytime:  # at an access to shared data, one promise at a time (docstring)
        if arm.threads[cpu].promises:
            return []
        pending = pending_access(m, m.cpus[cpu])
        if pending is None or not _shared(m, pending[1]):
            return []
        at_store = pending[0].op.kind is MemKind.STORE
    # anytime: the CPU state matters, and the step too: the guest's clock reads it
    # (exceptions.gic_read), so two states the search merges may store different values
    key = m.state_key() + m.step_no.to_bytes(8, "little") if m.anytime else arm.key()
    cached = m.solo_cache.get((cpu, key))
    if cached is not None:
        return cached
    saved = m.save()
    m.solo_stores = []
    try:
        _solo(m, cpu)
        records = [(loc, v) for t, loc, v in m.solo_stores if t == cpu]
        done = [(loc, v) for loc, v in records  # barriers (< -1): anytime only
                if loc >= -1 or m.anytime]
        if m.anytime:  # the CPU is at an access (checked above): which later store may
            # pass it: up to the next barrier that orders the access before stores
            stop = (-2, -4) if at_store else (-2, -3)
            cut = next((i for i, (loc, _) in enumerate(done) if loc in stop), len(done))
            seen = {done[0][0]} if done else set()
            later = []
            for loc, v in done[1:cut]:  # each location's first store (CoWW), to
                if loc >= 0 and loc not in seen:  # shared data
                    seen.add(loc)
                    if _shared(m, loc):
                        later.append((loc, v))
            done = later
        else:
            done = _unordered(records)
        stores = [(loc, v) for loc, v in done if loc >= 0]
    finally:
        m.solo_stores = None
        m.load(saved)
    held = [(arm.msgs[ts - 1][0], arm.msgs[ts - 1][1]) for ts in arm.threads[cpu].promises]
    if len(held) >= len(stores):  # no more promises than the stores a solo run makes
        m.solo_cache[(cpu, key)] = []
        return []
    out = []
    for s in stores:
        if s in held:
            held.remove(s)
        elif s not in out:
            out.append(s)
    if m.anytime:
        out = [s for s in out if _certified(m, cpu, *s)]
    if len(m.solo_cache) >= 4096:  # a search visits each state about once: bounded
        m.solo_cache.clear()
    m.solo_cache[(cpu, key)] = out
    return out


def _unordered(records: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Promise-first: the stores of a solo run (``solo_stores`` records of one CPU:
    -1 a read, -2/-3/-4 a full/LD/ST barrier, else a store) that a barrier does not
    order after every access before them.  Only those need a promise: a promise is how
    a write becomes visible before program-order-earlier accesses of its thread (the
    module docstring of armmem), and a store a barrier orders after all of them has a
    view (W2) at or above each of their messages, so the promise's timestamp is above
    all of them: performing the store when its thread comes to it, after them, gives
    the same messages in the same order.  (The CPU's first access, a store, is the
    simplest case.)  Releases are not told apart from plain stores here: they keep
    their promises, which is more than needed, never less."""
    reads = writes = False  # an access not yet ordered before later stores
    out = []
    for loc, v in records:
        if loc == -1:
            reads = True
        elif loc == -2:  # DMB/DSB (full): everything before, before later stores
            reads = writes = False
        elif loc == -3:  # LD: reads before, before later reads and writes
            reads = False
        elif loc == -4:  # ST: writes before, before later writes
            writes = False
        elif loc >= 0:
            if reads or writes:
                out.append((loc, v))
            writes = True
    return out


def _certified(m: Machine, cpu: int, loc: int, value: bytes) -> bool:
    """With promises at any time: whether a solo run of ``cpu`` (``solo_steps`` steps,
    reading as a plain STEP does) fulfils the promise of ``value`` to ``loc`` made now
    (the paper's certification; promise-first litmus runs leave it to the end, P3)."""
    arm = m.arm
    assert arm is not None
    saved = m.save()
    try:
        _promise(m, cpu, loc, value)  # a promise coherence passes stops the run (P3)
        return _solo(m, cpu, lambda: not arm.threads[cpu].promises)
    finally:
        m.load(saved)


def _solo(m: Machine, cpu: int, done: Callable[[], bool] = lambda: False) -> bool:
    """Step ``cpu`` alone, at most ``solo_steps`` steps, until ``done()``; whether it
    came true.  No promise is offered meanwhile; the caller saves the machine before
    and loads it after."""
    phase = m.promise_phase
    m.promise_phase = False
    c = m.cpus[cpu]
    try:
        for _ in range(m.solo_steps):
            if done():
                return True
            if m.stopped or c.state is not CpuState.RUNNABLE or cpu not in m.steppable():
                return False
            m.apply(step(cpu))
        return done()
    finally:
        m.promise_phase = phase


def _shared(m: Machine, addr: int) -> bool:
    """Whether ``addr`` is in the shared data (``.data``): where promises are made."""
    return layout.DATA_BASE <= addr < layout.DATA_BASE + len(m.data)


def promise(m: Machine, cpu: int, k: int) -> None:
    """P1: ``cpu`` promises the ``k``-th of ``promise_choices``."""
    choices = promise_choices(m, cpu)
    if not 0 <= k < len(choices):
        raise ModelChoiceError(f"CPU{cpu} has no promise {k} to make now")
    loc, value = choices[k]
    _promise(m, cpu, loc, value)
    m.add_event(cpu, EventKind.PROMISE, loc, int.from_bytes(value, "little"), "promise")


def _promise(m: Machine, cpu: int, loc: int, value: bytes) -> None:
    arm = m.arm
    assert arm is not None
    where = _region(m, loc, GRANULE)
    assert where is not None
    buf, off, _ = where
    m.core_changed()  # (certification makes one outside any decision, and loads the
    m.arm_key = m.arm_saved = None  # state before it back: _certified)
    arm.know(loc, bytes(buf[off:off + GRANULE]))  # before the first message of loc
    arm.promise(cpu, loc, value)
    buf[off:off + GRANULE] = value
