// module.S: unloading module foo and loading module bar into the memory foo's text held,
// as kernel/module/main.c does it (delete_module(), load_module(), move_module(),
// flush_module_icache(), complete_formation(), do_init_module(); mainline as of 2025, the
// same steps since kernel/module.c), on arm64.  Needs insn.S (caches_clean_inval_pou),
// smp.S (kick_all_cpus_sync, nr_cpus), rcu.S (the grace period) and cacheflush.S
// (flush_icache_range and set_memory_rox).
//
// The race is the one commit 3b8c9f1cdfc5 ("arm64: IPI each CPU after invalidating the
// I-cache for kernel mappings", v5.0) describes:
//
//	For example, if module 'foo' is unloaded and then module 'bar' is loaded into the
//	same area of memory, a CPU could end up executing instructions from 'foo' when
//	branching into 'bar' if these instructions were fetched into the pipeline before
//	'foo' was unloaded.
//
// load_module() writes bar's text through a writable mapping (move_module(): the
// allocation is zeroed, then each section copied in), then flush_module_icache() calls
// flush_icache_range() over it (arch/arm64/include/asm/cacheflush.h since v5.0:
// caches_clean_inval_pou(), then kick_all_cpus_sync(), "so that they undergo a context
// synchronization event and are forced to refetch the new instructions"; before v5.0
// flush_icache_range was arch/arm64/mm/cache.S's clean and invalidate alone, with an ISB
// on the calling CPU only).  Only then can a CPU reach bar's code: here through a hook
// bar's init registers (rcu_assign_pointer()), as a subsystem's register function or a
// symbol_get() would give it.  Nothing orders a CPU's instruction fetch after its load
// of the hook (BLR is a branch to a register: a dependency orders loads, not fetches):
// what makes it fetch bar's instructions is the IPI it took after the maintenance.
//
// Modules live in the text here (module_text): the testbed has no vmalloc, and text is
// the only memory it fetches instructions from.  The loader stores through the text
// alias (TEXT_ALIAS_OFFSET), which stands for the module's vmalloc mapping while it is
// writable (arm64's module_alloc()/execmem maps it PAGE_KERNEL, writable and not
// executable, in recent kernels, PAGE_KERNEL_EXEC in older ones; complete_formation()
// makes it read-only and executable after the flush).  A PLT that module_frob_arch_sections()
// reserves and apply_relocate_add() fills (arch/arm64/kernel/module-plts.c) is part of
// this same text and flush: no separate protocol.

	.equ	MOD_BASE, 0			// struct module here: mem[MOD_TEXT].base,
	.equ	MOD_SIZE, 8			// mem[MOD_TEXT].size,
	.equ	MOD_INIT, 16			// init,
	.equ	MOD_EXIT, 24			// exit
	.equ	MODULE_LOG_SHIFT, 7		// per CPU: 8 records of {ops, result}

	.text

// int module_hook_register(const struct module_hook_ops *ops): a module's init
// registers its hook: rcu_assign_pointer(module_hook, ops), a store-release
	.global module_hook_register
module_hook_register:
	ldr	x9, =module_hook
	stlr	x0, [x9]
	mov	w0, #0
	ret

// void module_hook_unregister(const struct module_hook_ops *ops): a module's exit
// unregisters its hook and waits for the callers, as atomic_notifier_chain_unregister()
// (kernel/notifier.c) does: the pointer cleared (RCU_INIT_POINTER(), a plain store), then
// synchronize_rcu().  rcu.S's grace period stands for synchronize_rcu(): with one task per
// CPU and no preemption in the reader, a voluntary context switch is a quiescent state
// for RCU as for Tasks RCU.
	.global module_hook_unregister
module_hook_unregister:
	ldr	x9, =module_hook
	ldr	x10, [x9]
	cmp	x10, x0
	b.ne	1f
	str	xzr, [x9]			// RCU_INIT_POINTER(module_hook, NULL)
1:	b	synchronize_rcu_tasks		// synchronize_rcu()

