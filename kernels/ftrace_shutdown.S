// ftrace_shutdown.S: turning an ftrace callsite off and freeing its ops, with
// DYNAMIC_FTRACE_WITH_CALL_OPS (arm64 since v6.3; arch/arm64/kernel/ftrace.c and
// kernel/trace/ftrace.c, v6.6).  Needs ftrace.S (ftrace_caller, ftrace_modify_code,
// ftrace_rec_set_ops), rcu.S (the grace period), slab.S (kfree) and smp.S (nr_cpus).
//
//	int ftrace_make_nop(struct module *mod, struct dyn_ftrace *rec, unsigned long addr)
//	{
//		ret = ftrace_rec_set_nop_ops(rec);	// the literal: &ftrace_nop_ops
//		...
//		old = aarch64_insn_gen_branch_imm(pc, addr, AARCH64_INSN_BRANCH_LINK);
//		return ftrace_modify_code(pc, old, new, true);	// new: a NOP
//	}
//
// then ftrace_shutdown(): "Dynamic ops may be freed, we must make sure that all
// callers are done before leaving this function": synchronize_rcu_tasks_rude() and
// synchronize_rcu_tasks(), after which the ops' owner may kfree() them.

	.text

// int ftrace_make_nop(void *pc, void *literal, u32 bl) (ftrace.c, CALL_OPS): the
// literal back to &ftrace_nop_ops first (ftrace_rec_set_nop_ops()), then the BL back
// to a NOP, validated against the BL
	.global ftrace_make_nop
ftrace_make_nop:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w2
	mov	x0, x1
	ldr	x1, =ftrace_nop_ops
	bl	ftrace_rec_set_ops		// ftrace_rec_set_nop_ops(rec)
	cbnz	w0, 1f
	mov	x0, x19
	mov	w1, w20				// old: the BL
	ldr	w2, =0xd503201f			// new: aarch64_insn_gen_nop()
	mov	w3, #1
	bl	ftrace_modify_code
1:	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void ftrace_unregister_patcher(void *pc, void *literal, struct ftrace_ops *ops,
// u32 bl): unregister_ftrace_function(ops) for the one callsite ops traces, then the
// ops' owner frees them: ftrace_shutdown() turns the callsite off (ftrace_make_nop())
// and, the ops being dynamic (FTRACE_OPS_FL_DYNAMIC), waits for a Tasks RCU grace
// period before it returns, so that no CPU can still be in ftrace_caller with the ops
// (kernel/trace/ftrace.c, v6.6: "Dynamic ops may be freed, we must make sure that all
// callers are done before leaving this function").  Its synchronize_rcu_tasks_rude()
// is left out: one kind of grace period is enough to show what it is for.
	.global ftrace_unregister_patcher
ftrace_unregister_patcher:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x2
	mov	w2, w3
	bl	ftrace_make_nop
	ldr	x2, =ftrace_result
	str	w0, [x2]
	ldr	x2, =ftrace_skip_sync
	ldr	w2, [x2]
	cbnz	w2, 1f
	bl	synchronize_rcu_tasks
1:	mov	x0, x19
	mov	x1, #16				// sizeof(struct ftrace_ops) here: func, flags
	bl	kfree
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void traced_loop_rcu(u64 calls, int cpu): calls traced_func_dyn `calls` times, with
// a voluntary context switch (a Tasks RCU quiescent state) before each call, and
// leaves the runqueue at the end
	.global traced_loop_rcu
traced_loop_rcu:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	w20, w1
1:	mov	w0, w20
	bl	task_voluntary_switch
	bl	traced_func_dyn
	subs	x19, x19, #1
	b.ne	1b
	mov	w0, w20
	bl	task_exit_rcu_tasks
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// A traced function whose callsite is on, with dynamically allocated ops: after
// register_ftrace_function(dyn_ops) and ftrace_make_call()
	.balign	8
	.global traced_func_dyn_literal
traced_func_dyn_literal:
	.quad	dyn_ops
	.global traced_func_dyn
traced_func_dyn:
	mov	x9, x30				// MOV X9, LR
	.global ftrace_site_dyn
ftrace_site_dyn:
	bl	ftrace_caller
	ret

	.data
	.balign	8
	.global dyn_ops
dyn_ops:				// a kmalloc()ed struct ftrace_ops: .func, .flags
	.quad	trace_func
	.quad	0
	.global ftrace_skip_sync
ftrace_skip_sync:			// 1: ftrace_shutdown() frees without a grace period
	.word	0
