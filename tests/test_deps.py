"""Register dependencies (testbed/deps.py), decoded from real encodings (Keystone)."""

from __future__ import annotations

import pytest
from keystone_word import word

from testbed.deps import NZCV, SP, Flow, apply, flow

LR = 30


CASES = [
    ("eor w2, w0, w0", Flow((2,), (0, 0))),
    ("add w2, w2, #1", Flow((2,), (2,))),
    ("adds x1, x2, x3", Flow((1, NZCV), (2, 3))),
    ("cmp w0, #1", Flow((NZCV,), (0,))),  # Capstone says it writes w0: it does not
    ("cmp x1, x2", Flow((NZCV,), (1, 2))),
    ("tst w3, #4", Flow((NZCV,), (3,))),
    ("mov x1, #5", Flow((1,), ())),  # a constant: the dependency is broken
    ("movk x1, #0x1, lsl #0x10", Flow((1,), (1,))),
    ("mov x4, x5", Flow((4,), (5,))),
    ("mov x4, sp", Flow((4,), (SP,))),
    ("csel w1, w2, w3, eq", Flow((1,), (2, 3))),  # no dependency on the flags
    ("ccmp x1, x2, #0, ne", Flow((NZCV,), (1, NZCV, 2))),
    ("madd x1, x2, x3, x4", Flow((1,), (2, 3, 4))),
    ("lsl x1, x2, #3", Flow((1,), (2,))),
    ("udiv x1, x2, x3", Flow((1,), (2, 3))),
    ("rev x1, x2", Flow((1,), (2,))),
    ("add x0, x1, w2, sxtw", Flow((0,), (1, 2))),
    ("adr x3, #8", Flow((3,), ())),
    ("cbnz w0, #8", Flow((), (0,), branch=True)),
    ("tbz w7, #3, #8", Flow((), (7,), branch=True)),
    ("b.ne #8", Flow((), (NZCV,), branch=True)),
    ("br x3", Flow((), (3,), branch=True)),
    ("blr x4", Flow((LR,), (4,), branch=True)),
    ("ret", Flow((), (LR,), branch=True)),  # Capstone says it reads nothing
    ("bl #0x10", Flow((LR,), ())),
    ("b #0x10", Flow()),
    ("dmb ish", Flow()),
    ("isb", Flow()),
    ("brk #0x100", Flow()),
    ("mrs x0, tpidr_el1", Flow((0,), ())),
    ("mrs x2, nzcv", Flow((2,), (NZCV,))),
    ("ldr x1, #8", Flow((1,), ())),  # a literal: text, a constant
    # visible (the machine sets w1's view) unless to the CPU's private data: own_*
    ("ldr w1, [x2, #0x4]", Flow(own_load=(1,), own_addr=(2,))),
    ("ldr w1, [x2], #0x4", Flow((2,), (2,), own_load=(1,), own_addr=(2,))),  # writeback
    ("str x3, [x5, x6, lsl #3]", Flow(own_store=(3,), own_addr=(5, 6))),
    ("stp x3, xzr, [x5, #16]", Flow(own_store=(3,), own_addr=(5,))),
    ("ldar w1, [x2]", Flow()),  # acquire: always visible
    ("str w1, [sp, #0x8]", Flow((), (1,), stack_store=True)),
    ("stp x29, x30, [sp, #-0x10]!", Flow((SP,), (29, 30, SP), stack_store=True)),
    ("ldp x29, x30, [sp], #0x10", Flow((29, 30, SP), (SP,), stack_load=True)),
    ("ldr x3, [sp, #0x18]", Flow((3,), (), stack_load=True)),
]


@pytest.mark.parametrize("src, want", CASES, ids=[c[0] for c in CASES])
def test_flow_of_real_encodings(src: str, want: Flow) -> None:
    assert flow(word(src)) == want


def test_unknown_instructions_lose_no_dependency() -> None:
    views = [0] * 33
    views[5] = 7
    ctrl, spill = apply(views, 0x4EA01C00, 0)  # a SIMD ORR: not decoded
    assert views == [7] * 33 and ctrl == 7 and spill == 7


def test_views_flow_through_a_data_dependency_and_a_branch() -> None:
    views = [0] * 33
    views[0] = 3  # w0 was loaded from the message at timestamp 3
    apply(views, word("eor w2, w0, w0"), 0)
    apply(views, word("add w2, w2, #1"), 0)
    assert views[2] == 3  # the classic "data" dependency of the litmus tests
    ctrl, _ = apply(views, word("cbnz w2, #8"), 0)
    assert ctrl == 3
    apply(views, word("mov w2, #1"), 0)
    assert views[2] == 0


def test_a_branch_and_link_writes_a_return_address_that_depends_on_nothing() -> None:
    # BLR X2 reads X2 to branch (a control view) but writes X30 = PC + 4: a load through
    # X30 has no address dependency on X2 (herd: MP+rel+blr Allowed).
    views = [0] * 33
    views[2], views[30] = 5, 9
    ctrl, _ = apply(views, word("blr x2"), 0)
    assert ctrl == 5 and views[30] == 0


def test_the_stack_keeps_views_soundly() -> None:
    views = [0] * 33
    views[29] = 4
    _, spill = apply(views, word("stp x29, x30, [sp, #-0x10]!"), 0)
    views[29] = 0
    _, spill = apply(views, word("ldp x29, x30, [sp], #0x10"), spill)
    assert views[29] == 4 and views[30] == 4 and spill == 4
