"""Visible-operation classification, checked against Keystone/GNU encodings and Capstone."""

from __future__ import annotations

import random
import re

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from keystone_word import assemble

from testbed.asm import Source, link
from testbed.explain import decode_access
from testbed.isa import NOP, MemKind, MemOp, OpKind, b, brk, classify, decode_mem, is_cmodx
from testbed.resources import kernels_dir
from testbed.scenario import link_kernels


def enc(text: str) -> int:
    data = assemble(text)
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
            assert _agrees(line.word) is not False, line  # the decoded access too
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


# ------------------------------------------------------------ the decoded access (MemOp)


def asm(text: str) -> int:
    """One instruction through testbed.asm (which encodes what Keystone cannot)."""
    image = link([Source("t.S", f"\t.text\n\t{text}\n")], text_base=0x1000, data_base=0x10000)
    return image.listing[0].word


L, S, RMW = MemKind.LOAD, MemKind.STORE, MemKind.RMW


@pytest.mark.parametrize(("text", "mem"), [
    # LSE atomics: rs is the operand, rt receives the old value (31: the ST<op> aliases)
    ("cas w0, w6, [x1]", MemOp(RMW, 4, op="cas", rs=0, rt=6, rn=1)),
    ("casa x0, x6, [x1]", MemOp(RMW, 8, op="cas", acquire=True, rs=0, rt=6, rn=1)),
    ("caslb w0, w6, [x1]", MemOp(RMW, 1, op="cas", release=True, rs=0, rt=6, rn=1)),
    ("casalh w0, w6, [x1]", MemOp(RMW, 2, op="cas", acquire=True, release=True, rs=0, rt=6,
                                  rn=1)),
    ("caspal x2, x3, x4, x5, [x6]", MemOp(RMW, 8, 2, op="cas", acquire=True, release=True,
                                          rs=2, rt=4, rn=6)),
    ("casp w2, w3, w4, w5, [x6]", MemOp(RMW, 4, 2, op="cas", rs=2, rt=4, rn=6)),
    ("swp w4, w5, [x3]", MemOp(RMW, 4, op="swp", rs=4, rt=5, rn=3)),
    ("swpal x4, x5, [x3]", MemOp(RMW, 8, op="swp", acquire=True, release=True, rs=4, rt=5,
                                 rn=3)),
    ("swpab w4, wzr, [x3]", MemOp(RMW, 1, op="swp", acquire=True, rs=4, rt=31, rn=3)),
    ("ldadd w10, w4, [x3]", MemOp(RMW, 4, op="add", rs=10, rt=4, rn=3)),
    ("ldclrah w1, w2, [x3]", MemOp(RMW, 2, op="clr", acquire=True, rs=1, rt=2, rn=3)),
    ("ldeorl x1, x2, [x3]", MemOp(RMW, 8, op="eor", release=True, rs=1, rt=2, rn=3)),
    ("ldsetalb w1, w2, [x3]", MemOp(RMW, 1, op="set", acquire=True, release=True, rs=1, rt=2,
                                    rn=3)),
    ("ldsmax x1, x2, [x3]", MemOp(RMW, 8, op="smax", rs=1, rt=2, rn=3)),
    ("ldsmin w1, w2, [x3]", MemOp(RMW, 4, op="smin", rs=1, rt=2, rn=3)),
    ("ldumax w1, w2, [x3]", MemOp(RMW, 4, op="umax", rs=1, rt=2, rn=3)),
    ("ldumina w1, w2, [x3]", MemOp(RMW, 4, op="umin", acquire=True, rs=1, rt=2, rn=3)),
    ("stadd w10, [x3]", MemOp(RMW, 4, op="add", rs=10, rt=31, rn=3)),
    ("staddlh w10, [x3]", MemOp(RMW, 2, op="add", release=True, rs=10, rt=31, rn=3)),
    ("ldadda w10, wzr, [x3]", MemOp(RMW, 4, op="add", acquire=True, rs=10, rt=31, rn=3)),
    # RCpc: acquire_pc, not acquire
    ("ldapr w2, [x3]", MemOp(L, 4, acquire_pc=True, rt=2, rn=3)),
    ("ldapr x2, [x3]", MemOp(L, 8, acquire_pc=True, rt=2, rn=3)),
    ("ldaprb w2, [x3]", MemOp(L, 1, acquire_pc=True, rt=2, rn=3)),
    ("ldaprh w2, [x3]", MemOp(L, 2, acquire_pc=True, rt=2, rn=3)),
    ("ldapur x2, [x3, #-8]", MemOp(L, 8, acquire_pc=True, rt=2, rn=3)),
    ("ldapursh w2, [x3]", MemOp(L, 2, acquire_pc=True, signed=True, rt=2, rn=3)),
    ("ldapursw x2, [x3]", MemOp(L, 4, acquire_pc=True, signed=True, rt=2, rn=3)),
    ("stlur w2, [x3, #4]", MemOp(S, 4, release=True, rt=2, rn=3)),
    ("stlurb w2, [x3]", MemOp(S, 1, release=True, rt=2, rn=3)),
    # what Keystone already encoded: plain, acquire/release, exclusive, pairs, SIMD
    ("ldar x0, [x4]", MemOp(L, 8, acquire=True, rt=0, rn=4)),
    ("ldarb w0, [x4]", MemOp(L, 1, acquire=True, rt=0, rn=4)),
    ("stlr w0, [x4]", MemOp(S, 4, release=True, rt=0, rn=4)),
    ("ldxr w0, [x1]", MemOp(L, 4, exclusive=True, rt=0, rn=1)),
    ("ldaxrh w0, [x1]", MemOp(L, 2, exclusive=True, acquire=True, rt=0, rn=1)),
    ("stxr w2, x0, [x1]", MemOp(S, 8, exclusive=True, rs=2, rt=0, rn=1)),
    ("stlxrb w2, w0, [x1]", MemOp(S, 1, exclusive=True, release=True, rs=2, rt=0, rn=1)),
    ("ldaxp x0, x1, [x2]", MemOp(L, 8, 2, exclusive=True, acquire=True, rt=0, rt2=1, rn=2)),
    ("stlxp w3, w0, w1, [x2]", MemOp(S, 4, 2, exclusive=True, release=True, rs=3, rt=0, rt2=1,
                                     rn=2)),
    ("ldr w0, [x1]", MemOp(L, 4, rt=0, rn=1)),
    ("ldrsb x0, [x1, #1]!", MemOp(L, 1, signed=True, rt=0, rn=1)),
    ("ldrsw x0, [x1], #4", MemOp(L, 4, signed=True, rt=0, rn=1)),
    ("ldursh w0, [x1, #-2]", MemOp(L, 2, signed=True, rt=0, rn=1)),
    ("str x0, [x1, x2, lsl #3]", MemOp(S, 8, rt=0, rn=1)),
    ("strh w0, [x1, w2, uxtw]", MemOp(S, 2, rt=0, rn=1)),
    ("sttrb w0, [x1]", MemOp(S, 1, rt=0, rn=1)),
    ("ldp x0, x1, [x2], #0x10", MemOp(L, 8, 2, rt=0, rt2=1, rn=2)),
    ("stnp w0, w1, [x2]", MemOp(S, 4, 2, rt=0, rt2=1, rn=2)),
    ("ldpsw x0, x1, [x2]", MemOp(L, 4, 2, signed=True, rt=0, rt2=1, rn=2)),
    ("ldr q0, [x1]", MemOp(L, 16, simd=True, rt=0, rn=1)),
    ("str d0, [x1, #8]", MemOp(S, 8, simd=True, rt=0, rn=1)),
    ("stp q0, q1, [x2]", MemOp(S, 16, 2, simd=True, rt=0, rt2=1, rn=2)),
])
def test_memory_operations_are_decoded(text: str, mem: MemOp) -> None:
    word = asm(text)
    info = classify(word)
    assert info.kind is OpKind.MEMORY
    assert info.mem == mem
    assert decode_mem(word) == mem


