// bpf_trampoline.S: switching a BPF prog's fentry trampoline on arm64, and freeing the
// old one: bpf_arch_text_poke() with its plt (arch/arm64/net/bpf_jit_comp.c, since v6.1:
// Xu Kuohai, commits efc9909fdce0 "bpf, arm64: Add bpf trampoline for arm64" and
// b2ad54e1533e "bpf, arm64: Implement bpf_arch_text_poke() for arm64"; the same in v6.6)
// and bpf_trampoline_update() / bpf_tramp_image_put() (kernel/bpf/trampoline.c, v6.6).
// Needs insn.S (aarch64_insn_patch_text_nosync, caches_clean_inval_pou), cacheflush.S
// (flush_icache_range, set_memory_*(), text_mutex), rcu.S (the grace period), slab.S
// (kfree) and smp.S (kick_all_cpus_sync, nr_cpus).
//
// A BPF prog starts like an ftrace callsite, and ends with a plt whose 64-bit literal
// holds the trampoline when it is too far for a BL (bpf_jit_comp.c, v6.6):
//
//	bpf_prog:
//		mov x9, lr
//		nop		// patchsite: BL <short-jump trampoline>, or BL plt
//		...
//		ret
//	plt:
//		ldr x10, target
//		br x10
//	target:
//		.quad dummy_tramp	// plt target
//
// bpf_arch_text_poke() writes the target with a plain 64-bit store (WRITE_ONCE) and
// patches the BL only when the instruction changes: attaching the first long-jump
// trampoline (NOP -> BL plt) or detaching the last; switching from one long-jump
// trampoline to another (modify_fentry()) only rewrites the target.  A CPU may then
// still run the old trampoline, after the update returned:
//
//	2. when an old trampoline is freed, we should wait for all other CPUs to exit the
//	   trampoline and make sure the trampoline is no longer reachable, since
//	   bpf_tramp_image_put() function already uses percpu_ref and task-based rcu to do
//	   the sync, no need to call the sync version here, see bpf_tramp_image_put() for
//	   details.
//
// For a trampoline with fentry progs only, bpf_tramp_image_put() frees the image after
// call_rcu_tasks_trace() and call_rcu_tasks() (fexit and fmod_ret trampolines add a
// percpu_ref, not modelled here).
//
// Each trampoline here reads its struct bpf_tramp_image: the JIT embeds what a
// trampoline needs (the prog, with emit_a64_mov_i64()) in the image's code, and kfree()
// can poison data, not text, so the prog is kept in the image's object and loaded from
// it: a CPU that runs a freed trampoline reads kfree()'s poison (Machine.watch_object).
//
// And the new image is written before the target points at it: bpf_trampoline_update()
// has arch_prepare_bpf_trampoline() emit it and flush it (bpf_flush_icache(), that is
// flush_icache_range(): caches_clean_inval_pou() and kick_all_cpus_sync()), then
// set_memory_rox(); bpf_arch_text_poke()'s set_memory_rw() follows, all before the
// WRITE_ONCE.  A CPU that runs the plt has no barrier between its load of the target and
// the image's loads (BR X10 is a control dependency, which orders no load): what makes
// it read the image as written is the kick, which made it take an IPI (its view then
// includes the writer's, and the exception entry synchronises it) after the image was
// written and before the target could point there.

	.equ	POKE_OFFSET, 1			// bpf_jit.h without BTI: MOV X9, LR; NOP
	.equ	PLT_TARGET_OFFSET, 12		// offsetof(struct bpf_plt, target) here
	.equ	BPF_PROG_JITED_LEN, 32		// prog->jited_len: up to the plt's BR
	.equ	IM_IMAGE, 0			// struct bpf_tramp_image here: the image,
	.equ	IM_PROG, 8			// the fentry prog it runs
	.equ	BPF_TRAMP_IMAGE_SIZE, 16
	.equ	BPF_TRAMP_SIZE, 0x34		// a trampoline's code here: 13 instructions
	.equ	EFAULT, 14

	.text

// bool is_long_jump(void *ip, void *target): a NULL target is a NOP, not a jump.  The
// kernel checks target - ip against BL's +-128 MB: trampolines are vmalloc()ed and may
// be out of range.  This machine's text is 1 MB, so every trampoline is taken to be a
// long jump, the case that goes through the plt.
	.global is_long_jump
is_long_jump:
	cmp	x1, #0
	cset	w0, ne
	ret

