"""The machine: exceptions and ERET, IPIs, CTR_EL0, text accesses, translated-code
coherence with the I-view, faults and liveness — each on real AArch64 code."""

from __future__ import annotations

import pytest
from conftest import MachineFactory, build_image

from testbed import layout
from testbed.findings import EventKind
from testbed.isa import NOP
from testbed.machine import Machine
from testbed.memory import CacheType, FetchConfig
from testbed.scheduler import run
from testbed.strategies import RandomWalk, RoundRobin

U64 = 2**64 - 1


def u64s(m: Machine, sym: str, n: int) -> list[int]:
    raw = m.read(m.addr(sym), 8 * n)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 8 * n, 8)]


def u32s(m: Machine, sym: str, n: int) -> list[int]:
    raw = m.read(m.addr(sym), 4 * n)
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 4 * n, 4)]


def register_break_hook(m: Machine, fn: str, imm: int, mask: int = 0) -> None:
    entry = b"".join(v.to_bytes(8, "little") for v in (m.addr(fn), imm, mask))
    m.write(m.addr("break_hooks"), entry)


BRK_PROGRAM = """
	.text
	.global t_brk
t_brk:
	ldr	x1, =marker
	mov	w2, #1
	str	w2, [x1]
	.global brk_here
brk_here:
	brk	#0x42
	mov	w2, #2
	str	w2, [x1]
	ret

	.global brk_skip
brk_skip:				// break hook: record, then regs->pc += 4
	ldr	x9, =seen
	str	x1, [x9]			// esr
	ldr	x10, [x0, #256]			// regs->pc (ELR_EL1 at entry)
	str	x10, [x9, #8]
	ldr	x11, [x0, #264]			// regs->pstate (SPSR_EL1 at entry)
	str	x11, [x9, #16]
	mrs	x12, daif
	str	x12, [x9, #24]
	add	x10, x10, #4
	str	x10, [x0, #256]
	mov	x0, #0
	ret

	.global t_udf
t_udf:
	.word	0x00000000

	.data
	.align	3
	.global marker
marker:	.quad	0
	.global seen
seen:	.quad	0, 0, 0, 0
"""


def test_brk_enters_the_sync_vector_and_eret_returns(make_machine: MachineFactory) -> None:
    m = make_machine(BRK_PROGRAM, 1, starts=[(0, "t_brk", ())],
                     setup=lambda m: register_break_hook(m, "brk_skip", 0x42))
    result = run(m, RoundRobin(), scenario="t")
    assert result.findings == [] and result.finished
    esr, elr, spsr, daif = u64s(m, "seen", 4)
    assert esr == (0x3C << 26) | (1 << 25) | 0x42  # EC=BRK64, IL, imm16
    assert elr == m.addr("brk_here")  # ELR points at the BRK itself
    assert spsr & 0x3FF == 0x3C5  # the interrupted PSTATE: EL1h, DAIF masked
    assert daif == 0x3C0  # the handler runs with DAIF masked
    assert u64s(m, "marker", 1) == [2]  # execution resumed after the BRK
    kinds = [e.kind for e in result.events]
    assert kinds.index(EventKind.EXCEPTION) < kinds.index(EventKind.ERET)
    # The ground truth shows the BRK, then the vector, then the instruction after it.
    addrs = [a for _, a, _ in result.ground_truth()[0]]
    brk = addrs.index(m.addr("brk_here"))
    assert addrs[brk + 1] == m.addr("vectors") + 0x200
    assert m.addr("brk_here") + 4 in addrs[brk + 2:]


def test_unhandled_brk_and_undefined_instruction_are_kernel_deaths(
        make_machine: MachineFactory) -> None:
    m = make_machine(BRK_PROGRAM.replace("brk	#0x42", "brk	#0x43"), 1,
                     starts=[(0, "t_brk", ())])
    result = run(m, RoundRobin(), scenario="t")
    assert [f.oracle for f in result.findings] == ["kernel-die"]
    assert "reason 0x3" in result.findings[0].message  # DIE_UNHANDLED_BRK

    m = make_machine(BRK_PROGRAM, 1, starts=[(0, "t_udf", ())])
    result = run(m, RoundRobin(), scenario="t")
    assert [f.oracle for f in result.findings] == ["kernel-die"]
    assert "reason 0x2" in result.findings[0].message  # DIE_UNHANDLED_SYNC


IPI_PROGRAM = """
	.text
	.global t_send
t_send:					// x0 = target CPU
	ldr	x9, =GIC_BASE
	mov	w1, #(1 << 8)			// IPI number 1
	orr	w1, w1, w0
	str	w1, [x9, #GIC_SEND]
	ret

	.global t_receive
t_receive:
	ldr	x9, =ipi_flag
	mov	x10, #0
1:	add	x10, x10, #1			// spin with IRQs masked first
	yield
	cmp	x10, #8
	b.lo	1b
	.global unmask_here
unmask_here:
	msr	daifclr, #2
2:	ldr	w11, [x9]
	cbnz	w11, 3f
	yield
	b	2b
3:	msr	daifset, #2
	ret

	.global set_flag
set_flag:				// IPI handler: w0 = IPI number
	ldr	x9, =ipi_flag
	add	w0, w0, #0x100
	str	w0, [x9]
	ret

	.data
	.align	3
	.global ipi_flag
ipi_flag: .quad	0
"""