// Module foo's exit and module bar's init (mod->exit, mod->init).  The kernel runs them
// from the module's own text; here they are core text, so that the module text is only
// what the race needs.
	.global foo_exit
foo_exit:
	ldr	x0, =foo_ops
	b	module_hook_unregister

	.global bar_init
bar_init:
	ldr	x0, =bar_ops
	b	module_hook_register

// long delete_module(struct module *mod) (main.c): try_stop_module() (no references
// here), mod->exit(), then free_module(), whose synchronize_rcu() waits for walkers of
// mod->list and which then frees the memory (execmem_free(), a vfree()).  Here nobody
// walks the list, and the memory keeps its bytes: the hook's grace period, in exit, is
// what makes foo's text unreachable before it is freed.
	.global delete_module
delete_module:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x9, [x0, #MOD_EXIT]
	blr	x9				// mod->exit()
	mov	w0, #0
	ldp	x29, x30, [sp], #16
	ret

// void *module_memory_alloc(struct module *mod) (main.c, for MOD_TEXT): execmem_alloc()
// gives back the range free_module() released, foo's (vmalloc hands out the lowest free
// range that fits, once the lazily freed one is purged: 3b8c9f1cdfc5's "loaded into the
// same area of memory"), then memset(ptr, 0, size) through the writable mapping (one
// 64-bit store: the module's text here is two instructions).
	.global module_memory_alloc
module_memory_alloc:
	ldr	x1, =module_text		// execmem_alloc(EXECMEM_MODULE_TEXT, size)
	str	x1, [x0, #MOD_BASE]		// mod->mem[MOD_TEXT].base = ptr
	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x1, x2
	str	xzr, [x2]			// memset(ptr, 0, size)
	mov	x0, x1
	ret

// int move_module(struct module *mod, const void *text) (main.c): the memory allocated,
// then each SHF_ALLOC section copied to its place, memcpy(dest, (void *)shdr->sh_addr,
// shdr->sh_size): here the text section of the module's file, one 64-bit copy
	.global move_module
move_module:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x1
	bl	module_memory_alloc
	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x0, x2
	ldr	x3, [x19]			// memcpy(dest, shdr->sh_addr, 8)
	str	x3, [x2]
	mov	w0, #0
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void flush_module_icache(const struct module *mod) (main.c): "Flush the instruction
// cache, since we've played with text": flush_icache_range(base, base + size) for each
// of the module's memory types.  module_flush_skip, a scenario's knob (not the kernel's):
// 1 does nothing (no maintenance at all), 2 only kick_all_cpus_sync() (the IPIs without
// the clean and invalidate).  flush_icache_range() itself leaves the IPIs out with
// flush_icache_skip_kick = 1 (cacheflush.S): as before v5.0.
	.global flush_module_icache
flush_module_icache:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x9, =module_flush_skip
	ldr	w9, [x9]
	cmp	w9, #1
	b.eq	2f
	b.hi	1f
	ldr	x1, [x0, #MOD_SIZE]
	ldr	x0, [x0, #MOD_BASE]
	add	x1, x0, x1
	bl	flush_icache_range
	b	2f
1:	bl	kick_all_cpus_sync
2:	ldp	x29, x30, [sp], #16
	ret

// int complete_formation(struct module *mod, ...) (main.c): the text made read-only and
// executable (module_enable_text_rox() in kernel/module/strict_rwx.c: set_memory_rox()
// over it), then the state COMING
	.global complete_formation
complete_formation:
	ldr	x0, [x0, #MOD_BASE]
	mov	w1, #1
	b	set_memory_rox

// int do_init_module(struct module *mod) (main.c): do_one_initcall(mod->init), then the
// state LIVE
	.global do_init_module
do_init_module:
	ldr	x9, [x0, #MOD_INIT]
	br	x9				// bar_init: registers bar's hook

// int load_module(struct module *mod, const void *text) (main.c), the steps that touch the
// text: layout_and_allocate() (move_module()), flush_module_icache() after the
// relocations, complete_formation(), then do_init_module()
	.global load_module
load_module:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	bl	move_module
	mov	x0, x19
	bl	flush_module_icache
	mov	x0, x19
	bl	complete_formation
	mov	x0, x19
	bl	do_init_module
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void module_reload(struct module *old, struct module *new, const void *text): rmmod
// foo; insmod bar (delete_module(), then init_module() -> load_module()), then
// module_load_done = 1 (release) for the CPUs waiting to go offline
	.global module_reload
module_reload:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x1
	mov	x20, x2
	bl	delete_module
	mov	x0, x19
	mov	x1, x20
	bl	load_module
	ldr	x9, =module_load_done
	mov	w10, #1
	stlr	w10, [x9]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void module_hook_caller(u64 calls, int cpu): calls the registered hook `calls` times
// (rcu_read_lock(); ops = rcu_dereference(module_hook); if (ops) ops->fn();
// rcu_read_unlock()), recording {ops, result} for each, with a voluntary context switch
// (a quiescent state) after each; then leaves the runqueue and stays online, IRQs on,
// until the loader is done, so that kick_all_cpus_sync() IPIs are taken.
	.global module_hook_caller
module_hook_caller:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	mov	x19, x0
	mov	w20, w1
	ldr	x21, =module_log
	add	x21, x21, x20, lsl #MODULE_LOG_SHIFT
	msr	daifclr, #2
1:	ldr	x9, =module_hook		// rcu_read_lock(): preempt_disable()
	ldr	x22, [x9]			// ops = rcu_dereference(module_hook)
	mov	x0, #0
	cbz	x22, 2f
	ldr	x10, [x22]			// ops->fn
	blr	x10				// foo's or bar's code, in module_text
2:	stp	x22, x0, [x21], #16		// record {ops, result}
	mov	w0, w20
	bl	task_voluntary_switch		// rcu_read_unlock(); schedule()
	subs	x19, x19, #1
	b.ne	1b
	mov	w0, w20
	bl	task_exit_rcu_tasks
	ldr	x9, =module_load_done
3:	ldar	w10, [x9]			// stay online until the loader is done
	cbnz	w10, 4f
	yield
	b	3b
4:	msr	daifset, #2
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// The module area: module foo's text, loaded before the run.  Its hook function returns
// 1; module bar's, loaded over it, returns 2 (bar_text below).  One cache line, so that
// its maintenance is one DC CVAU and one IC IVAU.
	.balign	64
	.global module_text
module_text:
	mov	w0, #1				// foo_fn
	ret
	.space	56

	.data
	.balign	8
// Module bar's .text section as its file holds it (info->hdr: a vmalloc()ed copy of the
// file, data): bar_fn, mov w0, #2; ret
	.global bar_text
bar_text:
	.word	0x52800040			// mov w0, #2
	.word	0xd65f03c0			// ret
	.global module_hook
module_hook:				// registered by foo's init, before the run
	.quad	foo_ops
	.global foo_ops
foo_ops:				// struct module_hook_ops in foo's .data: .fn
	.quad	module_text			// foo_fn, at the start of foo's text
	.global bar_ops
bar_ops:				// in bar's .data, relocated by apply_relocations():
	.quad	module_text			// bar_fn, at the start of bar's text
	.global foo_module
foo_module:				// struct module: mem[MOD_TEXT], init, exit
	.quad	module_text
	.quad	8
	.quad	0
	.quad	foo_exit
	.global bar_module
bar_module:
	.quad	0				// set by module_memory_alloc()
	.quad	8
	.quad	bar_init
	.quad	0
	.global module_flush_skip
module_flush_skip:			// 1: no flush_module_icache(); 2: only the IPIs
	.word	0
	.global module_load_done
module_load_done:
	.word	0
	.balign	8
	.global module_log
module_log:				// per CPU: {ops, result} per call, 8 calls at most
	.space	(1 << MODULE_LOG_SHIFT) * MAX_CPUS