// u32 gen_branch_or_nop(void *ip, void *addr, void *plt): BL addr, BL plt for a long
// jump, a NOP for NULL
	.global gen_branch_or_nop
gen_branch_or_nop:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	x20, x2
	cbnz	x1, 1f
	movz	w0, #0x201f			// aarch64_insn_gen_nop()
	movk	w0, #0xd503, lsl #16
	b	3f
1:	mov	x9, x1				// target = addr
	bl	is_long_jump
	cbz	w0, 2f
	mov	x9, x20				// target = plt
2:	sub	x9, x9, x19			// aarch64_insn_gen_branch_imm(ip, target, LINK)
	ubfx	x9, x9, #2, #26
	movz	w0, #0x9400, lsl #16		// BL
	orr	w0, w0, w9
3:	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// int bpf_arch_text_poke(void *ip, void *old_addr, void *new_addr) (bpf_jit_comp.c,
// v6.6; poke_type BPF_MOD_CALL): ip is a BPF prog's entry, so the real patchsite is
// POKE_OFFSET instructions in and the plt ends the prog (__bpf_address_lookup() gives
// its start and jited_len).  The plt target first, when either address is a long jump
// (WRITE_ONCE() between set_memory_rw() and set_memory_ro(), no text_mutex: "no
// barrier is required here"), then the BL, only if the instruction changes, checked
// against the old one under text_mutex and written by aarch64_insn_patch_text_nosync().
	.global bpf_arch_text_poke