def set_ipi_handler(m: Machine) -> None:
    m.write(m.addr("ipi_handlers") + 8, m.addr("set_flag").to_bytes(8, "little"))


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5])
def test_ipi_is_taken_only_when_unmasked(make_machine: MachineFactory,
                                         seed: int | None) -> None:
    m = make_machine(IPI_PROGRAM, 2, starts=[(0, "t_send", (1,)), (1, "t_receive", ())],
                     setup=set_ipi_handler)
    strategy = RoundRobin() if seed is None else RandomWalk(seed, p_irq=0.5)
    result = run(m, strategy, scenario="t")
    assert result.findings == [] and result.finished
    assert u64s(m, "ipi_flag", 1) == [0x101]  # the handler ran for IPI 1
    percpu1 = layout.percpu_base(1) + layout.PERCPU_IPI_COUNT
    assert int.from_bytes(m.read(percpu1, 8), "little") == 1
    unmask = [s for s, a, _ in result.ground_truth()[1] if a == m.addr("unmask_here")]
    irqs = [e.step for e in result.events if e.kind is EventKind.IRQ]
    sends = [e.step for e in result.events if e.kind is EventKind.IPI_SEND]
    assert len(irqs) == 1 and len(unmask) == 1
    assert irqs[0] > unmask[0] and irqs[0] > sends[0]


def test_ipi_to_all_others_and_ack(make_machine: MachineFactory) -> None:
    src = IPI_PROGRAM.replace("str	w1, [x9, #GIC_SEND]", "str	w1, [x9, #GIC_SEND_OTHERS]")
    m = make_machine(src, 3, starts=[(0, "t_send", (0,)), (1, "t_receive", ()),
                                     (2, "t_receive", ())], setup=set_ipi_handler)
    result = run(m, RoundRobin(), scenario="t")
    assert result.finished and result.findings == []
    for cpu in (1, 2):
        base = layout.percpu_base(cpu) + layout.PERCPU_IPI_COUNT
        assert int.from_bytes(m.read(base, 8), "little") == 1
    assert int.from_bytes(m.read(layout.percpu_base(0), 8), "little") == 0


CTR_PROGRAM = """
	.text
	.global t_ctr
t_ctr:
	mrs	x1, ctr_el0
	ldr	x2, =ctr_value
	str	x1, [x2]
	ret
	.data
	.align	3
	.global ctr_value
ctr_value: .quad 0
"""


@pytest.mark.parametrize("cache", list(CacheType))
def test_ctr_el0_reports_the_configured_idc_dic(make_machine: MachineFactory,
                                                cache: CacheType) -> None:
    m = make_machine(CTR_PROGRAM, 1, cache, starts=[(0, "t_ctr", ())])
    run(m, RoundRobin(), scenario="t")
    ctr = u64s(m, "ctr_value", 1)[0]
    assert ctr == FetchConfig(cache).ctr_el0
    assert (ctr >> 28) & 1 == cache.idc and (ctr >> 29) & 1 == cache.dic


TEXT_PROGRAM = """
	.text
	.global t_text
t_text:					// x0 = victim (a text address)
	stp	x29, x30, [sp, #-16]!
	mov	x19, x0
	ldr	x20, =out
	ldr	w1, [x19]			// a data load of code: the D-side (still NOP)
	str	w1, [x20]
	movz	w2, #0x0003
	movk	w2, #0x1400, lsl #16		// B .+12: to mov x0, #2
	str	w2, [x19]			// a data store to the text address: the D-side
	ldr	w3, [x19]			// reads the D-side, not this CPU's I-view
	str	w3, [x20, #4]
	mov	x21, #0
1:	blr	x19				// runs the I-view: still the NOP
	add	x21, x21, x0
	add	x22, x22, #1
	cmp	x22, #10
	b.lo	1b
	str	w21, [x20, #8]
	isb
	mov	x21, #0
	mov	x22, #0
2:	blr	x19
	add	x21, x21, x0
	add	x22, x22, #1
	cmp	x22, #10
	b.lo	2b
	str	w21, [x20, #12]
	ldp	x29, x30, [sp], #16
	ret

	.global victim
victim:
	nop
	mov	x0, #1
	ret
	mov	x0, #2
	ret

	.data
	.align	3
	.global out
out:	.word	0, 0, 0, 0
"""


def start_victim(m: Machine) -> None:
    m.start(0, "t_text", m.addr("victim"))