@pytest.mark.parametrize("text", [
    "cas w0, w1, [sp]", "ldaddal x0, x1, [sp]", "stadd w0, [sp]", "ldapr w0, [sp]",
    "stlur x0, [sp, #-8]", "caspl x0, x1, x2, x3, [sp]",
])
def test_atomics_on_the_stack_stay_invisible(text: str) -> None:
    """SP-based accesses are the CPU's private stack, atomics included."""
    assert classify(asm(text)).kind is OpKind.INVISIBLE
    assert decode_mem(asm(text)) is not None


@pytest.mark.parametrize("text", [
    "prfm pldl1keep, [x0]", "prfum pstl1strm, [x0, #-1]", "ld1 {v0.16b}, [x1]",
    "st1 {v0.s}[1], [x1]", "ldr x0, 0x1040",
])
def test_forms_without_a_described_access(text: str) -> None:
    assert decode_mem(asm(text)) is None


def test_non_memory_words_have_no_access() -> None:
    for text in ("nop", "dmb ish", "dc cvau, x0", "add x0, x1, #1", "b 0x2000"):
        assert classify(asm(text)).mem is None
        assert decode_mem(asm(text)) is None
    assert classify(asm("dc zva, x0")).kind is OpKind.MEMORY  # a store with no record


def _agrees(word: int) -> bool | None:
    """Whether decode_mem agrees with the access probe's Capstone decoding of ``word``
    (``None``: neither describes an access)."""
    mem, plan = decode_mem(word), decode_access(word)
    if plan is None:
        return None if mem is None else _mnemonic(word) in ("", "prfm", "prfum")
    if mem is None:
        return False
    ours = (mem.kind.value, mem.size, mem.count, mem.acquire or mem.acquire_pc, mem.release,
            mem.exclusive, mem.signed, mem.op)
    theirs = (plan.kind.value, plan.size, plan.elements, plan.acquire, plan.release,
              plan.exclusive, plan.signed, plan.op)
    return ours == theirs


