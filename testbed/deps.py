"""Register dependencies: which registers an instruction reads and writes, from its bits.

The Arm data-memory model (``testbed/armmem.py``) gives every register a *view*: the
latest message its value depends on.  The instructions a CPU runs between two visible
operations (arithmetic, moves, compares, branches) carry those views from register to
register: a destination takes the join of its sources' views (a data dependency), a
conditional or indirect branch joins its inputs' views into the thread's control view.
``flow(word)`` says what an instruction does with registers, decoded from the encoding
(Arm ARM C4.1) as ``isa.py`` does, not from a disassembler: Capstone's register access
lists are wrong for some instructions (``CMP`` reported as writing its operand, ``RET``
as reading nothing), and a spurious write would silently drop a dependency.

Soundness: an instruction this decoder does not know is taken as reading every
register and the flags and writing nothing it could reset (``UNKNOWN``: its
destination, if any, is not known, so nothing loses its view; the views of everything
it might have written are joined with everything it might have read, via ``clobber``).
A dependency can only be over-approximated, never lost.

Slots: 0..30 are X0..X30, 31 is SP, 32 is NZCV.  Writes to XZR are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .isa import plain_address

__all__ = ["NZCV", "SP", "Flow", "apply", "flow"]

SP = 31
NZCV = 32
_ZR = -1  # register 31 read as zero / written to nothing


@dataclass(frozen=True, slots=True)
class Flow:
    dst: tuple[int, ...] = ()  # slots written (their view becomes the join of ``src``)
    src: tuple[int, ...] = ()  # slots read
    branch: bool = False  # a conditional or indirect branch: ``src`` is a control dependency
    clobber: bool = False  # unknown: every slot joins every slot's view (see the docstring)
    stack_load: bool = False  # a load from the CPU's own stack (SP-based): see ``apply``
    stack_store: bool = False  # a store to it: ``src`` spills views
    # A plain access through another base register (``isa.plain_address``): run without
    # stopping only when it is to the CPU's private data (``Machine.set_private``), where
    # ``apply(..., own=True)`` treats it as a stack access: the registers it loads, the
    # registers it stores, and those its address is computed from.
    own_load: tuple[int, ...] = ()
    own_store: tuple[int, ...] = ()
    own_addr: tuple[int, ...] = ()


UNKNOWN = Flow(clobber=True)
NOTHING = Flow()


def _r(n: int, sp: bool = False) -> int:
    """Register field ``n``: 31 is SP where the encoding says so, else the zero register."""
    return (SP if sp else _ZR) if n == 31 else n


def _f(dst: tuple[int, ...], src: tuple[int, ...], *, branch: bool = False,
       stack_load: bool = False, stack_store: bool = False) -> Flow:
    return Flow(tuple(d for d in dst if d != _ZR), tuple(s for s in src if s != _ZR),
                branch=branch, stack_load=stack_load, stack_store=stack_store)


@lru_cache(maxsize=8192)
def flow(word: int) -> Flow:
    """What instruction ``word`` does with registers (loads and stores through a base
    register other than SP are the machine's visible operations and are not described
    here beyond their register writeback)."""
    rd, rn, rm = word & 31, (word >> 5) & 31, (word >> 16) & 31
    sets_flags = bool((word >> 29) & 1)
    op0 = (word >> 25) & 0xF
    if op0 in (0b1000, 0b1001):  # data processing, immediate
        op = (word >> 23) & 7
        if op in (0b000, 0b001):  # ADR, ADRP
            return _f((rd,), ())
        if op == 0b010:  # ADD/SUB (immediate): Rd may be SP unless S, Rn may be SP
            return _f((_r(rd, not sets_flags),) + ((NZCV,) if sets_flags else ()),
                      (_r(rn, True),))
        if op == 0b100:  # logical (immediate): ANDS sets flags; Rd may be SP unless ANDS
            ands = (word >> 29) & 3 == 3
            return _f((_r(rd, not ands),) + ((NZCV,) if ands else ()), (_r(rn),))
        if op == 0b101:  # move wide: MOVN, MOVZ (no source), MOVK (keeps the rest)
            opc = (word >> 29) & 3
            return _f((_r(rd),), (_r(rd),) if opc == 3 else ())
        if op == 0b110:  # bitfield: BFM keeps bits of Rd
            opc = (word >> 29) & 3
            return _f((_r(rd),), (_r(rn),) + ((_r(rd),) if opc == 1 else ()))
        if op == 0b111:  # EXTR
            return _f((_r(rd),), (_r(rn), _r(rm)))
        return UNKNOWN
    if op0 in (0b1010, 0b1011):  # branches, exceptions, system
        if word & 0xFF000010 == 0x54000000:  # B.cond
            return Flow(src=(NZCV,), branch=True)
        if word & 0x7E000000 == 0x34000000 or word & 0x7E000000 == 0x36000000:
            return _f((), (_r(rd),), branch=True)  # CBZ/CBNZ, TBZ/TBNZ
        if word & 0x7C000000 == 0x14000000:  # B, BL
            return _f((30,), ()) if word >> 31 else NOTHING
        if word & 0xFE000000 == 0xD6000000:  # BR, BLR, RET, ERET...: indirect
            opc = (word >> 21) & 0xF
            if opc == 0b0100:  # ERET: the machine's own
                return NOTHING
            return _f((30,) if opc == 0b0001 else (), (_r(rn),), branch=True)
        if word & 0xFF000000 == 0xD4000000:  # SVC/HVC/SMC/BRK/HLT: exceptions
            return NOTHING
        if word & 0xFFC00000 == 0xD5000000:  # system: hints, barriers, MSR, MRS, SYS
            if word & 0xFFF00000 == 0xD5300000:  # MRS Xt, <sysreg>
                nzcv = (word >> 5) & 0x7FFF == 0x5A10  # MRS Xt, NZCV
                return _f((_r(rd),), (NZCV,) if nzcv else ())
            if word & 0xFFF00000 == 0xD5100000:  # MSR <sysreg>, Xt
                nzcv = (word >> 5) & 0x7FFF == 0x5A10
                return _f((NZCV,) if nzcv else (), (_r(rd),))
            return NOTHING  # hints, barriers, MSR immediate, SYS (DC/IC): no registers out
        return UNKNOWN
    if op0 in (0b0101, 0b1101):  # data processing, register
        if word & 0x1F000000 == 0x0A000000:  # logical (shifted register)
            ands = (word >> 29) & 3 == 3
            return _f((_r(rd),) + ((NZCV,) if ands else ()), (_r(rn), _r(rm)))
        if word & 0x1F200000 == 0x0B000000:  # ADD/SUB (shifted register)
            return _f((_r(rd),) + ((NZCV,) if sets_flags else ()), (_r(rn), _r(rm)))
        if word & 0x1F200000 == 0x0B200000:  # ADD/SUB (extended register): SP allowed
            return _f((_r(rd, not sets_flags),) + ((NZCV,) if sets_flags else ()),
                      (_r(rn, True), _r(rm)))
        if word & 0x1FE00000 == 0x1A000000:  # ADC/SBC: read the carry
            return _f((_r(rd),) + ((NZCV,) if sets_flags else ()), (_r(rn), _r(rm), NZCV))
        if word & 0x1FE00000 == 0x1A400000:  # CCMN/CCMP (register or immediate)
            imm = (word >> 11) & 1
            return _f((NZCV,), (_r(rn), NZCV) + (() if imm else (_r(rm),)))
        if word & 0x1FE00000 == 0x1A800000:  # CSEL, CSINC, CSINV, CSNEG: in Arm's
            # model the condition creates no dependency (catalogue MP+rel+CSEL,
            # LB+CSEL4: Allowed), only the operands do
            return _f((_r(rd),), (_r(rn), _r(rm)))
        if word & 0x5FE00000 == 0x1AC00000:  # data processing (2 source)
            return _f((_r(rd),), (_r(rn), _r(rm)))
        if word & 0x5FE00000 == 0x5AC00000:  # data processing (1 source)
            return _f((_r(rd),), (_r(rn),))
        if word & 0x1F000000 == 0x1B000000:  # data processing (3 source)
            ra = (word >> 10) & 31
            return _f((_r(rd),), (_r(rn), _r(rm), _r(ra)))
        return UNKNOWN
    if (word >> 25) & 0b0101 == 0b0100:  # loads and stores
        return _load_store(word)
    return UNKNOWN


def _load_store(word: int) -> Flow:
    rt, rn = word & 31, (word >> 5) & 31
    simd = bool((word >> 26) & 1)  # SIMD&FP registers: not tracked (the kernels use none)
    if (word >> 27) & 0b111 == 0b011 and not (word >> 24) & 1:  # LDR (literal)
        return NOTHING if simd else _f((_r(rt),), ())
    if simd:
        return _f((rn,), (rn,)) if _writeback(word) and rn != 31 else \
            (_f((SP,), (SP,)) if _writeback(word) else NOTHING)
    pair = (word >> 27) & 0b111 == 0b101
    regs = (_r(rt), _r((word >> 10) & 31)) if pair else (_r(rt),)  # what it transfers
    if rn != 31:
        # Through a base register: the machine performs it (a visible operation) and
        # gives the loaded register its view; here only a writeback of the base, and
        # what a plain one does when it is to the CPU's private data (``Flow.own_load``).
        wbf = _f((rn,), (rn,)) if _writeback(word) else NOTHING
        plan = plain_address(word)
        if plan is None:
            return wbf
        own = tuple(r for r in regs if r != _ZR)
        addr = (rn,) + ((plan[1],) if 0 <= plan[1] < 31 else ())
        return Flow(wbf.dst, wbf.src, own_load=() if plan[6] else own,
                    own_store=own if plan[6] else (), own_addr=addr)
    # SP-based: the CPU's own stack, run by the emulator without the memory model.
    load = bool((word >> 22) & 1)
    wb = (SP,) if _writeback(word) else ()
    if load:
        return _f(regs + wb, wb, stack_load=True)
    return _f(wb, regs + wb, stack_store=True)


def _writeback(word: int) -> bool:
    """Pre- or post-indexed addressing (the base register is written back)."""
    if (word >> 27) & 0b111 == 0b101:  # pairs: post 01, pre 11
        return (word >> 23) & 3 in (1, 3)
    if (word >> 27) & 0b111 == 0b111 and not (word >> 24) & 1 and not (word >> 21) & 1:
        return (word >> 10) & 3 in (1, 3)  # unscaled family: post 01, pre 11
    return False


def apply(views: list[int], word: int, spill: int, own: bool = False) -> tuple[int, int]:
    """Carry register views through ``word``: returns (control view of a branch, or 0;
    the new spill view).  ``spill`` is the join of every view stored to the CPU's own
    stack so far; a load from the stack takes it (sound: the stack holds nothing newer).
    ``own``: the CPU has private data, and a plain access through a base register that
    ran (the code hook let it) was to it: the same, with its address registers' views
    joined too (``Flow.own_load``)."""
    f = flow(word)
    if f.clobber:
        top = max(views)
        views[:] = [top] * len(views)
        return top, max(spill, top)
    if own and f.own_addr:
        a = max(views[s] for s in f.own_addr)
        for s in f.own_store:
            if views[s] > spill:
                spill = views[s]
        for d in f.own_load:
            views[d] = max(a, spill)
    v = 0
    for s in f.src:
        if views[s] > v:
            v = views[s]
    if f.stack_store:
        spill = max(spill, v)
    if f.stack_load:
        v = max(v, spill)
    if f.branch:  # BL, BLR write PC + 4 to X30: a value that depends on no register
        for d in f.dst:
            views[d] = 0
        return v, spill
    for d in f.dst:
        views[d] = v
    return 0, spill