@pytest.mark.parametrize(("cache", "after_isb"), [
    (CacheType.DIC1, 20),  # the store invalidated the line: ISB brings the new code
    (CacheType.IDC1, 10),  # no IC IVAU: the I-cache keeps the NOP across the ISB
    (CacheType.IDC0, 10)])
def test_text_accesses_reach_the_dside_and_code_follows_the_iview(
        make_machine: MachineFactory, cache: CacheType, after_isb: int) -> None:
    m = make_machine(TEXT_PROGRAM, 1, cache, setup=start_victim)
    result = run(m, RoundRobin(), scenario="t")
    assert result.findings == [] and result.finished
    assert u32s(m, "out", 4) == [NOP, 0x14000003, 10, after_isb]
    victim = m.addr("victim") - layout.TEXT_BASE
    assert m.iviews[0][victim:victim + 4] == (
        (0x14000003).to_bytes(4, "little") if cache is CacheType.DIC1 else
        NOP.to_bytes(4, "little"))


def test_reset_restores_the_iview_and_drops_stale_translations(
        make_machine: MachineFactory) -> None:
    m = make_machine(TEXT_PROGRAM, 1, CacheType.DIC1, setup=start_victim)
    digests = set()
    for _ in range(3):  # the second run must not execute the first run's patched code
        result = run(m, RoundRobin(), scenario="t")
        assert u32s(m, "out", 4) == [NOP, 0x14000003, 10, 20]
        digests.add(result.trace_digest())
    assert len(digests) == 1


def test_guest_fault_and_liveness_are_findings(make_machine: MachineFactory) -> None:
    src = """
	.text
	.global t_fault
t_fault:
	movz	x0, #0x1234
	ldr	x1, [x0]
	ret
	.global t_spin
t_spin:
1:	add	x0, x0, #1
	b	1b
"""
    m = make_machine(src, 1, starts=[(0, "t_fault", ())])
    result = run(m, RoundRobin(), scenario="t")
    assert [f.oracle for f in result.findings] == ["guest-fault"]
    assert "t_fault+0x4" in result.findings[0].message
    m = make_machine(src, 1, starts=[(0, "t_spin", ())], budget=1000)
    result = run(m, RoundRobin(), scenario="t")  # the spin has no visible operation at all
    assert [f.oracle for f in result.findings] == ["liveness"]
    assert "1000 instructions without a visible operation" in result.findings[0].message


TORN_PROGRAM = """
	.text
	.global t_torn_writer
t_torn_writer:				// x0 = victim: write B .+8 in two halves
	ldr	x1, =TEXT_ALIAS_OFFSET
	add	x1, x0, x1
	movz	w2, #0x0002
	strh	w2, [x1]
	ldr	x3, =torn_flag
	mov	w4, #1
	str	w4, [x3]
	movz	w2, #0x1400
	strh	w2, [x1, #2]
	ret

	.global t_torn_reader
t_torn_reader:				// x0 = victim
	stp	x29, x30, [sp, #-16]!
	ldr	x3, =torn_flag
1:	ldr	w4, [x3]
	cbnz	w4, 2f
	yield
	b	1b
2:	isb
	blr	x0
	ldp	x29, x30, [sp], #16
	ret

	.global victim
victim:
	nop
	mov	x0, #1
	ret
	mov	x0, #2
	ret

	.data
	.align	3
	.global torn_flag
torn_flag: .quad 0
"""


def test_a_torn_word_executed_is_reported(make_machine: MachineFactory) -> None:
    def setup(m: Machine) -> None:
        m.start(0, "t_torn_writer", m.addr("victim"))
        m.start(1, "t_torn_reader", m.addr("victim"))

    m = make_machine(TORN_PROGRAM, 2, CacheType.DIC1, setup=setup)
    oracles: set[str] = set()
    for seed in range(40):
        result = run(m, RandomWalk(seed), scenario="t")
        for f in result.findings:
            oracles.add(f.oracle)
            assert f.oracle == "torn-word" and f.addr == m.addr("victim")
            assert f.words == (0xD5030002,)  # new low half, old high half of the NOP
    assert oracles == {"torn-word"}


def test_unaligned_nosync_patch_is_rejected(make_machine: MachineFactory) -> None:
    src = """
	.text
	.global site
site:	nop
"""
    m = make_machine(src, 1, with_insn=True, setup=lambda m: m.start(
        0, "aarch64_insn_patch_text_nosync", m.addr("site") + 2, 0x14000001))
    result = run(m, RoundRobin(), scenario="t")
    assert result.finished
    assert m.registers(0, ["x0"])["x0"] == (-22) & U64  # -EINVAL
    assert not any(e.kind is EventKind.TEXT_STORE for e in result.events)


def test_machine_sizes_from_2_to_64_cpus() -> None:
    image = build_image(CTR_PROGRAM)
    for n in (2, 64):
        m = Machine(image, n, FetchConfig())
        for cpu in range(n):
            m.start(cpu, "t_ctr")
        m.seal()
        result = run(m, RandomWalk(n), scenario="t")
        assert result.finished and len(result.ground_truth()) == n
