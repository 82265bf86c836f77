"""The data access an instruction makes: decoded once per word, its address computed
from register values.

Shared by the access probe (``testbed/explain.py``) and the data-memory model's
driver: ``decode_access(word)`` gives a ``Plan`` (load, store or read-modify-write;
element size; the registers that receive, supply, index and base it; acquire, release,
exclusive), decoded with Capstone's operand details; ``effective_address(plan, regs)``
computes where it goes from the CPU's X0..X30 and SP; ``rmw`` what an atomic stores.
No emulator here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from capstone import arm64 as cs64

__all__ = ["MASK64", "REG_BYTES", "AccessKind", "Plan", "decode_access",
           "effective_address", "extend", "registers_written", "rmw", "sext", "slot"]


class AccessKind(enum.Enum):
    LOAD = "load"
    STORE = "store"
    RMW = "rmw"  # an atomic read-modify-write (LDADD, SWP, CAS...): a load and a store


MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------------- decoding

@dataclass(frozen=True, slots=True)
class Plan:
    """What a load/store instruction does, decoded once per word."""

    mnemonic: str
    kind: AccessKind
    size: int  # bytes per element
    dests: tuple[str, ...]  # registers that receive what memory held (loads, atomics)
    sources: tuple[str, ...]  # registers whose values are stored (stores), Rs (atomics)
    new: tuple[str, ...]  # CAS/CASP: the registers stored when the compare succeeds
    base: str
    index: str  # "" if none
    extend: int  # capstone ARM64_EXT_*
    shift: int  # the index's left shift
    disp: int  # the immediate offset (0 for a post-index: the address is the base)
    signed: bool  # a sign-extending load (LDRSB, LDRSW, LDPSW...)
    op: str  # atomics: add, clr, eor, set, smax, smin, umax, umin, swp, cas
    acquire: bool
    release: bool
    exclusive: bool
    # Where base, index, sources and new are in ``_Registers.read`` (see ``_slot``).
    slots: tuple[tuple[int, int] | None, ...] = ()

    @property
    def elements(self) -> int:
        """Elements transferred: two for a pair (LDP, STXP, CASP), else one."""
        if self.kind is AccessKind.LOAD:
            return len(self.dests)
        if self.kind is AccessKind.STORE:
            return len(self.sources)
        return len(self.new) if self.op == "cas" else 1


_ATOMIC = re.compile(r"(ld|st)(add|clr|eor|set|smax|smin|umax|umin)(a|l|al)?([bh])?")
_SWP = re.compile(r"swp(a|l|al)?([bh])?")
_CAS = re.compile(r"cas(p)?(a|l|al)?([bh])?")
_LDX = re.compile(r"ld(a)?x[rp]([bh])?")
_STX = re.compile(r"st(l)?x[rp]([bh])?")
_LD_ACQ = re.compile(r"(ldar|ldapr|ldlar|ldapur)(s?[bh]|sw)?")
_ST_REL = re.compile(r"(stlr|stllr|stlur)([bh])?")
_LD = re.compile(r"(ldr|ldur|ldtr)(s?[bh]|sw)?|ldp|ldnp|ldpsw")
_ST = re.compile(r"(str|stur|sttr)([bh])?|stp|stnp")
REG_BYTES = {"w": 4, "x": 8, "b": 1, "h": 2, "s": 4, "d": 8, "q": 16}


def _cs() -> Cs:
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    cs.detail = True
    return cs


_CS = _cs()


def slot(reg: str) -> tuple[int, int] | None:
    """Where a general register's value is in ``_Registers`` (index, mask); (-1, 0) for
    the zero register, ``None`` for a register the probe does not read (SIMD)."""
    if reg in ("xzr", "wzr"):
        return -1, 0
    if reg in ("sp", "wsp"):
        return 31, MASK64 if reg == "sp" else 0xFFFF_FFFF
    if reg in ("lr", "fp"):  # Capstone's names of X30 and X29
        return (30 if reg == "lr" else 29), MASK64
    if reg[:1] in ("w", "x") and reg[1:].isdigit() and int(reg[1:]) <= 30:
        return int(reg[1:]), MASK64 if reg[0] == "x" else 0xFFFF_FFFF
    return None


@lru_cache(maxsize=4096)
def decode_access(word: int) -> Plan | None:
    """The data access an instruction word makes, or ``None`` (not a load, store or
    atomic the probe models)."""
    for insn in _CS.disasm(word.to_bytes(4, "little"), 0, 1):
        return plan_of(insn)
    return None


@lru_cache(maxsize=4096)
def registers_written(word: int) -> frozenset[str] | None:
    """The general registers an instruction word writes, by their X names (``x30`` for
    the link register), or ``None`` if capstone cannot decode it."""
    for insn in _CS.disasm(word.to_bytes(4, "little"), 0, 1):
        out = set()
        for r in insn.regs_access()[1]:
            found = slot(insn.reg_name(r))
            if found is not None and found[0] >= 0:
                out.add(f"x{found[0]}")
        return frozenset(out)
    return None


def plan_of(insn: Any) -> Plan | None:  # a capstone CsInsn, with details
    m: str = insn.mnemonic
    ops = list(insn.operands)
    name: Callable[[int], str] = insn.reg_name
    regs = [name(o.reg) for o in ops if o.type == cs64.ARM64_OP_REG]
    mems = [o for o in ops if o.type == cs64.ARM64_OP_MEM]
    if len(mems) != 1 or not regs:
        return None
    mem = mems[0].mem
    base = name(mem.base)
    index = name(mem.index) if mem.index else ""
    shift = mems[0].shift.value if mems[0].shift.type == cs64.ARM64_SFT_LSL else 0
    extend = mems[0].ext
    kind = AccessKind.LOAD
    dests: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    op = ""
    acquire = release = exclusive = signed = False
    suffix = ""
    if mt := _ATOMIC.fullmatch(m):
        kind, op, order, suffix = AccessKind.RMW, mt.group(2), mt.group(3) or "", mt.group(4)
        sources = (regs[0],)
        dests = (regs[1],) if mt.group(1) == "ld" and len(regs) > 1 else ()
        acquire, release = "a" in order, "l" in order
    elif mt := _SWP.fullmatch(m):
        kind, op, order, suffix = AccessKind.RMW, "swp", mt.group(1) or "", mt.group(2)
        sources, dests = (regs[0],), (regs[1],)
        acquire, release = "a" in order, "l" in order
    elif mt := _CAS.fullmatch(m):
        kind, op, order, suffix = AccessKind.RMW, "cas", mt.group(2) or "", mt.group(3)
        half = len(regs) // 2  # CASP: Rs, Rs+1, Rt, Rt+1
        sources, new = tuple(regs[:half]), tuple(regs[half:])
        dests = sources  # Rs receives what memory held
        acquire, release = "a" in order, "l" in order
    elif mt := _LDX.fullmatch(m):
        dests, exclusive, acquire, suffix = tuple(regs), True, bool(mt.group(1)), mt.group(2)
    elif mt := _STX.fullmatch(m):
        kind, exclusive, release, suffix = AccessKind.STORE, True, bool(mt.group(1)), mt.group(2)
        sources = tuple(regs[1:])  # regs[0]: the status register
    elif mt := _LD_ACQ.fullmatch(m):
        dests, acquire, suffix = tuple(regs), True, mt.group(2)
    elif mt := _ST_REL.fullmatch(m):
        kind, sources, release, suffix = AccessKind.STORE, tuple(regs), True, mt.group(2)
    elif mt := _LD.fullmatch(m):
        dests, suffix = tuple(regs), mt.group(2) or ("sw" if m == "ldpsw" else "")
    elif mt := _ST.fullmatch(m):
        kind, sources, suffix = AccessKind.STORE, tuple(regs), mt.group(2) or ""
    else:
        return None
    suffix = suffix or ""
    signed = suffix.startswith("s") and len(suffix) == 2
    width = suffix[-1:] if suffix else ""
    if width in ("b", "h"):
        size = 1 if width == "b" else 2
    elif width == "w":
        size = 4
    else:
        first = (dests or sources or regs)[0]
        size = REG_BYTES.get(first[:1], 8)
    if kind is AccessKind.LOAD and not dests:
        return None
    slots = tuple(slot(r) for r in (base, index or "xzr", *sources, *new))
    return Plan(m, kind, size, dests, sources, new, base, index, extend, shift, mem.disp,
                 signed, op, acquire, release, exclusive, slots)


def extend(value: int, ext: int) -> int:
    """An index register's value, extended as the addressing mode says."""
    bits = {cs64.ARM64_EXT_UXTB: 8, cs64.ARM64_EXT_UXTH: 16, cs64.ARM64_EXT_UXTW: 32,
            cs64.ARM64_EXT_SXTB: -8, cs64.ARM64_EXT_SXTH: -16,
            cs64.ARM64_EXT_SXTW: -32}.get(ext, 64)
    n = abs(bits)
    value &= (1 << n) - 1
    if bits < 0 and value >> (n - 1):
        value -= 1 << n
    return value


def sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def rmw(op: str, old: int, operand: int, bits: int) -> int:
    mask = (1 << bits) - 1
    if op == "add":
        return (old + operand) & mask
    if op == "clr":
        return old & ~operand & mask
    if op == "eor":
        return (old ^ operand) & mask
    if op == "set":
        return (old | operand) & mask
    if op in ("smax", "smin"):
        a, b = sext(old, bits), sext(operand, bits)
        return (max(a, b) if op == "smax" else min(a, b)) & mask
    if op in ("umax", "umin"):
        return max(old, operand) if op == "umax" else min(old, operand)
    return operand & mask  # swp




def effective_address(p: Plan, regs: Sequence[int]) -> tuple[int, list[int | None]]:
    """Where ``p`` accesses, from X0..X30 and SP (``regs``); and the values of its
    base, index, sources and new registers (``None``: a register not read, SIMD)."""
    vals = [None if s is None else regs[s[0]] & s[1] if s[0] >= 0 else 0 for s in p.slots]
    addr = (vals[0] or 0) + p.disp
    if p.index:
        addr += extend(vals[1] or 0, p.extend) << p.shift
    return addr & MASK64, vals
