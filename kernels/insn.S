// insn.S: patching kernel text, as arch/arm64/kernel/insn.c and
// arch/arm64/mm/cache.S do it (v5.4, with the v5.15+ name caches_clean_inval_pou).

	.equ CTR_IDC_SHIFT, 28
	.equ CTR_DIC_SHIFT, 29
	.equ EINVAL, 22

	.text

// int aarch64_insn_write(void *addr, u32 insn): __aarch64_insn_write() maps the
// page at FIX_TEXT_POKE0 (patch_map) and does one aligned 32-bit store through
// that writable alias.  Here the alias is the fixed TEXT_ALIAS mapping.
	.global aarch64_insn_write
aarch64_insn_write:
	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x0, x2
	str	w1, [x2]
	mov	x0, #0
	ret

// void caches_clean_inval_pou(unsigned long start, unsigned long end):
// D-side clean to the PoU by line (skipped when CTR_EL0.IDC), DSB ISH, I-side
// invalidate to the PoU by line (skipped when CTR_EL0.DIC), DSB ISH, ISB.
// The kernel patches the IDC/DIC checks in as alternatives at boot; reading
// CTR_EL0 at run time is equivalent on a machine whose CTR_EL0 never changes.
	.global caches_clean_inval_pou
caches_clean_inval_pou:
	mrs	x5, ctr_el0
	tbz	w5, #CTR_IDC_SHIFT, 1f
	dsb	ishst				// IDC: a barrier is enough
	b	3f
1:	ubfx	x6, x5, #16, #4			// dcache_line_size: 4 << CTR_EL0.DminLine
	mov	x4, #4
	lsl	x4, x4, x6
	sub	x6, x4, #1
	bic	x2, x0, x6
2:	dc	cvau, x2
	add	x2, x2, x4
	cmp	x2, x1
	b.lo	2b
	dsb	ish
3:	tbz	w5, #CTR_DIC_SHIFT, 4f
	isb					// DIC: the stores already invalidated
	ret
4:	and	x6, x5, #0xf			// icache_line_size: 4 << CTR_EL0.IminLine
	mov	x4, #4
	lsl	x4, x4, x6
	sub	x6, x4, #1
	bic	x2, x0, x6
5:	ic	ivau, x2
	add	x2, x2, x4
	cmp	x2, x1
	b.lo	5b
	dsb	ish
	isb
	ret

// int aarch64_insn_patch_text_nosync(void *addr, u32 insn): rejects an address
// that is not word aligned (-EINVAL), writes the instruction, then flushes that
// one word with caches_clean_inval_pou on the patching CPU only.
	.global aarch64_insn_patch_text_nosync
aarch64_insn_patch_text_nosync:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	tst	x0, #3
	b.ne	1f
	mov	x19, x0
	bl	aarch64_insn_write
	cbnz	w0, 2f
	mov	x0, x19
	add	x1, x19, #4
	bl	caches_clean_inval_pou
	mov	x0, #0
	b	2f
1:	mov	x0, #-EINVAL
2:	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret
