// insn.S: patching kernel text, as arch/arm64/kernel/insn.c and
// arch/arm64/mm/cache.S do it (v5.4, with the v5.15+ name caches_clean_inval_pou).

	.equ CTR_IDC_SHIFT, 28
	.equ CTR_DIC_SHIFT, 29
	.equ EINVAL, 22

	.text

// int aarch64_insn_write(void *addr, u32 insn): __aarch64_insn_write() (insn.c v5.4,
// patching.c today):
//
//	raw_spin_lock_irqsave(&patch_lock, flags);
//	waddr = patch_map(addr, FIX_TEXT_POKE0);	// set_pte: dsb(ishst); isb();
//	ret = probe_kernel_write(waddr, &insn, AARCH64_INSN_SIZE);
//	patch_unmap(FIX_TEXT_POKE0);	// flush_tlb_kernel_range: dsb(ishst); tlbi; dsb(ish); isb();
//	raw_spin_unlock_irqrestore(&patch_lock, flags);
//
// The alias is the fixed TEXT_ALIAS mapping (no page tables, so no TLBI), the store one
// aligned 32-bit store through it; the lock is a test-and-set spinlock (acquire) and
// a store-release unlock, as arm64's spinlocks order.  patch_map() maps core kernel
// text through the fixmap (set_pte: DSB ISHST; ISB), but returns module text as it is
// when CONFIG_STRICT_MODULE_RWX is off, with no barrier: aarch64_insn_write_direct = 1
// models that case.
	.global aarch64_insn_write
aarch64_insn_write:
	mrs	x3, daif			// raw_spin_lock_irqsave(&patch_lock, flags)
	msr	daifset, #2
	ldr	x4, =patch_lock
	mov	w6, #1
1:	ldaxr	w5, [x4]
	cbnz	w5, 1b
	stxr	w5, w6, [x4]
	cbnz	w5, 1b
	ldr	x5, =aarch64_insn_write_direct
	ldr	w5, [x5]
	cbnz	w5, 2f				// patch_map: "else return addr;"
	dsb	ishst				// patch_map: set_fixmap_offset: set_pte()
	isb
2:	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x0, x2
	str	w1, [x2]
	dsb	ishst				// patch_unmap: flush_tlb_kernel_range()
	dsb	ish
	isb
	stlr	wzr, [x4]			// raw_spin_unlock_irqrestore(&patch_lock, flags)
	msr	daif, x3
	mov	x0, #0
	ret

// int aarch64_insn_write_literal_u64(void *addr, u64 val): a 64-bit literal in the text
// (arch/arm64/kernel/patching.c since v6.3, added by Mark Rutland's "arm64: patching:
// Add aarch64_insn_write_literal_u64()"), the same lock, patch_map() and patch_unmap()
// as __aarch64_insn_write() above:
//
//	raw_spin_lock_irqsave(&patch_lock, flags);
//	waddr = patch_map(addr, FIX_TEXT_POKE0);
//	ret = copy_to_kernel_nofault(waddr, &val, sizeof(val));
//	patch_unmap(FIX_TEXT_POKE0);
//	raw_spin_unlock_irqrestore(&patch_lock, flags);
	.global aarch64_insn_write_literal_u64
aarch64_insn_write_literal_u64:
	mrs	x3, daif			// raw_spin_lock_irqsave(&patch_lock, flags)
	msr	daifset, #2
	ldr	x4, =patch_lock
	mov	w6, #1
1:	ldaxr	w5, [x4]
	cbnz	w5, 1b
	stxr	w5, w6, [x4]
	cbnz	w5, 1b
	ldr	x5, =aarch64_insn_write_direct
	ldr	w5, [x5]
	cbnz	w5, 2f				// patch_map: "else return addr;"
	dsb	ishst				// patch_map: set_fixmap_offset: set_pte()
	isb
2:	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x0, x2
	str	x1, [x2]			// copy_to_kernel_nofault(waddr, &val, 8)
	dsb	ishst				// patch_unmap: flush_tlb_kernel_range()
	dsb	ish
	isb
	stlr	wzr, [x4]			// raw_spin_unlock_irqrestore(&patch_lock, flags)
	msr	daif, x3
	mov	x0, #0
	ret

// void caches_clean_inval_pou(unsigned long start, unsigned long end):
// D-side clean to the PoU by line (skipped when CTR_EL0.IDC), DSB ISH, I-side
// invalidate to the PoU by line (skipped when CTR_EL0.DIC), DSB ISH, ISB.
// The kernel patches the IDC/DIC checks in as alternatives at boot
// (ARM64_HAS_CACHE_IDC/DIC, set only when every CPU has them) and takes the line
// sizes from read_ctr, whose alternative on a machine with mismatched cache types
// (ARM64_MISMATCHED_CACHE_TYPE) loads the system-wide safe value instead of the
// CPU's own (arch/arm64/include/asm/assembler.h, v6.6).  The MRS at the local label
// read_ctr stands for that macro: the machine gives it the system-wide safe
// CTR_EL0 (FetchConfig.sanitised_ctr_el0), which on a machine whose CPUs are alike
// is every CPU's own.
	.global caches_clean_inval_pou
caches_clean_inval_pou:
read_ctr:
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
	ldr	x6, =caches_skip_final_dsb	// a scenario's knob (not the kernel's):
	ldr	w6, [x6]			// 1 leaves out the DSB that completes the
	cbnz	w6, 6f				// invalidation
	dsb	ish
6:	isb
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

	.data
	.align	3
	.global patch_lock
patch_lock:					// static DEFINE_RAW_SPINLOCK(patch_lock)
	.word	0
	.global caches_skip_final_dsb
caches_skip_final_dsb:				// 1: caches_clean_inval_pou without its last DSB
	.word	0
	.global aarch64_insn_write_direct
aarch64_insn_write_direct:			// 1: module text, !CONFIG_STRICT_MODULE_RWX
	.word	0
