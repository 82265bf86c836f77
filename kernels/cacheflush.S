// cacheflush.S: what arm64 does to make freshly written kernel text executable, and
// the lock every text patcher takes.  Shared by the BPF trampoline, module loading and
// ftrace scenarios (kernels/bpf_trampoline.S, module.S, ftrace_update.S).
//
// text_mutex: DEFINE_MUTEX(text_mutex) (kernel/extable.c), a lock word here.

	.text

// int set_memory_rw(unsigned long addr, int numpages), set_memory_ro(): the page's
// permissions through change_memory_common() -> __change_memory_common()
// (arch/arm64/mm/pageattr.c, v6.6): apply_to_page_range() rewrites the PTEs (set_pte():
// dsb(ishst); isb() for a valid kernel mapping), then flush_tlb_kernel_range():
// dsb(ishst); tlbi vaale1is; dsb(ish); isb().  No MMU here: the barriers, not the
// permissions.
	.global set_memory_rw
set_memory_rw:
	b	__change_memory_common
	.global set_memory_ro
set_memory_ro:
	b	__change_memory_common
	.global __change_memory_common
__change_memory_common:
	dsb	ishst				// set_pte()
	isb
	dsb	ishst				// flush_tlb_kernel_range()
	dsb	ish
	isb
	mov	x0, #0
	ret

// int set_memory_rox(unsigned long addr, int numpages): read-only and executable,
// __change_memory_common() as set_memory_ro()
	.global set_memory_rox
set_memory_rox:
	b	__change_memory_common

// void flush_icache_range(unsigned long start, unsigned long end)
// (arch/arm64/include/asm/cacheflush.h, v6.6): caches_clean_inval_pou(), then
// kick_all_cpus_sync(), "so that they undergo a context synchronization event and are
// forced to refetch the new instructions" (since v5.0, commit 3b8c9f1cdfc5).  With
// flush_icache_skip_kick = 1 (a scenario's knob, not the kernel's) no IPI, as before.
	.global flush_icache_range
flush_icache_range:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	caches_clean_inval_pou
	ldr	x9, =flush_icache_skip_kick
	ldr	w9, [x9]
	cbnz	w9, 1f
	bl	kick_all_cpus_sync
1:	ldp	x29, x30, [sp], #16
	ret

	.data
	.balign	8
	.global text_mutex
text_mutex:
	.word	0
	.global flush_icache_skip_kick
flush_icache_skip_kick:			// 1: flush_icache_range() without the IPIs
	.word	0
