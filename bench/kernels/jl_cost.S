// jl_cost.S (bench): a static key with eight sites, enabled once, for the cost of
// static_key_enable() under each patching protocol (bench/protocols.py).
//
// A workload file like kernels/jl_workload.S, and its alternative: it defines the same
// linker-table symbols (__start___jump_table, __stop___jump_table), so it lives here,
// not in kernels/, whose files are all linked together by tests/test_asm_gnu.py.
//
// CPU0 runs jl_cost_patcher: static_key_enable(&jl_cost_key), then jl_cost_done = 1.
// The other CPUs run jl_cost_worker: IRQs on (to take IPIs), through the eight sites
// until they read jl_cost_done.  The stop_machine protocols are plugged into
// arch_jump_label_transform through jump_label_patch_mode bits 5 and 6
// (kernels/jump_label.S) and use aarch64_insn_patch_text() (kernels/stop_machine.S).

	.equ JL_COST_SITES, 8

	.text

	.macro jl_cost_site n
	.global jl_cost_func_\n
jl_cost_func_\n:
	.global jl_cost_site_\n
jl_cost_site_\n:				// static_branch_unlikely(&jl_cost_key)
	nop
	mov	w0, #1
	ret
	.global jl_cost_site_\n\()_yes
jl_cost_site_\n\()_yes:
	mov	w0, #2
	ret
	.endm

	jl_cost_site 0
	jl_cost_site 1
	jl_cost_site 2
	jl_cost_site 3
	jl_cost_site 4
	jl_cost_site 5
	jl_cost_site 6
	jl_cost_site 7

// void jl_cost_patcher(struct static_key *key): one static_key_enable(), then done.
	.global jl_cost_patcher
jl_cost_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	static_key_enable
	.global jl_cost_enable_returned
jl_cost_enable_returned:			// the window of the enable ends here
	ldr	x9, =jl_cost_done
	mov	w10, #1
	stlr	w10, [x9]			// smp_store_release(&jl_cost_done, 1)
	ldp	x29, x30, [sp], #16
	ret

// void jl_cost_worker(void): IRQs on; the eight sites, again and again, until done.
	.global jl_cost_worker
jl_cost_worker:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	ldr	x19, =jl_cost_done
	msr	daifclr, #2
1:	bl	jl_cost_func_0
	bl	jl_cost_func_1
	bl	jl_cost_func_2
	bl	jl_cost_func_3
	bl	jl_cost_func_4
	bl	jl_cost_func_5
	bl	jl_cost_func_6
	bl	jl_cost_func_7
	ldar	w9, [x19]			// smp_load_acquire(&jl_cost_done)
	cbz	w9, 1b
	msr	daifset, #2
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// int jl_cost_patch_stop_machine(void *addr, u32 insn): one site under stop_machine,
// as aarch64_insn_patch_text(&addr, &insn, 1) does for an instruction that is not
// hotpatch-safe (arch/arm64/kernel/insn.c, v5.4).  jump_label_patch_mode bit 5.
	.global jl_cost_patch_stop_machine
jl_cost_patch_stop_machine:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x9, =jl_cost_sm_addrs
	str	x0, [x9]
	ldr	x10, =jl_cost_sm_insns
	str	w1, [x10]
	mov	x0, x9
	mov	x1, x10
	mov	w2, #1
	bl	aarch64_insn_patch_text
	ldp	x29, x30, [sp], #16
	ret

// int jl_cost_queue(void *addr, u32 insn): arch_jump_label_transform_queue(): remember
// the entry for jl_cost_apply_stop_machine.  jump_label_patch_mode bit 5 with bit 6.
	.global jl_cost_queue
jl_cost_queue:
	ldr	x9, =jl_cost_sm_count
	ldr	w10, [x9]
	ldr	x11, =jl_cost_sm_addrs
	str	x0, [x11, x10, lsl #3]
	ldr	x11, =jl_cost_sm_insns
	str	w1, [x11, x10, lsl #2]
	add	w10, w10, #1
	str	w10, [x9]
	mov	w0, #0
	ret

// void jl_cost_apply_stop_machine(void): arch_jump_label_transform_apply(): every
// queued entry patched in one stop_machine (aarch64_insn_patch_text with cnt > 1).
	.global jl_cost_apply_stop_machine
jl_cost_apply_stop_machine:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x0, =jl_cost_sm_addrs
	ldr	x1, =jl_cost_sm_insns
	ldr	x9, =jl_cost_sm_count
	ldr	w2, [x9]
	bl	aarch64_insn_patch_text
	ldr	x9, =jl_cost_sm_count
	str	wzr, [x9]
	ldp	x29, x30, [sp], #16
	ret

	.data
	.align	3
	.global jl_cost_key
jl_cost_key:					// struct static_key
	.word	0
	.global jl_cost_done
jl_cost_done:
	.word	0
	.global jl_cost_sm_count
jl_cost_sm_count:
	.word	0
	.align	3
	.global jl_cost_sm_addrs
jl_cost_sm_addrs:				// void *addrs[JL_COST_SITES]
	.space	8 * JL_COST_SITES
	.global jl_cost_sm_insns
jl_cost_sm_insns:				// u32 insns[JL_COST_SITES]
	.space	4 * JL_COST_SITES
	.align	3
	.global __start___jump_table
__start___jump_table:				// struct jump_entry { code, target, key }
	.quad	jl_cost_site_0, jl_cost_site_0_yes, jl_cost_key
	.quad	jl_cost_site_1, jl_cost_site_1_yes, jl_cost_key
	.quad	jl_cost_site_2, jl_cost_site_2_yes, jl_cost_key
	.quad	jl_cost_site_3, jl_cost_site_3_yes, jl_cost_key
	.quad	jl_cost_site_4, jl_cost_site_4_yes, jl_cost_key
	.quad	jl_cost_site_5, jl_cost_site_5_yes, jl_cost_key
	.quad	jl_cost_site_6, jl_cost_site_6_yes, jl_cost_key
	.quad	jl_cost_site_7, jl_cost_site_7_yes, jl_cost_key
	.global __stop___jump_table
__stop___jump_table:
