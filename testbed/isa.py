"""Which AArch64 instructions are visible operations, decoded from their encodings.

The scheduler only gets control at visible operations (DESIGN.md section 5), so the
machine hooks exactly the addresses whose current instruction is one of these.  The
decoding is done on the bits (Arm ARM C4.1 encoding index), not on disassembly text,
so that an instruction patched in at run time is classified the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ISB", "NOP", "OpInfo", "OpKind", "b", "brk", "classify", "is_cmodx"]

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


@dataclass(frozen=True, slots=True)
class OpInfo:
    kind: OpKind
    op: str = ""  # for DC/IC: "cvau", "civac", "ivau", "iallu", "ialluis", ...
    rt: int = 31  # for DC/IC by VA: the register holding the address


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
        return _MEMORY
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


def brk(imm: int) -> int:
    """The encoding of ``BRK #imm``."""
    return 0xD4200000 | ((imm & 0xFFFF) << 5)


def b(src: int, dst: int) -> int:
    """The encoding of ``B dst`` placed at ``src`` (the kernel's aarch64_insn_gen_branch_imm)."""
    off = dst - src
    if off & 3 or not -(1 << 27) <= off < (1 << 27):
        raise ValueError(f"B from {src:#x} cannot reach {dst:#x}")
    return 0x14000000 | ((off >> 2) & 0x3FFFFFF)


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
