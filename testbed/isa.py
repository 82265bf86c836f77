"""Which AArch64 instructions are visible operations, decoded from their encodings.

The scheduler only gets control at visible operations (DESIGN.md section 5), so the
machine hooks exactly the addresses whose current instruction is one of these.  The
decoding is done on the bits (Arm ARM C4.1 encoding index), not on disassembly text,
so that an instruction patched in at run time is classified the same way.

Every load, store and atomic is ``OpKind.MEMORY`` (the emulator performs it), and its
``OpInfo.mem`` says what it does to memory for a data-memory model (`MemOp`): a load, a
store or a read-modify-write, its size, whether it is acquire (RCsc: ``LDAR``,
``LDAXR``, the ``A`` atomics), acquire-PC (RCpc: ``LDAPR``, ``LDAPUR``), release or
exclusive, and its registers.  There is deliberately no separate kind for atomics: the
machine lets the emulator execute exactly the kinds up to ``FETCH``, and an atomic is
executed like any other access.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ISB", "NOP", "MemKind", "MemOp", "OpInfo", "OpKind", "b", "bl", "brk", "classify",
           "decode_mem", "is_cmodx", "plain_address", "plain_ea"]

NOP = 0xD503201F
ISB = 0xD5033FDF
ERET = 0xD69F03E0


class OpKind(enum.IntEnum):
    # Kinds up to FETCH are executed by the emulator; the others are performed in Python.
    INVISIBLE = 0  # runs freely: registers, stack, branches, literal loads
    MEMORY = 1  # a load, store, exclusive or atomic through a non-SP base register
    ERET = 2  # exception return: a context synchronization event
    DAIF = 3  # MSR DAIFSet/DAIFClr/DAIF: changes whether IRQs can be taken
    FETCH = 4  # set by the machine: fetching a text word that stores have touched
    BARRIER = 5  # DMB, DSB: no effect in a sequentially consistent D-side
    ISB = 6  # context synchronization: forces a catch-up
    DC = 7  # data cache maintenance by VA
    IC = 8  # instruction cache maintenance
    YIELD = 9  # spin-loop hint: tells the scheduler the CPU is waiting
    WFE = 10  # treated as YIELD (WFE may always complete spuriously)
    WFI = 11  # waits for an interrupt
    SEV = 12  # SEV/SEVL: no effect since WFE never blocks
    TORN = 13  # set by the machine for a torn word in an I-view, never by classify()
    HALT = 14  # set by the machine where a litmus thread ends, never by classify()


# Kinds the machine performs in Python without letting the emulator execute them.
PYTHON_KINDS = frozenset({OpKind.BARRIER, OpKind.ISB, OpKind.DC, OpKind.IC, OpKind.YIELD,
                          OpKind.WFE, OpKind.WFI, OpKind.SEV})


class MemKind(enum.Enum):
    """What an access does to memory (the values are ``access.AccessKind``'s)."""

    LOAD = "load"
    STORE = "store"
    RMW = "rmw"  # an atomic read-modify-write (LD<op>, ST<op>, SWP, CAS, CASP)


@dataclass(frozen=True, slots=True)
class MemOp:
    """One load, store or atomic, decoded from its encoding (Arm ARM C4.1.4).

    Register numbers are 0-30, 31 for the zero register (or SP as ``rn``).  For an
    atomic, ``rs`` is the operand (LD<op>, SWP) or the compare value and old-value
    destination (CAS); ``rt`` receives the old value (LD<op>, SWP; 31 for the ``ST<op>``
    aliases, which do not return it) or is the new value (CAS).  For CASP, ``rs``/``rt``
    are the first registers of their pairs; for an exclusive store ``rs`` is the status.
    """

    kind: MemKind
    size: int  # bytes per element: 1, 2, 4, 8 or 16
    count: int = 1  # elements: 2 for pairs (LDP, STP, LDXP, STXP, CASP)
    acquire: bool = False  # RCsc acquire: LDAR, LDAXR/LDAXP, CAS/SWP/LD<op> with A
    acquire_pc: bool = False  # RCpc acquire: LDAPR, LDAPUR (FEAT_LRCPC, LRCPC2)
    release: bool = False  # STLR, STLXR/STLXP, STLUR, CAS/SWP/LD<op>/ST<op> with L
    exclusive: bool = False  # LDXR, STXR and their pair and ordered forms
    signed: bool = False  # sign-extending load (LDRSB, LDRSW, LDPSW, LDAPURSH, ...)
    simd: bool = False  # to or from SIMD&FP registers
    op: str = ""  # atomics: add clr eor set smax smin umax umin swp cas
    rt: int = 31
    rt2: int = 31  # the second register of a pair (LDP, STP, LDXP, STXP)
    rs: int = 31
    rn: int = 31  # the base register (31: SP)


@dataclass(frozen=True, slots=True)
class OpInfo:
    kind: OpKind
    op: str = ""  # for DC/IC: "cvau", "civac", "ivau", "iallu", "ialluis", ...
    rt: int = 31  # for DC/IC by VA: the register holding the address
    mem: MemOp | None = None  # for MEMORY: the access, if decode_mem describes it


# SYS #op1, Cn, Cm, #op2 encodings of the cache maintenance instructions (Arm ARM C5.3).
_SYS_OPS: dict[tuple[int, int, int, int], tuple[OpKind, str]] = {
    (0, 7, 1, 0): (OpKind.IC, "ialluis"),
    (0, 7, 5, 0): (OpKind.IC, "iallu"),
    (3, 7, 5, 1): (OpKind.IC, "ivau"),
    (3, 7, 11, 1): (OpKind.DC, "cvau"),
    (3, 7, 10, 1): (OpKind.DC, "cvac"),
    (3, 7, 14, 1): (OpKind.DC, "civac"),
    (3, 7, 12, 1): (OpKind.DC, "cvap"),
    (3, 7, 13, 1): (OpKind.DC, "cvadp"),
    (0, 7, 6, 1): (OpKind.DC, "ivac"),
}


@lru_cache(maxsize=4096)
def classify(word: int) -> OpInfo:
    """Classify one instruction word."""
    # Loads and stores: op0 = x1x0 (bits 28:25).
    if (word >> 25) & 0b0101 == 0b0100:
        if (word >> 27) & 0b111 == 0b011 and not (word >> 24) & 1:
            return _INVISIBLE  # LDR (literal): reads constants next to the code
        if (word >> 5) & 31 == 31:
            return _INVISIBLE  # base is SP: the CPU's private stack
        mem = decode_mem(word)
        return _MEMORY if mem is None else OpInfo(OpKind.MEMORY, mem=mem)
    if word == ERET:
        return OpInfo(OpKind.ERET)
    if word & 0xFFFFF01F == 0xD503201F:  # HINT #imm
        imm = (word >> 5) & 0x7F
        return _HINTS.get(imm, _INVISIBLE)
    if word & 0xFFFFF0FF == 0xD503309F or word & 0xFFFFF0FF == 0xD50330BF:
        return OpInfo(OpKind.BARRIER)  # DSB, DMB
    if word & 0xFFFFF0FF == 0xD50330DF:
        return OpInfo(OpKind.ISB)
    if word & 0xFFFFF0DF == 0xD50340DF:  # MSR DAIFSet / DAIFClr, #imm
        return OpInfo(OpKind.DAIF)
    if word & 0xFFFFFFE0 == 0xD51B4220:  # MSR DAIF, Xt
        return OpInfo(OpKind.DAIF)
    if word & 0xFFF80000 == 0xD5080000:  # SYS #op1, Cn, Cm, #op2, Xt
        key = ((word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15, (word >> 5) & 7)
        found = _SYS_OPS.get(key)
        if found is not None:
            return OpInfo(found[0], found[1], word & 31)
        if key == (3, 7, 4, 1):  # DC ZVA zeroes a block: a store
            return _MEMORY
    return _INVISIBLE


_INVISIBLE = OpInfo(OpKind.INVISIBLE)
_MEMORY = OpInfo(OpKind.MEMORY)
_HINTS = {1: OpInfo(OpKind.YIELD), 2: OpInfo(OpKind.WFE), 3: OpInfo(OpKind.WFI),
          4: OpInfo(OpKind.SEV), 5: OpInfo(OpKind.SEV)}


_AMO_OPS = ("add", "clr", "eor", "set", "smax", "smin", "umax", "umin")


def decode_mem(word: int) -> MemOp | None:
    """The access of a load/store-class word (bits 28:25 = x1x0), or ``None`` for the
    forms not described: literal loads, prefetches, SIMD structure loads and stores
    (LD1-LD4, ST1-ST4), memory tags, LD64B/ST64B, copy/set (FEAT_MOPS), RCpc3 and
    unallocated encodings.  ``DC ZVA`` (a store, ``OpKind.MEMORY``) is not in this class.
    Fields the Arm ARM fixes to ones (Rs of LDAR, Rt2 of LDXR...) are not checked."""
    if (word >> 25) & 0b0101 != 0b0100:
        return None
    size, rt, rn = word >> 30, word & 31, (word >> 5) & 31
    rs = (word >> 16) & 31
    top = (word >> 24) & 0x3F  # bits 29:24
    if top == 0b001000:  # exclusives, load-acquire/store-release, CAS, CASP
        o2, load, o1, o0 = (word >> 23) & 1, (word >> 22) & 1, (word >> 21) & 1, (word >> 15) & 1
        rt2 = (word >> 10) & 31
        if not o2 and not o1:  # LDXR, LDAXR, STXR, STLXR
            return MemOp(MemKind.LOAD if load else MemKind.STORE, 1 << size, exclusive=True,
                         acquire=bool(load and o0), release=bool(not load and o0),
                         rt=rt, rs=31 if load else rs, rn=rn)
        if not o2:  # o1: LDXP, LDAXP, STXP, STLXP (size 1x); CASP (size 0x)
            if size >> 1:
                return MemOp(MemKind.LOAD if load else MemKind.STORE, 4 << (size & 1), 2,
                             exclusive=True, acquire=bool(load and o0),
                             release=bool(not load and o0), rt=rt, rt2=rt2,
                             rs=31 if load else rs, rn=rn)
            if rt2 != 31:
                return None
            return MemOp(MemKind.RMW, 4 << size, 2, acquire=bool(load), release=bool(o0),
                         op="cas", rt=rt, rs=rs, rn=rn)
        if not o1:  # LDAR, STLR; LDLAR, STLLR (FEAT_LOR, o0 = 0) taken as the same, as
            # if one LORegion held all memory (the access probe in explain.py agrees)
            return MemOp(MemKind.LOAD if load else MemKind.STORE, 1 << size,
                         acquire=bool(load), release=not load, rt=rt, rn=rn)
        if rt2 != 31:
            return None
        return MemOp(MemKind.RMW, 1 << size, acquire=bool(load), release=bool(o0), op="cas",
                     rt=rt, rs=rs, rn=rn)
    if top == 0b011001:  # LDAPUR, STLUR (FEAT_LRCPC2): size 011001 opc 0 imm9 00 Rn Rt
        if (word >> 21) & 1 or (word >> 10) & 3:
            return None  # memory tags, MOPS, RCpc3
        opc = (word >> 22) & 3
        if opc == 0:
            return MemOp(MemKind.STORE, 1 << size, release=True, rt=rt, rn=rn)
        if opc == 1 or (opc == 2 and size < 3) or (opc == 3 and size < 2):
            return MemOp(MemKind.LOAD, 1 << size, acquire_pc=True, signed=opc > 1,
                         rt=rt, rn=rn)
        return None
    simd = bool((word >> 26) & 1)
    group = (word >> 27) & 7  # bits 29:27
    load = (word >> 22) & 1
    if group == 0b101:  # pairs: opc 101 V mode L imm7 Rt2 Rn Rt
        if simd:
            if size == 3:
                return None
            nbytes, signed = 4 << size, False
        elif size == 0 or size == 2:
            nbytes, signed = 4 << (size >> 1), False
        elif size == 1 and load and (word >> 23) & 3:
            nbytes, signed = 4, True  # LDPSW (there is no non-temporal form)
        else:
            return None  # STGP (memory tags), unallocated
        return MemOp(MemKind.LOAD if load else MemKind.STORE, nbytes, 2, signed=signed,
                     simd=simd, rt=rt, rt2=(word >> 10) & 31, rn=rn)
    if group != 0b111:
        return None  # literal loads, SIMD structures, MOPS
    if not (word >> 24) & 1 and (word >> 21) & 1:
        op4 = (word >> 10) & 3
        if op4 == 0:  # atomic memory operations: size 111 V 00 A R 1 Rs o3 opc 00 Rn Rt
            if simd:
                return None
            acq, rel = bool((word >> 23) & 1), bool((word >> 22) & 1)
            o3, opc = (word >> 15) & 1, (word >> 12) & 7
            if not o3:
                return MemOp(MemKind.RMW, 1 << size, acquire=acq, release=rel,
                             op=_AMO_OPS[opc], rt=rt, rs=rs, rn=rn)
            if opc == 0:
                return MemOp(MemKind.RMW, 1 << size, acquire=acq, release=rel, op="swp",
                             rt=rt, rs=rs, rn=rn)
            if opc == 4 and acq and not rel and rs == 31:  # LDAPR (FEAT_LRCPC)
                return MemOp(MemKind.LOAD, 1 << size, acquire_pc=True, rt=rt, rn=rn)
            return None  # LD64B, ST64B, ...
        if op4 & 1:  # LDRAA, LDRAB (FEAT_PAuth)
            return MemOp(MemKind.LOAD, 8, rt=rt, rn=rn) if size == 3 and not simd else None
        # op4 == 2: register offset; falls through to the single-register decoding
    # Single register (unscaled, post/pre-index, unprivileged, register, unsigned offset).
    opc = (word >> 22) & 3
    if simd:
        if opc < 2:
            return MemOp(MemKind.LOAD if opc else MemKind.STORE, 1 << size, simd=True,
                         rt=rt, rn=rn)
        if size == 0:  # the 128-bit Q forms
            return MemOp(MemKind.LOAD if opc == 3 else MemKind.STORE, 16, simd=True,
                         rt=rt, rn=rn)
        return None
    if opc < 2:
        return MemOp(MemKind.LOAD if opc else MemKind.STORE, 1 << size, rt=rt, rn=rn)
    if (opc == 2 and size < 3) or (opc == 3 and size < 2):
        return MemOp(MemKind.LOAD, 1 << size, signed=True, rt=rt, rn=rn)
    return None  # PRFM, PRFUM, unallocated


@lru_cache(maxsize=4096)
def plain_address(word: int) -> tuple[int, int, int, int, int, int, bool] | None:
    """How a plain general-register load or store computes its address, for the code
    hook's private-data check (``Machine.set_private``): ``(rn, rm, disp, option, shift,
    nbytes, store)``, the address being ``X[rn] + disp`` plus, for a register offset
    (``rm`` >= 0; 31 is XZR), ``X[rm]`` extended by ``option`` (2 UXTW, 3 LSL, 6 SXTW,
    7 SXTX) and shifted left by ``shift``; ``nbytes`` is what it accesses, from there.
    ``None`` for every other form: SP-based (already private), literal, SIMD&FP,
    acquire, release, exclusive, atomic, unprivileged, prefetch, tagged or unallocated
    (those stay visible operations).  ``testbed/_fastpath.c``'s ``plain_ea`` is its
    twin, and ``tests/test_private.py`` checks both against Capstone's decoding."""
    rn = (word >> 5) & 31
    if (word >> 25) & 0b0101 != 0b0100 or (word >> 26) & 1 or rn == 31:
        return None  # not a load or store; SIMD&FP; SP-based
    size, opc = word >> 30, (word >> 22) & 3
    group = (word >> 27) & 7
    if group == 0b101:  # LDP, STP, LDNP, STNP, LDPSW: opc 101 0 mode L imm7 Rt2 Rn Rt
        load = (word >> 22) & 1
        if size == 1 and not (load and (word >> 23) & 3):
            return None  # STGP, LDNP with opc 01: tags, unallocated
        if size == 3:
            return None
        esize = 8 if size == 2 else 4
        rt, rt2 = word & 31, (word >> 10) & 31
        mode = (word >> 23) & 3
        if (load and rt == rt2) or (mode & 1 and rn in (rt, rt2)):
            return None  # CONSTRAINED UNPREDICTABLE
        imm7 = (word >> 15) & 0x7F
        disp = (imm7 - 128 if imm7 & 0x40 else imm7) * esize
        return rn, -1, 0 if mode == 1 else disp, 0, 0, 2 * esize, not load
    if group != 0b111:
        return None  # exclusives, acquire/release, literals, SIMD structures
    if not (opc < 2 or (opc == 2 and size < 3) or (opc == 3 and size < 2)):
        return None  # PRFM, PRFUM, unallocated
    store = opc == 0
    if (word >> 24) & 1:  # unsigned offset: imm12, scaled
        return rn, -1, ((word >> 10) & 0xFFF) << size, 0, 0, 1 << size, store
    if not (word >> 21) & 1:  # imm9: 00 unscaled, 01 post-index, 10 unprivileged, 11 pre
        mode = (word >> 10) & 3
        if mode == 2 or (mode & 1 and rn == word & 31):
            return None  # unprivileged; a writeback to the register transferred
        imm9 = (word >> 12) & 0x1FF
        disp = imm9 - 512 if imm9 & 0x100 else imm9
        return rn, -1, 0 if mode == 1 else disp, 0, 0, 1 << size, store
    if (word >> 10) & 3 != 2:
        return None  # atomics, pointer authentication
    option = (word >> 13) & 7
    if option not in (2, 3, 6, 7):
        return None
    return rn, (word >> 16) & 31, 0, option, size if (word >> 12) & 1 else 0, 1 << size, \
        store


def plain_ea(plan: tuple[int, int, int, int, int, int, bool], base: int, index: int) -> int:
    """The address ``plain_address``'s ``plan`` accesses, with ``base`` in X[rn] and
    ``index`` in X[rm] (unused without a register offset)."""
    _, rm, disp, option, shift, _, _ = plan
    ea = base + disp
    if rm >= 0:
        if option == 2:
            index &= 0xFFFF_FFFF
        elif option == 6:
            index &= 0xFFFF_FFFF
            index -= (index >> 31) << 32
        ea += index << shift
    return ea & 0xFFFF_FFFF_FFFF_FFFF


def brk(imm: int) -> int:
    """The encoding of ``BRK #imm``."""
    return 0xD4200000 | ((imm & 0xFFFF) << 5)


def b(src: int, dst: int) -> int:
    """The encoding of ``B dst`` placed at ``src`` (the kernel's aarch64_insn_gen_branch_imm)."""
    off = dst - src
    if off & 3 or not -(1 << 27) <= off < (1 << 27):
        raise ValueError(f"B from {src:#x} cannot reach {dst:#x}")
    return 0x14000000 | ((off >> 2) & 0x3FFFFFF)


def bl(src: int, dst: int) -> int:
    """The encoding of ``BL dst`` placed at ``src`` (``AARCH64_INSN_BRANCH_LINK``)."""
    return b(src, dst) | 0x8000_0000


def is_cmodx(word: int) -> bool:
    """Whether ``word`` is one of the instructions the Arm ARM lets one CPU modify while
    another executes it (B, BL, NOP, BRK, SVC, HVC, SMC, ISB; B.cond, CBZ/CBNZ, TBZ/TBNZ
    in newer text), per the "Concurrent modification and execution" rules."""
    return (word & 0x7C000000 == 0x14000000  # B, BL
            or word == NOP or word & 0xFFFFF0FF == 0xD50330DF  # NOP, ISB
            or word & 0xFFE0001F == 0xD4200000  # BRK
            or (word & 0xFFE0001C == 0xD4000000 and word & 3 in (1, 2, 3))  # SVC, HVC, SMC
            or word & 0xFF000010 == 0x54000000  # B.cond
            or word & 0x7E000000 == 0x34000000  # CBZ, CBNZ
            or word & 0x7E000000 == 0x36000000)  # TBZ, TBNZ
