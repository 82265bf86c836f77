// wfi_patch.S: a patch that makes a WFI visible in the middle of a run
// (tests/test_walker.py: the compiled walker must hand over once a CPU can sleep).
//
// wfi_patcher(site, insn): aarch64_insn_patch_text_nosync(site, insn), as patcher_main.
// wfi_worker(passes): each pass an ISB, then the site (a NOP patched into WFI: once its
// catch-up shows the WFI, the CPU sleeps for good), then a store of the pass count.
// wfi_counter(n): n loads and stores of a count: steps the walker takes.

	.text
	.global wfi_patcher
wfi_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	aarch64_insn_patch_text_nosync
	ldp	x29, x30, [sp], #16
	ret

	.global wfi_worker
wfi_worker:
	ldr	x6, =wfi_passes
	mov	x8, #0
1:	isb
	.global wfi_site
wfi_site:
	nop
	add	x8, x8, #1
	str	x8, [x6]
	cmp	x8, x0
	b.lo	1b
	ret

	.global wfi_counter
wfi_counter:
	ldr	x6, =wfi_count
1:	ldr	x7, [x6]
	add	x7, x7, #1
	str	x7, [x6]
	subs	x0, x0, #1
	b.ne	1b
	ret

	.data
	.align	3
	.global wfi_passes
wfi_passes:
	.quad	0
	.global wfi_count
wfi_count:
	.quad	0
