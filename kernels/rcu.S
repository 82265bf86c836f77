// rcu.S: a minimal Tasks RCU grace period, for objects that traced code may still be
// using (kernel/rcu/tasks.h, v6.6: synchronize_rcu_tasks(), rcu_tasks_wait_gp(),
// rcu_tasks_pertask() and check_holdout_task()).
//
// Tasks RCU waits until every task that was running has done a voluntary context
// switch (its nvcsw changed) or is off the runqueue.  Here one task runs per CPU:
// rcu_tasks_nvcsw[cpu] is its nvcsw and bit 63 says it left the runqueue for good (a
// CPU whose work is done).  synchronize_rcu_tasks() snapshots every other CPU's count
// (rcu_tasks_pertask) and polls until each changed or went off (check_holdout_task),
// with synchronize_rcu()'s full barriers before and after, as rcu_tasks_wait_gp() has.
//
// What makes the grace period order a reader's accesses is the context switch's own
// full barriers (__schedule(): smp_mb__after_spinlock() before the switch, the
// runqueue lock's release and acquire around it): task_voluntary_switch() keeps both,
// each behind a scenario's knob (not the kernel's) so that ablation can ask which is
// needed.

	.equ	RCU_TASKS_OFF, 63		// bit: the task left the runqueue (!on_rq)

	.text

// void task_voluntary_switch(int cpu): what __schedule() does that Tasks RCU sees:
// a full barrier, ++nvcsw, a full barrier
	.global task_voluntary_switch
task_voluntary_switch:
	ldr	x9, =rcu_tasks_nvcsw
	add	x9, x9, w0, uxtw #3
	ldr	x10, =rcu_qs_skip_mb_before
	ldr	w10, [x10]
	cbnz	w10, 1f
	dmb	ish				// smp_mb__after_spinlock()
1:	ldr	x11, [x9]
	add	x11, x11, #1
	str	x11, [x9]			// WRITE_ONCE(prev->nvcsw, prev->nvcsw + 1)
	ldr	x10, =rcu_qs_skip_mb_after
	ldr	w10, [x10]
	cbnz	w10, 2f
	dmb	ish				// rq unlock, switch, rq lock: ordered after
2:	ret

// void task_exit_rcu_tasks(int cpu): the task leaves the runqueue for good (do_exit())
	.global task_exit_rcu_tasks
task_exit_rcu_tasks:
	ldr	x9, =rcu_tasks_nvcsw
	add	x9, x9, w0, uxtw #3
	dmb	ish				// everything it did, before
	ldr	x11, [x9]
	orr	x11, x11, #(1 << RCU_TASKS_OFF)
	str	x11, [x9]			// WRITE_ONCE(t->on_rq, 0)
	ret

// void synchronize_rcu_tasks(void): wait until every other CPU's task has passed a
// voluntary context switch since the call, or is off the runqueue
	.global synchronize_rcu_tasks
synchronize_rcu_tasks:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	bl	smp_processor_id
	mov	w19, w0				// this CPU: not waited for
	dmb	ish				// synchronize_rcu(): the updates before, before
	ldr	x20, =rcu_tasks_nvcsw
	ldr	x21, =nr_cpus
	ldr	w21, [x21]
	mov	w22, #0				// for each CPU (for_each_process_thread)
1:	cmp	w22, w21
	b.hs	4f
	cmp	w22, w19
	b.eq	3f
	ldr	x10, [x20, w22, uxtw #3]	// rcu_tasks_pertask(): t->rcu_tasks_nvcsw
2:	tbnz	x10, #RCU_TASKS_OFF, 3f		// check_holdout_task(): !on_rq
	ldr	x11, [x20, w22, uxtw #3]
	cmp	x11, x10			// ... or nvcsw changed
	b.ne	3f
	yield					// schedule_timeout_idle()
	b	2b
3:	add	w22, w22, #1
	b	1b
4:	dmb	ish				// synchronize_rcu(): the frees after, after
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

	.data
	.balign	8
	.global rcu_tasks_nvcsw
rcu_tasks_nvcsw:			// per CPU: its task's nvcsw, bit 63: off the runqueue
	.space	8 * MAX_CPUS
	.global rcu_qs_skip_mb_before
rcu_qs_skip_mb_before:			// 1: task_voluntary_switch() without its first dmb
	.word	0
	.global rcu_qs_skip_mb_after
rcu_qs_skip_mb_after:			// 1: ... without its second dmb
	.word	0
