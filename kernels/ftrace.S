// ftrace.S: turning on an ftrace callsite with DYNAMIC_FTRACE_WITH_CALL_OPS, as arm64
// does it since v6.3 (Mark Rutland, "arm64: Implement HAVE_DYNAMIC_FTRACE_WITH_CALL_OPS",
// LKML 20230123134603.1064407-9; arch/arm64/kernel/ftrace.c and entry-ftrace.S).
//
// Each callsite has an 8-byte literal before the function, ALIGN_DOWN(ip - 12, 8), that
// points to the ftrace_ops to call; ftrace_caller finds it from its LR.  Turning a site
// on writes the literal first, then patches the NOP into BL ftrace_caller:
//
//	int ftrace_make_call(struct dyn_ftrace *rec, unsigned long addr)
//	{
//		ret = ftrace_rec_update_ops(rec);	// aarch64_insn_write_literal_u64()
//		...
//		old = aarch64_insn_gen_nop();
//		new = aarch64_insn_gen_branch_imm(pc, addr, AARCH64_INSN_BRANCH_LINK);
//		return ftrace_modify_code(pc, old, new, true);
//	}
//
// A CPU that runs the new BL must then call through the new ops: patch_unmap()'s
// DSB ISH orders the literal before the BL store, and the fetch of the BL orders the
// caller's read of the literal after what that store was ordered after.

	.equ EINVAL, 22
	.equ EPERM, 1

	.text

// void ftrace_patcher(void *pc, void *literal, u64 ops, u32 bl): ftrace_make_call(),
// its result to ftrace_result
	.global ftrace_patcher
ftrace_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	ftrace_make_call
	ldr	x2, =ftrace_result
	str	w0, [x2]
	ldp	x29, x30, [sp], #16
	ret

// int ftrace_make_call(void *pc, void *literal, u64 ops, u32 bl)
	.global ftrace_make_call
ftrace_make_call:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w3
	mov	x0, x1
	mov	x1, x2
	bl	ftrace_rec_set_ops		// ftrace_rec_update_ops(rec)
	cbnz	w0, 1f
	mov	x0, x19
	ldr	w1, =0xd503201f			// aarch64_insn_gen_nop()
	mov	w2, w20
	mov	w3, #1
	bl	ftrace_modify_code
1:	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// int ftrace_rec_set_ops(void *literal, u64 ops): aarch64_insn_write_literal_u64(), or
// with ftrace_literal_plain = 1 (a scenario's knob, not the kernel's) a plain 64-bit
// store through the writable alias, WRITE_ONCE-like: no lock, no barrier
	.global ftrace_rec_set_ops
ftrace_rec_set_ops:
	ldr	x2, =ftrace_literal_plain
	ldr	w2, [x2]
	cbnz	w2, 1f
	b	aarch64_insn_write_literal_u64
1:	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x0, x0, x2
	str	x1, [x0]
	mov	x0, #0
	ret

// int ftrace_modify_code(void *pc, u32 old, u32 new, bool validate) (ftrace.c):
// read the site, -EINVAL if it is not `old`, then aarch64_insn_patch_text_nosync()
	.global ftrace_modify_code
ftrace_modify_code:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w2
	cbz	w3, 1f
	ldr	w4, [x0]			// aarch64_insn_read(): copy_from_kernel_nofault()
	cmp	w4, w1
	b.ne	2f
1:	mov	x0, x19
	mov	w1, w20
	bl	aarch64_insn_patch_text_nosync
	cbz	w0, 3f
	mov	w0, #-EPERM
	b	3f
2:	mov	w0, #-EINVAL
3:	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void traced_loop(u64 calls): calls traced_func `calls` times, with a context
// synchronization event before each call (an ISB here; in a kernel, the exception
// returns a CPU goes through between calls)
	.global traced_loop
traced_loop:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
1:	isb
	bl	traced_func
	subs	x19, x19, #1
	b.ne	1b
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// A function compiled with -fpatchable-function-entry=2 and CALL_OPS, after
// ftrace_init_nop(): the literal holds &ftrace_nop_ops, the first NOP is MOV X9, LR,
// the second (the callsite, rec->ip) is still a NOP.
	.balign	8
	.global traced_func_literal
traced_func_literal:
	.quad	ftrace_nop_ops
	.global traced_func
traced_func:
	mov	x9, x30				// MOV X9, LR
	.global ftrace_site
ftrace_site:
	nop					// NOP <-> BL ftrace_caller
	ret

// ftrace_caller (entry-ftrace.S, CALL_OPS): the literal is 16 bytes below the return
// address aligned down to 8; call op->func, then return into the traced function with
// its own LR back.
	.global ftrace_caller
ftrace_caller:
	stp	x9, x30, [sp, #-16]!		// the function's LR, the callsite's return
	bic	x11, x30, #0x7
	ldr	x11, [x11, #-16]		// op: the callsite's literal
	ldr	x12, [x11]			// op->func
	mov	x2, x11
	blr	x12
	ldp	x9, x10, [sp], #16
	mov	x30, x9
	ret	x10

// The ops' functions.  In Linux ftrace_nop_ops's func is ftrace_stub, which does
// nothing; here each counts its calls, so that the scenario's check sees them.
	.global ftrace_nop_func
ftrace_nop_func:
	ldr	x13, =ftrace_nop_calls
	ldr	w14, [x13]
	add	w14, w14, #1
	str	w14, [x13]
	ret

	.global trace_func
trace_func:
	ldr	x13, =trace_calls
	ldr	w14, [x13]
	add	w14, w14, #1
	str	w14, [x13]
	ret

	.data
	.balign	8
	.global ftrace_nop_ops
ftrace_nop_ops:				// struct ftrace_ops: .func first (FTRACE_OPS_FUNC)
	.quad	ftrace_nop_func
	.global trace_ops
trace_ops:
	.quad	trace_func
	.global ftrace_result
ftrace_result:
	.word	0
	.global ftrace_literal_plain
ftrace_literal_plain:
	.word	0
	.global ftrace_nop_calls
ftrace_nop_calls:
	.word	0
	.global trace_calls
trace_calls:
	.word	0
