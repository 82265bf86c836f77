// ftrace_race.S: an out-of-tree kernel file, linked from the scenario beside it.
// CPU0 patches `ftrace_site` from NOP to `B ftrace_new` with the kernel's
// aarch64_insn_patch_text_nosync (kernels/insn.S) and releases `ftrace_done`; CPU1
// loops through the site, reading the flag with an acquire and no ISB after it.

	.text
	.global ftrace_patcher
ftrace_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	aarch64_insn_patch_text_nosync
	ldr	x2, =ftrace_done
	mov	w3, #1
	stlr	w3, [x2]
	ldp	x29, x30, [sp], #16
	ret

	.global ftrace_loop
ftrace_loop:
	ldr	x6, =ftrace_log
	ldr	x7, =ftrace_done
	mov	x8, #0
1:	ldar	w9, [x7]
	.global ftrace_site
ftrace_site:
	nop
	mov	w5, #1
	b	2f
	.global ftrace_new
ftrace_new:
	mov	w5, #2
2:	orr	w5, w5, w9, lsl #8
	str	w5, [x6, x8, lsl #2]
	add	x8, x8, #1
	cmp	x8, x0
	b.lo	1b
	ret

	.data
	.align	3
	.global ftrace_done
ftrace_done:
	.word	0
	.global ftrace_log
ftrace_log:
	.space	4 * 64
