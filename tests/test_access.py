"""Where a load or store goes (testbed/access.py), computed from register values, on
real encodings (Keystone, through tests/keystone_word.py)."""

from __future__ import annotations

import pytest
from keystone_word import word

from testbed.access import AccessKind, decode_access, effective_address, rmw


def regs(**values: int) -> list[int]:
    r = [0] * 32
    for name, v in values.items():
        r[31 if name == "sp" else int(name[1:])] = v
    return r


CASES = [
    ("ldr w1, [x2, #0x4]", regs(x2=0x1000), 0x1004, AccessKind.LOAD, 4),
    ("ldr x1, [x2, x3, lsl #0x3]", regs(x2=0x1000, x3=2), 0x1010, AccessKind.LOAD, 8),
    ("ldr w1, [x2, w3, sxtw #0x2]", regs(x2=0x1000, x3=0xFFFF_FFFF), 0xFFC,
     AccessKind.LOAD, 4),
    ("str w1, [x4, w2, sxtw]", regs(x4=0x2000, x2=3), 0x2003, AccessKind.STORE, 4),
    ("ldp x1, x2, [x3, #-0x10]!", regs(x3=0x3000), 0x2FF0, AccessKind.LOAD, 8),
    ("ldr x1, [x3], #0x8", regs(x3=0x3000), 0x3000, AccessKind.LOAD, 8),
    ("ldarb w1, [x5]", regs(x5=0x4001), 0x4001, AccessKind.LOAD, 1),
    ("stlrh w1, [x5]", regs(x5=0x4002), 0x4002, AccessKind.STORE, 2),
    ("ldxr x1, [x6]", regs(x6=0x5000), 0x5000, AccessKind.LOAD, 8),
    ("stxr w9, x1, [x6]", regs(x6=0x5000), 0x5000, AccessKind.STORE, 8),
    # Capstone names X30 and X29 "lr" and "fp" as base registers
    ("ldr w6, [x30]", regs(x30=0x6008), 0x6008, AccessKind.LOAD, 4),
    ("str x1, [x29, #0x10]", regs(x29=0x7000), 0x7010, AccessKind.STORE, 8),
]


@pytest.mark.parametrize("src, values, addr, kind, size", CASES, ids=[c[0] for c in CASES])
def test_effective_address(src: str, values: list[int], addr: int, kind: AccessKind,
                           size: int) -> None:
    plan = decode_access(word(src))
    assert plan is not None and plan.kind is kind and plan.size == size
    assert effective_address(plan, values)[0] == addr


def test_ordering_flags() -> None:
    ldar, stlr, ldxr = (decode_access(word(s)) for s in
                        ("ldar w1, [x2]", "stlr w1, [x2]", "ldaxr w1, [x2]"))
    assert ldar is not None and ldar.acquire and not ldar.release
    assert stlr is not None and stlr.release and not stlr.acquire
    assert ldxr is not None and ldxr.exclusive and ldxr.acquire


def test_atomic_results() -> None:
    assert rmw("add", 5, 3, 32) == 8
    assert rmw("clr", 0b1111, 0b0101, 32) == 0b1010
    assert rmw("smax", 0xFFFF_FFFF, 1, 32) == 1  # -1 < 1, signed
    assert rmw("umax", 0xFFFF_FFFF, 1, 32) == 0xFFFF_FFFF
    assert rmw("swp", 5, 9, 32) == 9
