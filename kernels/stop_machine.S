// stop_machine.S: patching under stop_machine, as arm64 v5.4 aarch64_insn_patch_text()
// does it (arch/arm64/kernel/insn.c), on a minimal stop_machine (kernel/stop_machine.c:
// every online CPU enters with IRQs off, all rendezvous, then all run the function).
//
// struct aarch64_insn_patch { void **text_addrs; u32 *new_insns; int insn_cnt;
//                             atomic_t cpu_count; }

	.equ IPI_STOP, 2
	.equ P_ADDRS, 0
	.equ P_INSNS, 8
	.equ P_CNT, 16
	.equ P_COUNT, 20

	.text

// int stop_machine(int (*fn)(void *), void *data): run fn on every online CPU at once.
	.global stop_machine
stop_machine:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	ldr	x9, =stop_machine_fn
	stp	x0, x1, [x9]			// stop_machine_fn, stop_machine_data
	ldr	x9, =stop_machine_arrived
	str	wzr, [x9]
	ldr	x9, =stop_machine_left
	str	wzr, [x9]
	dsb	ish
	ldr	x9, =GIC_BASE
	mov	w10, #(IPI_STOP << 8)
	str	w10, [x9, #GIC_SEND_OTHERS]	// the stopper threads of the other CPUs
	msr	daifset, #2
	bl	multi_cpu_stop
	mov	w19, w0
	ldr	x9, =stop_machine_left		// wait until every CPU has left fn
	ldr	x10, =nr_cpus
	ldr	w10, [x10]
1:	ldar	w11, [x9]
	cmp	w11, w10
	b.hs	2f
	yield
	b	1b
2:	mov	w0, w19
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// int multi_cpu_stop(void): arrive, wait for all, run fn(data), leave.
multi_cpu_stop:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	ldr	x9, =stop_machine_arrived
1:	ldaxr	w10, [x9]
	add	w10, w10, #1
	stlxr	w11, w10, [x9]
	cbnz	w11, 1b
	ldr	x12, =nr_cpus
	ldr	w12, [x12]
2:	ldar	w10, [x9]			// MULTI_STOP_PREPARE: everyone is here
	cmp	w10, w12
	b.hs	3f
	yield
	b	2b
3:	ldr	x9, =stop_machine_fn
	ldp	x10, x0, [x9]
	blr	x10
	mov	w19, w0
	ldr	x9, =stop_machine_left
4:	ldaxr	w10, [x9]
	add	w10, w10, #1
	stlxr	w11, w10, [x9]
	cbnz	w11, 4b
	mov	w0, w19
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void ipi_stop_machine(int ipi): the IPI handler: this CPU's stopper (IRQs off).
	.global ipi_stop_machine
ipi_stop_machine:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	multi_cpu_stop
	ldp	x29, x30, [sp], #16
	ret

// int aarch64_insn_patch_text_cb(void *arg): v5.4.  The first CPU in patches, then
// increments cpu_count once more; the others wait for that and execute ISB.
	.global aarch64_insn_patch_text_cb
aarch64_insn_patch_text_cb:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	str	x21, [sp, #32]
	mov	x19, x0
	add	x9, x19, #P_COUNT
1:	ldxr	w10, [x9]			// atomic_inc_return(&pp->cpu_count):
	add	w10, w10, #1			// fully ordered (LL/SC with release and a
	stlxr	w11, w10, [x9]			// trailing full barrier, as arm64's
	cbnz	w11, 1b				// __ll_sc_atomic_add_return)
	dmb	ish
	cmp	w10, #1
	b.ne	4f
	mov	x20, #0				// master: patch every instruction
	mov	w21, #0
2:	ldr	w9, [x19, #P_CNT]
	cmp	w20, w9
	b.hs	3f
	cbnz	w21, 3f
	ldr	x9, [x19, #P_ADDRS]
	ldr	x0, [x9, x20, lsl #3]
	ldr	x9, [x19, #P_INSNS]
	ldr	w1, [x9, x20, lsl #2]
	bl	aarch64_insn_patch_text_nosync
	mov	w21, w0
	add	x20, x20, #1
	b	2b
3:	add	x9, x19, #P_COUNT		// atomic_inc(&pp->cpu_count): notify the
5:	ldxr	w10, [x9]			// others with an extra increment (relaxed:
	add	w10, w10, #1			// the flush's "dsb; isb" is what orders the
	stxr	w11, w10, [x9]			// text before it)
	cbnz	w11, 5b
	mov	w0, w21
	b	7f
4:	ldr	x12, =nr_cpus			// while (cpu_count <= num_online_cpus())
	ldr	w12, [x12]
	add	x9, x19, #P_COUNT
6:	ldr	w10, [x9]			// atomic_read(): relaxed
	cmp	w10, w12
	b.hi	8f
	yield
	b	6b
8:	.global	aarch64_insn_patch_text_cb_isb
aarch64_insn_patch_text_cb_isb:
	isb					// control dependency + ISB
	mov	w0, #0
7:	ldr	x21, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// int aarch64_insn_patch_text(void *addrs[], u32 insns[], int cnt)
	.global aarch64_insn_patch_text
aarch64_insn_patch_text:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x9, =insn_patch
	stp	x0, x1, [x9, #P_ADDRS]
	str	w2, [x9, #P_CNT]
	str	wzr, [x9, #P_COUNT]
	ldr	x0, =aarch64_insn_patch_text_cb
	mov	x1, x9
	bl	stop_machine
	ldp	x29, x30, [sp], #16
	ret

// void sm_patcher(void **addrs, u32 *insns, int cnt): one text-poke record for the
// first instruction (before stop_machine: every other CPU's stop IPI follows it), then
// patch, then publish patch_done.
	.global sm_patcher
sm_patcher:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	str	x21, [sp, #32]
	mov	x19, x0
	mov	x20, x1
	mov	w21, w2
	ldr	x0, [x19]			// perf_event_text_poke(addrs[0], old, new)
	ldr	w1, [x0]
	ldr	w2, [x20]
	bl	perf_text_poke_insn
	mov	x0, x19
	mov	x1, x20
	mov	w2, w21
	bl	aarch64_insn_patch_text
	ldr	x2, =patch_result
	str	w0, [x2]
	ldr	x2, =patch_done
	mov	w3, #1
	stlr	w3, [x2]
	ldr	x21, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// void sm_worker(u64 passes): runs add_site with IRQs on; stays online (IRQs on) until
// the patch is done, so that it can join stop_machine.
	.global sm_worker
sm_worker:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	msr	daifclr, #2
	mov	w5, #0
	mov	x8, #0
	ldr	x7, =patch_done
1:	ldar	w9, [x7]
	bl	add_site_call
	add	x8, x8, #1
	cmp	x8, x0
	b.lo	1b
2:	ldar	w9, [x7]
	cbnz	w9, 3f
	yield
	b	2b
3:	msr	daifset, #2
	ldp	x29, x30, [sp], #16
	ret

add_site_call:					// ADD W5,W5,#1 at sm_site, patched to SUB
	.global sm_site
sm_site:
	add	w5, w5, #1
	ret

	.data
	.align	3
	.global stop_machine_fn
stop_machine_fn:
	.quad	0, 0				// fn, data
	.global stop_machine_arrived
stop_machine_arrived:
	.word	0
	.global stop_machine_left
stop_machine_left:
	.word	0
	.align	3
	.global insn_patch
insn_patch:					// struct aarch64_insn_patch
	.space	24
	.global sm_addrs
sm_addrs:
	.quad	sm_site
	.global sm_insns
sm_insns:
	.word	0x510004a5			// sub w5, w5, #1