_CS = Cs(CS_ARCH_ARM64, CS_MODE_ARM)


def _mnemonic(word: int) -> str:
    """Capstone's mnemonic, "" if it cannot decode the word."""
    for _a, _s, mnem, _ops in _CS.disasm_lite(word.to_bytes(4, "little"), 0):
        return str(mnem)
    return ""


def test_decoding_agrees_with_capstone_on_random_load_store_words() -> None:
    """Seeded random words of the load/store class: where the Capstone-based access
    probe (testbed.explain) describes an access, decode_mem describes the same one;
    where it does not, the word is not an access Capstone knows (prefetches aside)."""
    rnd = random.Random(13)
    compared = 0
    for _ in range(60_000):
        word = (rnd.getrandbits(32) & ~(0b1010 << 25)) | 0b0100 << 25
        agree = _agrees(word)
        assert agree is not False, f"{word:#010x} {_mnemonic(word)}: {decode_mem(word)} " \
                                   f"vs {decode_access(word)}"
        compared += agree is True and decode_access(word) is not None
    assert compared > 8_000


def test_decoding_agrees_with_capstone_on_every_lse_form() -> None:
    for sz in ("", "b", "h"):
        for order in ("", "a", "l", "al"):
            for op in ("add", "clr", "eor", "set", "smax", "smin", "umax", "umin"):
                for rt in ("w2", "wzr"):
                    word = asm(f"ld{op}{order}{sz} w1, {rt}, [x3]")
                    assert _agrees(word), f"ld{op}{order}{sz}"
            for m in (f"swp{order}{sz}", f"cas{order}{sz}"):
                assert _agrees(asm(f"{m} w1, w2, [x3]")), m
        assert _agrees(asm(f"ldapr{sz} w1, [x3]"))
        assert _agrees(asm(f"ldapur{sz} w1, [x3, #-3]"))
        assert _agrees(asm(f"stlur{sz} w1, [x3, #-3]"))
    for order in ("", "a", "l", "al"):
        assert _agrees(asm(f"casp{order} x0, x1, x2, x3, [x4]"))
