// jl_workload.S: a static key with three sites, CPUs running through them, and a
// patcher that enables the key.  Each worker logs, per iteration, the value of
// jl_key_flipped it read with a load-acquire and which path each site took
// (1 = the NOP fall-through, the key's old state; 2 = the branch, its new state).

	.text

	// Each site's branch has its own offset (pad NOPs before the yes path), so the
	// B instructions of different sites are different words.
	.macro jl_site name, pad
	.global jl_func_\name
jl_func_\name:
	.global jl_site_\name
jl_site_\name:					// static_branch_unlikely(&jl_key)
	nop
	mov	w0, #1
	ret
	.rept	\pad
	nop
	.endr
	.global jl_site_\name\()_yes
jl_site_\name\()_yes:
	mov	w0, #2
	ret
	.endm

	jl_site	a, 0
	jl_site	b, 2
	jl_site	c, 4

// void jl_patcher(struct static_key *key): static_key_enable(), then tell the world.
	.global jl_patcher
jl_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	static_key_enable
	ldr	x9, =jl_key_flipped
	mov	w10, #1
	stlr	w10, [x9]			// smp_store_release(&jl_key_flipped, 1)
	ldp	x29, x30, [sp], #16
	ret

// void jl_worker(u64 iterations, u32 *log): log[i] = flag << 12 | a << 8 | b << 4 | c.
// IRQs are on so that kick_all_cpus_sync() IPIs are taken; a worker stays online
// (spinning with IRQs on) until the patcher has finished.
	.global jl_worker
jl_worker:
	stp	x29, x30, [sp, #-64]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	stp	x23, x24, [sp, #48]
	mov	x19, x0
	mov	x20, x1
	mov	x21, #0
	ldr	x22, =jl_key_flipped
	msr	daifclr, #2
1:	ldar	w23, [x22]
	lsl	w24, w23, #12
	bl	jl_func_a
	orr	w24, w24, w0, lsl #8
	bl	jl_func_b
	orr	w24, w24, w0, lsl #4
	bl	jl_func_c
	orr	w24, w24, w0
	str	w24, [x20, x21, lsl #2]
	add	x21, x21, #1
	cmp	x21, x19
	b.lo	1b
2:	ldar	w23, [x22]			// stay online until the patcher is done
	cbnz	w23, 3f
	yield
	b	2b
3:	msr	daifset, #2
	ldp	x23, x24, [sp, #48]
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #64
	ret

	.data
	.align	3
	.global jl_key
jl_key:						// struct static_key
	.word	0
	.global jl_key_flipped
jl_key_flipped:
	.word	0
	.align	3
	.global __start___jump_table
__start___jump_table:				// struct jump_entry { code, target, key }
	.quad	jl_site_a, jl_site_a_yes, jl_key
	.quad	jl_site_b, jl_site_b_yes, jl_key
	.quad	jl_site_c, jl_site_c_yes, jl_key
	.global __stop___jump_table
__stop___jump_table:
	.global jl_log
jl_log:						// 64 entries per worker, 7 workers
	.space	4 * 64 * 7