bpf_arch_text_poke:
	stp	x29, x30, [sp, #-64]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	stp	x23, x24, [sp, #48]
	add	x20, x0, #(BPF_PROG_JITED_LEN - PLT_TARGET_OFFSET)	// plt
	add	x19, x0, #(POKE_OFFSET * 4)	// ip = image + POKE_OFFSET * 4
	mov	x21, x1
	mov	x22, x2
	mov	x0, x19
	mov	x2, x20
	bl	gen_branch_or_nop
	mov	w23, w0				// old_insn
	mov	x0, x19
	mov	x1, x22
	mov	x2, x20
	bl	gen_branch_or_nop
	mov	w24, w0				// new_insn
	mov	x0, x19
	mov	x1, x22
	bl	is_long_jump
	mov	x9, x22				// plt_target = new_addr
	cbnz	w0, 1f
	mov	x0, x19
	mov	x1, x21
	bl	is_long_jump
	cbz	w0, 2f				// plt_target = 0: no long jump involved
	ldr	x9, =dummy_tramp		// "restore the plt target to dummy_tramp"
1:	mov	x21, x9
	and	x0, x20, #0xfffffffffffff000 // PAGE_MASK & &plt->target (same page)
	mov	w1, #1
	bl	set_memory_rw
	ldr	x9, =TEXT_ALIAS_OFFSET		// the page, now writable: through the alias
	add	x9, x20, x9
	str	x21, [x9, #PLT_TARGET_OFFSET]	// WRITE_ONCE(plt->target, plt_target)
	and	x0, x20, #0xfffffffffffff000
	mov	w1, #1
	bl	set_memory_ro
2:	mov	w0, #0
	cmp	w23, w24			// both long jumps: no patching is required
	b.eq	6f
	ldr	x9, =text_mutex			// mutex_lock(&text_mutex)
	mov	w10, #1
3:	ldaxr	w11, [x9]
	cbnz	w11, 3b
	stxr	w11, w10, [x9]
	cbnz	w11, 3b
	ldr	w10, [x19]			// aarch64_insn_read(ip, &replaced)
	cmp	w10, w23
	b.ne	4f
	mov	x0, x19
	mov	w1, w24
	bl	aarch64_insn_patch_text_nosync
	b	5f
4:	mov	w0, #-EFAULT			// replaced != old_insn
5:	ldr	x9, =text_mutex			// mutex_unlock(&text_mutex)
	stlr	wzr, [x9]
6:	ldp	x23, x24, [sp, #48]
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #64
	ret

// void __bpf_tramp_image_put_deferred(struct bpf_tramp_image *im) (trampoline.c, v6.6):
// bpf_jit_free_exec(im->image), percpu_ref_exit(), kfree_rcu(im).  The image and its
// object go together here: kfree() poisons the object the image's code reads.
	.global __bpf_tramp_image_put_deferred
__bpf_tramp_image_put_deferred:
	mov	x1, #BPF_TRAMP_IMAGE_SIZE
	b	kfree

// void bpf_tramp_image_put(struct bpf_tramp_image *im) (trampoline.c, v6.6), for a
// trampoline without fexit and fmod_ret progs: "Use call_rcu_tasks_trace() to wait for
// sleepable progs to finish.  Then use call_rcu_tasks() to wait for the rest of
// trampoline asm and normal progs."  Synchronously here: a Tasks RCU grace period, then
// the free (the Tasks RCU Trace one is left out: it waits for sleepable progs, and
// there are none).  With bpf_tramp_skip_sync = 1 (a scenario's knob, not the kernel's)
// the image is freed at once.
	.global bpf_tramp_image_put
bpf_tramp_image_put:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	ldr	x9, =bpf_tramp_skip_sync
	ldr	w9, [x9]
	cbnz	w9, 1f
	bl	synchronize_rcu_tasks		// call_rcu_tasks(__bpf_tramp_image_put_rcu)
1:	mov	x0, x19
	bl	__bpf_tramp_image_put_deferred
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// int arch_prepare_bpf_trampoline(struct bpf_tramp_image *im, void *image,
// struct bpf_prog *p) (bpf_jit_comp.c, v6.6): prepare_trampoline() emits the image,
// invoke_bpf_prog() putting p in it (emit_a64_mov_i64()), and ends with
// bpf_flush_icache(image, image + size), that is flush_icache_range() (since v6.10
// arch_prepare_bpf_trampoline() calls it, after bpf_arch_text_copy()).  Here p goes to
// the image's object, which the code reads.
	.global arch_prepare_bpf_trampoline
arch_prepare_bpf_trampoline:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	str	x2, [x0, #IM_PROG]		// emit: the prog the image runs
	mov	x0, x1
	add	x1, x1, #BPF_TRAMP_SIZE
	bl	flush_icache_range		// bpf_flush_icache(image, image + size)
	mov	w0, #0
	ldp	x29, x30, [sp], #16
	ret

// int bpf_trampoline_update(void *func_addr, struct bpf_tramp_image *cur,
// struct bpf_tramp_image *im, struct bpf_prog *p) (trampoline.c, v6.6) for one fentry
// prog p: the new image built (bpf_tramp_image_alloc() set im->image;
// arch_prepare_bpf_trampoline(), then set_memory_rox()), then modify_fentry() from the
// current image, or register_fentry() when there is none, then
// bpf_tramp_image_put(cur).  Its result to bpf_tramp_result, then bpf_tramp_done = 1
// (release) for the CPUs waiting to go offline.
	.global bpf_trampoline_update
bpf_trampoline_update:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	mov	x22, x0
	mov	x20, x1
	mov	x21, x2
	mov	x0, x21
	ldr	x1, [x21, #IM_IMAGE]
	mov	x2, x3
	bl	arch_prepare_bpf_trampoline
	ldr	x0, [x21, #IM_IMAGE]
	mov	w1, #1
	bl	set_memory_rox			// set_memory_rox((long)im->image, 1)
	mov	x0, x22
	ldr	x2, [x21, #IM_IMAGE]		// new_addr = im->image
	mov	x1, #0				// register_fentry(): old_addr NULL
	cbz	x20, 1f
	ldr	x1, [x20, #IM_IMAGE]		// modify_fentry(): tr->cur_image->image
1:	bl	bpf_arch_text_poke
	mov	w19, w0
	ldr	x9, =bpf_tramp_result
	str	w0, [x9]
	cbnz	w19, 2f
	cbz	x20, 2f
	mov	x0, x20
	bl	bpf_tramp_image_put		// if (tr->cur_image) bpf_tramp_image_put()
2:	ldr	x9, =bpf_tramp_done
	mov	w10, #1
	stlr	w10, [x9]
	mov	w0, w19
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// void bpf_prog_run_loop(u64 calls, int cpu): runs bpf_prog `calls` times, with a
// voluntary context switch (a Tasks RCU quiescent state) after each run, and leaves
// the runqueue at the end.  IRQs are on, so that kick_all_cpus_sync() IPIs are taken;
// the CPU stays online (spinning with IRQs on) until the update is done.
	.global bpf_prog_run_loop
bpf_prog_run_loop:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w1
	msr	daifclr, #2
1:	bl	bpf_prog
	mov	w0, w20
	bl	task_voluntary_switch
	subs	x19, x19, #1
	b.ne	1b
	mov	w0, w20
	bl	task_exit_rcu_tasks
	ldr	x9, =bpf_tramp_done
2:	ldar	w10, [x9]			// stay online until the update is done
	cbnz	w10, 3f
	yield
	b	2b
3:	msr	daifset, #2
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// A JITed BPF prog (build_prologue(): MOV X9, LR, then the patchsite; build_plt() at
// the end, a NOP first if needed so that the target is 8-byte aligned), with
// trampoline A attached: the patchsite is BL plt and the plt target is trampoline A.
//
// The kernel's plt loads the target with LDR (literal); here ADR + LDR, the same load
// from the same address with no register dependency either, because the testbed takes
// an LDR (literal) to read the latest bytes, outside the Arm model (testbed/dataside.py),
// and single-steps a patched literal wrongly when the LDR starts a translation block
// (Unicorn's count=1 does not count a block translated before it).
	.balign	8
	.global bpf_prog
bpf_prog:
	mov	x9, x30				// MOV X9, LR
	.global bpf_prog_poke
bpf_prog_poke:
	bl	bpf_plt				// patchsite: NOP <-> BL plt
	mov	x0, #0				// the prog's body: return 0
	ret
	nop					// build_plt(): "make sure target is 64-bit aligned"
	.global bpf_plt
bpf_plt:					// struct bpf_plt
	adr	x10, bpf_plt_target		// LDR X10, target
	ldr	x10, [x10]
	br	x10
	.global bpf_plt_target
bpf_plt_target:
	.quad	bpf_tramp_a

// dummy_tramp (bpf_jit_comp.c): the plt target when no long-jump trampoline is
// attached; returns to the prog with its own LR back
	.global dummy_tramp
dummy_tramp:
	mov	x10, x30
	mov	x30, x9
	ret	x10

// Two trampolines for the prog, fentry progs only (prepare_trampoline(): a frame for
// the parent function, one for the patched function, invoke_bpf_prog(), then back into
// the patched function with its LR back), each reading its image's object.
	.global bpf_tramp_a
bpf_tramp_a:
	stp	x29, x9, [sp, #-16]!		// frame for parent function
	mov	x29, sp
	stp	x29, x30, [sp, #-16]!		// frame for patched function
	mov	x29, sp
	ldr	x10, =bpf_tramp_im_a
	ldr	x0, [x10, #IM_PROG]		// invoke_bpf_prog(): p
	ldr	x11, [x0]			// p->bpf_func
	blr	x11
	ldp	x29, x30, [sp], #16
	ldp	x29, x9, [sp], #16
	mov	x10, x30			// return to patched function
	mov	x30, x9
	ret	x10

	.global bpf_tramp_b
bpf_tramp_b:
	stp	x29, x9, [sp, #-16]!
	mov	x29, sp
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x10, =bpf_tramp_im_b
	ldr	x0, [x10, #IM_PROG]
	ldr	x11, [x0]
	blr	x11
	ldp	x29, x30, [sp], #16
	ldp	x29, x9, [sp], #16
	mov	x10, x30
	mov	x30, x9
	ret	x10

// The fentry progs' bpf_func: each counts its runs, so that the scenario sees them
	.global bpf_fentry_a
bpf_fentry_a:
	ldr	x13, =bpf_fentry_a_runs
	ldr	w14, [x13]
	add	w14, w14, #1
	str	w14, [x13]
	ret

	.global bpf_fentry_b
bpf_fentry_b:
	ldr	x13, =bpf_fentry_b_runs
	ldr	w14, [x13]
	add	w14, w14, #1
	str	w14, [x13]
	ret

	.data
	.balign	8
	.global bpf_tramp_im_a
bpf_tramp_im_a:				// a kzalloc()ed struct bpf_tramp_image
	.quad	bpf_tramp_a			// .image
	.quad	bpf_fentry_prog_a		// the prog its code runs
	.global bpf_tramp_im_b
bpf_tramp_im_b:				// allocated, not yet prepared
	.quad	bpf_tramp_b
	.quad	0
	.global bpf_fentry_prog_a
bpf_fentry_prog_a:			// struct bpf_prog: .bpf_func
	.quad	bpf_fentry_a
	.global bpf_fentry_prog_b
bpf_fentry_prog_b:
	.quad	bpf_fentry_b
	.global bpf_tramp_result
bpf_tramp_result:
	.word	0
	.global bpf_tramp_skip_sync
bpf_tramp_skip_sync:			// 1: bpf_tramp_image_put() frees without a grace period
	.word	0
	.global bpf_tramp_done
bpf_tramp_done:
	.word	0
	.global bpf_fentry_a_runs
bpf_fentry_a_runs:
	.word	0
	.global bpf_fentry_b_runs
bpf_fentry_b_runs:
	.word	0
