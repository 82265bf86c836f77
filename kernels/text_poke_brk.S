// text_poke_brk.S: the BRK text-poke protocol from the November 2019 discussion.
//
// While text-poke events are enabled (perf.S records them), a site is patched by first writing BRK and
// flushing, then (after the perf event) the final instruction; a CPU that hits the BRK
// meanwhile has its BRK handler emulate the instruction being patched on pt_regs, as
// kprobes' simulate_b_bl()/simulate_nop() do (arch/arm64/kernel/probes/simulate-insn.c).
//
// * text_poke_brk_single: the sketch as posted: one global {nosync_addr, nosync_insn}
//   slot (insn, then a release of the address), no IPI.  The handler matches regs->pc
//   against the slot (an acquire), then reads the instruction: the patcher may have
//   moved on to the next site in between.  text_poke_brk_plain: the same with plain
//   accesses.
// * text_poke_brk_sync: a per-patch descriptor with a refcount the handler takes and
//   the patcher waits on (x86 text_poke_bp_batch), plus kick_all_cpus_sync() after
//   writing the BRK and after writing the final instruction.
// A handler that finds no match returns with the PC unchanged: the CPU re-executes
// the instruction, now through a context synchronization event (the ERET).
// Each emulation is logged in the CPU's per-CPU area for the emulation oracle.

	.equ TEXT_POKE_BRK, 0xd42000e0		// BRK #7
	.equ S_LR, 240
	.equ S_PC, 256
	.equ D_ADDR, 0				// struct text_poke_desc { u64 addr; u32 insn;
	.equ D_INSN, 8				//                         atomic_t refs; }
	.equ D_REFS, 12
	.equ D_SIZE, 16
	.equ EMUL_MAX, 64

	.text

// bool simulate_insn(struct pt_regs *regs, u32 insn): B, BL and NOP only.
	.global simulate_insn
simulate_insn:
	ldr	x2, [x0, #S_PC]
	and	w3, w1, #0x7c000000
	movz	w4, #0x1400, lsl #16
	cmp	w3, w4
	b.ne	2f
	sbfx	x5, x1, #0, #26			// simulate_b_bl()
	lsl	x5, x5, #2
	tbz	w1, #31, 1f
	add	x6, x2, #4
	str	x6, [x0, #S_LR]			// BL: regs->regs[30] = pc + 4
1:	add	x2, x2, x5
	str	x2, [x0, #S_PC]
	mov	w0, #1
	ret
2:	movz	w4, #0x201f			// simulate_nop()
	movk	w4, #0xd503, lsl #16
	cmp	w1, w4
	b.ne	3f
	add	x2, x2, #4
	str	x2, [x0, #S_PC]
	mov	w0, #1
	ret
3:	mov	w0, #0
	ret

// void log_emulation(u64 addr, u32 insn): append to this CPU's emulation log.
log_emulation:
	mrs	x9, tpidr_el1
	ldr	x10, [x9, #PERCPU_EMUL_COUNT]
	cmp	x10, #EMUL_MAX
	b.hs	1f
	add	x11, x9, #PERCPU_EMUL_LOG
	add	x11, x11, x10, lsl #4
	str	x0, [x11]
	str	x1, [x11, #8]
	add	x10, x10, #1
	str	x10, [x9, #PERCPU_EMUL_COUNT]
1:	ret

// int emulate_and_log(struct pt_regs *regs, u32 insn)
emulate_and_log:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w1
	ldr	x0, [x19, #S_PC]
	mov	w1, w20
	bl	log_emulation
	mov	x0, x19
	mov	w1, w20
	bl	simulate_insn
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// ---- the sketch as posted: one global slot ----------------------------------------
// Peter Zijlstra, LKML <20191101100440.GU4131@hirez.programming.kicks-ass.net>, with
// its follow-up's WRITE_ONCE(nosync_addr, NULL):
//
//	nosync_insn = insn;
//	smp_store_release(&nosync_addr, tp);
//	ret = aarch64_insn_write(addr, break); __flush_icache_range(...);
//	perf_event_text_poke(...);
//	ret = aarch64_insn_write(addr, insn); __flush_icache_range(...);
//	WRITE_ONCE(nosync_addr, NULL);
//
// and its handler: if (regs->pc == smp_load_acquire(&nosync_addr)) emulate(nosync_insn).
// The `brk_plain` variant (text_poke_brk_plain, text_poke_plain_handler) is the same with
// a plain store and a plain load: on Arm the handler may see the new address and the old
// instruction.

	// text_poke_brk_slot publish: the patcher's body, publishing the
	// slot with the given store instructions (str/stlr).
	.macro text_poke_brk_slot publish
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	str	x21, [sp, #32]
	mov	x19, x0
	mov	w20, w1
	ldr	w21, [x19]			// the old instruction (a data load: the D-side)
	ldr	x9, =nosync_insn
	str	w20, [x9]			// nosync_insn = insn
	ldr	x9, =nosync_addr
	\publish	x19, [x9]			// smp_store_release(&nosync_addr, tp) / plain
	mov	x0, x19
	movz	w1, #(TEXT_POKE_BRK & 0xffff)
	movk	w1, #(TEXT_POKE_BRK >> 16), lsl #16
	bl	aarch64_insn_patch_text_nosync	// BRK, flush
	mov	x0, x19
	mov	w1, w21
	mov	w2, w20
	bl	perf_text_poke_insn		// PERF_RECORD_TEXT_POKE old -> new
	mov	x0, x19
	mov	w1, w20
	bl	aarch64_insn_patch_text_nosync	// the final instruction, flush
	ldr	x9, =nosync_addr
	str	xzr, [x9]			// WRITE_ONCE(nosync_addr, NULL)
	mov	w0, #0
	ldr	x21, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret
	.endm

	// text_poke_slot_handler load: the break hook, reading the slot's address with the
	// given load instruction (ldar/ldr), then the instruction.
	.macro text_poke_slot_handler load
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x9, =nosync_addr
	\load	x10, [x9]			// smp_load_acquire(&nosync_addr) / plain
	ldr	x11, [x0, #S_PC]
	cmp	x10, x11			// regs->pc == nosync_addr ?
	b.ne	1f
	ldr	x9, =nosync_insn
	ldr	w1, [x9]			// ... then the instruction: a second load
	bl	emulate_and_log
1:	mov	x0, #0				// DBG_HOOK_HANDLED (PC unchanged if no match)
	ldp	x29, x30, [sp], #16
	ret
	.endm

// int text_poke_brk_single(void *addr, u32 insn): the sketch as posted.
	.global text_poke_brk_single
text_poke_brk_single:
	text_poke_brk_slot stlr

// int text_poke_single_handler(struct pt_regs *regs, unsigned int esr): its break hook.
	.global text_poke_single_handler
text_poke_single_handler:
	text_poke_slot_handler ldar

// The same with a plain store and a plain load (brk_plain).
	.global text_poke_brk_plain
text_poke_brk_plain:
	text_poke_brk_slot str

	.global text_poke_plain_handler
text_poke_plain_handler:
	text_poke_slot_handler ldr

// ---- the fixed protocol: descriptor, refcount, IPIs ----------------------------------

// int text_poke_brk_sync(void *addr, u32 insn)
	.global text_poke_brk_sync
text_poke_brk_sync:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	mov	x19, x0
	mov	w20, w1
	ldr	w22, [x19]				// the old instruction (the D-side)
	ldr	x9, =text_poke_next			// a fresh descriptor per patch
	ldr	x10, [x9]
	add	x11, x10, #1
	and	x11, x11, #15
	str	x11, [x9]
	ldr	x21, =text_poke_descs
	add	x21, x21, x10, lsl #4
	str	x19, [x21, #D_ADDR]
	str	w20, [x21, #D_INSN]
	mov	w9, #1
	str	w9, [x21, #D_REFS]			// atomic_set(&desc->refs, 1)
	ldr	x9, =text_poke_desc
	stlr	x21, [x9]				// smp_store_release(&bp_desc, desc)
	dmb	ishst					// smp_wmb(): desc before the BRK
	mov	x0, x19
	movz	w1, #(TEXT_POKE_BRK & 0xffff)
	movk	w1, #(TEXT_POKE_BRK >> 16), lsl #16
	bl	aarch64_insn_patch_text_nosync
	mov	x0, x19
	mov	w1, w22
	mov	w2, w20
	bl	perf_text_poke_insn			// PERF_RECORD_TEXT_POKE old -> new,
	bl	text_poke_kick				// then every CPU sees the BRK: each
	mov	x0, x19					// CPU's IPI (timestamped) follows it
	mov	w1, w20
	bl	aarch64_insn_patch_text_nosync
	bl	text_poke_kick				// every CPU now sees the final insn
	ldr	x9, =text_poke_desc
	str	xzr, [x9]				// WRITE_ONCE(bp_desc, NULL)
	add	x9, x21, #D_REFS			// if (!atomic_dec_and_test(&refs))
1:	ldxr	w10, [x9]				// (fully ordered: LL/SC with release
	sub	w10, w10, #1				//  and a trailing full barrier, as
	stlxr	w11, w10, [x9]				//  arm64's __ll_sc_atomic_sub_return)
	cbnz	w11, 1b
	dmb	ish
2:	ldar	w10, [x9]				//   atomic_cond_read_acquire(&refs, !VAL)
	cbz	w10, 3f
	yield
	b	2b
3:	mov	w0, #0
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// kick_all_cpus_sync(), unless text_poke_brk_ipis is 0 (the brk_no_sync variant).
text_poke_kick:
	ldr	x9, =text_poke_brk_ipis
	ldr	w9, [x9]
	cbz	w9, 1f
	b	kick_all_cpus_sync
1:	ret

// int text_poke_sync_handler(struct pt_regs *regs, unsigned int esr): break hook.
	.global text_poke_sync_handler
text_poke_sync_handler:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	dmb	ishld					// smp_rmb(): the BRK before bp_desc
	ldr	x9, =text_poke_desc
	ldr	x20, [x9]				// desc = READ_ONCE(bp_desc)
	cbz	x20, 4f
	add	x9, x20, #D_REFS			// try_get_desc(): atomic_inc_not_zero
1:	ldxr	w10, [x9]				// (fully ordered on success)
	cbz	w10, 3f
	add	w10, w10, #1
	stlxr	w11, w10, [x9]
	cbnz	w11, 1b
	dmb	ish
	ldr	x10, [x20, #D_ADDR]
	ldr	x11, [x19, #S_PC]
	cmp	x10, x11
	b.ne	2f
	mov	x0, x19
	ldr	w1, [x20, #D_INSN]
	bl	emulate_and_log
2:	add	x9, x20, #D_REFS			// put_desc():
	dmb	ish					// smp_mb__before_atomic();
5:	ldxr	w10, [x9]				// atomic_dec(&desc->refs) (relaxed)
	sub	w10, w10, #1
	stxr	w11, w10, [x9]
	cbnz	w11, 5b
	b	4f
3:	clrex
4:	mov	x0, #0
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

	.data
	.align	3
	.global nosync_addr
nosync_addr:
	.quad	0
	.global nosync_insn
nosync_insn:
	.word	0
	.align	3
	.global text_poke_brk_ipis
text_poke_brk_ipis:
	.word	1
	.align	3
	.global text_poke_desc
text_poke_desc:
	.quad	0
	.global text_poke_next
text_poke_next:
	.quad	0
	.global text_poke_descs
text_poke_descs:
	.space	D_SIZE * 16
