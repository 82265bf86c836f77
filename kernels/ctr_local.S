// ctr_local.S: cache maintenance that trusts the CTR_EL0 of the CPU it runs on.
//
// On a system whose CPUs' cache types differ (big.LITTLE cores with different
// CTR_EL0.IDC/DIC or line sizes), the CPU doing the maintenance may see IDC=1 or DIC=1
// and skip a clean or an invalidate that another CPU needs.  Linux avoids it with the
// system-wide safe value (read_ctr's ARM64_MISMATCHED_CACHE_TYPE alternative, the
// ARM64_HAS_CACHE_IDC/DIC capabilities), and traps user space's CTR_EL0 reads on such
// systems to give it that value too (Suzuki K Poulose, "arm64: Work around systems
// with mismatched cache line sizes", commit 116c81f427ff, v4.8); code that reads the
// register itself, as a JIT in user space did before, gets it wrong.
//
// patcher_local is nosync_race.S's patcher_main with that maintenance.

	.equ CTR_IDC_SHIFT, 28
	.equ CTR_DIC_SHIFT, 29

	.text

// void patcher_local(u32 *addr, u32 insn)
	.global patcher_local
patcher_local:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	bl	aarch64_insn_write
	mov	x0, x19
	add	x1, x19, #4
	bl	caches_clean_inval_pou_local
	ldr	x2, =patch_result
	str	wzr, [x2]
	ldr	x2, =patch_done
	mov	w3, #1
	stlr	w3, [x2]			// smp_store_release(&patch_done, 1)
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void caches_clean_inval_pou_local(unsigned long start, unsigned long end): as
// caches_clean_inval_pou, but on this CPU's own CTR_EL0
	.global caches_clean_inval_pou_local
caches_clean_inval_pou_local:
	mrs	x5, ctr_el0			// this CPU's, not the system's
	tbz	w5, #CTR_IDC_SHIFT, 1f
	dsb	ishst
	b	3f
1:	ubfx	x6, x5, #16, #4
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
	isb
	ret
4:	and	x6, x5, #0xf
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
