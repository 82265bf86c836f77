// late_fetch.S: a victim CPU whose last visible operation comes before a call into code
// that another CPU patches afterwards, with no visible operation in between.
//
// The victim announces it is ready (a store), then runs only register instructions and
// calls lf_fn.  The patcher waits for "ready", patches lf_site (NOP -> B lf_new) with the
// kernel's aarch64_insn_patch_text_nosync, and only then initialises lf_data, which the
// new code reads: the bug.  On hardware the victim may stall between its store and the
// fetch of lf_site for as long as it likes, fetch the new branch, and read lf_data
// before it is initialised.

	.text
	.global lf_patcher
lf_patcher:				// x0 = site, x1 = new instruction
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x2, =lf_ready
1:	ldar	w4, [x2]
	cbnz	w4, 2f
	yield
	b	1b
2:	bl	aarch64_insn_patch_text_nosync
	ldr	x2, =lf_data
	mov	w3, #1
	str	w3, [x2]			// initialised after the patch: too late
	ldp	x29, x30, [sp], #16
	ret

	.global lf_victim
lf_victim:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x2, =lf_ready
	mov	w3, #1
	stlr	w3, [x2]			// the last visible operation before the call
	mov	x5, #3
	add	x5, x5, #1
	bl	lf_fn
	ldp	x29, x30, [sp], #16
	ret

	.global lf_fn
lf_fn:
	.global lf_site
lf_site:
	nop					// patched into B lf_new
	ret
	.global lf_new
lf_new:
	ldr	x6, =lf_data
	ldr	w7, [x6]
	ldr	x6, =lf_seen
	str	w7, [x6]
	ldr	x6, =lf_ran_new
	mov	w7, #1
	str	w7, [x6]
	ret

	.data
	.align	3
	.global lf_ready
lf_ready:
	.word	0
	.global lf_data
lf_data:
	.word	0
	.global lf_seen
lf_seen:
	.word	0
	.global lf_ran_new
lf_ran_new:
	.word	0
