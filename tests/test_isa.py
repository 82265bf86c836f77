"""Visible-operation classification, checked against Keystone/GNU encodings and Capstone."""

from __future__ import annotations

import re

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks

from testbed.isa import NOP, OpKind, b, brk, classify, is_cmodx
from testbed.resources import kernels_dir
from testbed.scenario import link_kernels


def enc(text: str) -> int:
    # Numbers in hex: once testbed.asm has installed a symbol resolver, Keystone reads
    # bare numbers as hex in the whole process (measured; see testbed/asm.py).
    data, _ = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN).asm(text, 0x1000)
    assert data and len(data) == 4, text
    return int.from_bytes(bytes(data), "little")


@pytest.mark.parametrize(("text", "kind", "op", "rt"), [
    ("dc cvau, x2", OpKind.DC, "cvau", 2),
    ("dc civac, x7", OpKind.DC, "civac", 7),
    ("ic ivau, x3", OpKind.IC, "ivau", 3),
    ("ic iallu", OpKind.IC, "iallu", 31),
    ("ic ialluis", OpKind.IC, "ialluis", 31),
    ("dsb ish", OpKind.BARRIER, "", 31),
    ("dsb ishst", OpKind.BARRIER, "", 31),
    ("dmb ish", OpKind.BARRIER, "", 31),
    ("isb", OpKind.ISB, "", 31),
    ("yield", OpKind.YIELD, "", 31),
    ("wfe", OpKind.WFE, "", 31),
    ("wfi", OpKind.WFI, "", 31),
    ("sev", OpKind.SEV, "", 31),
    ("sevl", OpKind.SEV, "", 31),
    ("msr daifset, #2", OpKind.DAIF, "", 31),
    ("msr daifclr, #0xf", OpKind.DAIF, "", 31),
    ("msr daif, x0", OpKind.DAIF, "", 31),
    ("eret", OpKind.ERET, "", 31),
    ("ldr w0, [x1]", OpKind.MEMORY, "", 31),
    ("str x0, [x1, x2, lsl #3]", OpKind.MEMORY, "", 31),
    ("ldxr w0, [x1]", OpKind.MEMORY, "", 31),
    ("stlxr w2, w0, [x1]", OpKind.MEMORY, "", 31),
    ("ldar x0, [x4]", OpKind.MEMORY, "", 31),
    ("ldp x0, x1, [x2], #0x10", OpKind.MEMORY, "", 31),
    ("dc zva, x0", OpKind.MEMORY, "", 31),
    ("ldr w0, [sp, #0x8]", OpKind.INVISIBLE, "", 31),
    ("stp x29, x30, [sp, #-0x10]!", OpKind.INVISIBLE, "", 31),
    ("ldr x0, 0x1040", OpKind.INVISIBLE, "", 31),  # literal: constants beside the code
    ("nop", OpKind.INVISIBLE, "", 31),
    ("b 0x2000", OpKind.INVISIBLE, "", 31),
    ("add x0, x1, #1", OpKind.INVISIBLE, "", 31),
    ("mrs x0, ctr_el0", OpKind.INVISIBLE, "", 31),
    ("msr vbar_el1, x0", OpKind.INVISIBLE, "", 31),
])
def test_classify_known_encodings(text: str, kind: OpKind, op: str, rt: int) -> None:
    info = classify(enc(text))
    assert (info.kind, info.op, info.rt) == (kind, op, rt)


_MEM = re.compile(r"^(ld|st|cas|swp)")


def test_classification_agrees_with_capstone_on_every_kernel_word() -> None:
    """Every instruction of every kernel file: memory ops (not SP-based, not literal)
    are MEMORY, and every non-memory instruction Capstone names as a barrier, cache
    op or hint gets its kind."""
    names = sorted(p.name for p in kernels_dir().glob("*.S"))
    image = link_kernels(names)
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    checked = 0
    for line in image.listing:
        if not line.is_insn:
            continue
        insn = next(cs.disasm(line.word.to_bytes(4, "little"), line.addr, 1))
        kind = classify(line.word).kind
        mnem, ops = insn.mnemonic, insn.op_str
        if _MEM.match(mnem) and "[" in ops:
            base = ops[ops.index("[") + 1:].split(",")[0].split("]")[0].strip()
            assert kind is (OpKind.INVISIBLE if base == "sp" else OpKind.MEMORY), line
        elif mnem in ("dsb", "dmb"):
            assert kind is OpKind.BARRIER
        elif mnem == "isb":
            assert kind is OpKind.ISB
        elif mnem in ("dc", "ic"):
            assert kind in (OpKind.DC, OpKind.IC)
        elif mnem == "eret":
            assert kind is OpKind.ERET
        elif mnem in ("yield", "wfe", "wfi", "sev", "sevl"):
            assert kind.name.startswith(mnem[:3].upper())
        else:
            assert kind in (OpKind.INVISIBLE, OpKind.DAIF), line
        checked += 1
    assert checked > 100


def test_encoders_match_the_assembler() -> None:
    assert b(0x1000, 0x1040) == enc("b 0x1040")
    assert b(0x1000, 0x0ff0) == enc("b 0xff0")
    assert brk(0x42) == enc("brk #0x42")
    assert enc("nop") == NOP
    with pytest.raises(ValueError):
        b(0x1000, 0x1002)


@pytest.mark.parametrize(("text", "allowed"), [
    ("b 0x2000", True), ("bl 0x2000", True), ("nop", True), ("brk #1", True),
    ("svc #0", True), ("hvc #0", True), ("smc #0", True), ("isb", True),
    ("b.eq 0x1040", True), ("cbz x0, 0x1040", True), ("tbnz w1, #3, 0x1040", True),
    ("add x0, x0, #1", False), ("ldr w0, [x1]", False), ("dsb ish", False),
    ("br x0", False), ("ret", False), ("mov x0, #1", False),
])
def test_cmodx_set_per_the_arm_arm(text: str, allowed: bool) -> None:
    assert is_cmodx(enc(text)) is allowed
