// broken_patch.S: a patcher that forgets the D-side clean.
//
// aarch64_insn_patch_text_nosync_nodc() writes the instruction like
// aarch64_insn_patch_text_nosync() but then only invalidates the I-side
// (IC IVAU; DSB ISH; ISB).  With CTR_EL0.IDC=0 the new instruction may never reach
// the point of unification, so the invalidated lines refill with the old one; with
// IDC=1 the clean is not needed and the patch is correct.

	.text

	.global aarch64_insn_patch_text_nosync_nodc
aarch64_insn_patch_text_nosync_nodc:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	bl	aarch64_insn_write
	mrs	x5, ctr_el0
	and	x6, x5, #0xf			// icache_line_size
	mov	x4, #4
	lsl	x4, x4, x6
	sub	x6, x4, #1
	bic	x2, x19, x6
	ic	ivau, x2
	dsb	ish
	isb
	mov	x0, #0
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret
