// ftrace_update.S: two ftrace callsite updates at once, under text_mutex or not.
//
// arm64 ftrace patches a callsite through ftrace_modify_code(pc, old, new, validate)
// (arch/arm64/kernel/ftrace.c, v6.6): read the site, -EINVAL if it is not `old`, then
// aarch64_insn_patch_text_nosync().  The read and the write are two steps, and with
// CALL_OPS the callsite's literal is a third: only the caller's serialization makes an
// update atomic.  ftrace takes text_mutex around every update
// (ftrace_arch_code_modify_prepare()/_post_process(), kernel/trace/ftrace.c; the other
// text patchers, jump labels, kprobes and static calls, take it too), and
// aarch64_insn_write()'s patch_lock only covers the fixmap.
//
// ftrace_update_no_mutex = 1 (a scenario's knob, not the kernel's) leaves the mutex out.
// text_mutex is cacheflush.S's.

	.text

// void ftrace_update(int enable, void *pc, void *literal, u64 ops, u32 bl, int *ret):
// ftrace_make_call() (enable) or ftrace_make_nop() under text_mutex; the result to *ret
	.global ftrace_update
ftrace_update:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	mov	w19, w0
	mov	x20, x1
	mov	x21, x2
	mov	x22, x5
	str	x3, [sp, #-16]!			// ops, bl
	str	w4, [sp, #8]
	ldr	x9, =ftrace_update_no_mutex
	ldr	w9, [x9]
	cbnz	w9, 2f
	ldr	x9, =text_mutex			// mutex_lock(&text_mutex)
	mov	w10, #1
1:	ldaxr	w11, [x9]
	cbnz	w11, 1b
	stxr	w11, w10, [x9]
	cbnz	w11, 1b
2:	ldr	x2, [sp]			// ops
	ldr	w3, [sp, #8]			// bl
	cbz	w19, 3f
	mov	x0, x20
	mov	x1, x21
	bl	ftrace_make_call		// (pc, literal, ops, bl)
	b	4f
3:	mov	x0, x20
	mov	x1, x21
	mov	w2, w3
	bl	ftrace_make_nop			// (pc, literal, bl)
4:	str	w0, [x22]
	ldr	x9, =ftrace_update_no_mutex
	ldr	w9, [x9]
	cbnz	w9, 5f
	ldr	x9, =text_mutex			// mutex_unlock(&text_mutex)
	stlr	wzr, [x9]
5:	add	sp, sp, #16
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

	.data
	.balign	8
	.global ftrace_update_no_mutex
ftrace_update_no_mutex:			// 1: updates without text_mutex
	.word	0
	.balign	8
	.global ftrace_update_ret
ftrace_update_ret:			// per CPU: what its update returned
	.word	0x7fffffff, 0x7fffffff
