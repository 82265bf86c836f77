// smp.S: cross-CPU calls over IPIs, as kernel/smp.c does them (v5.4).
//
// kick_all_cpus_sync(): smp_mb(), then a synchronous do-nothing IPI to every other
// online CPU, waiting until each has run it.  Taking the IPI is an exception entry on
// each target, a context synchronization event: after it returns, no other CPU can
// still run instructions it fetched before the call.  arm64 jump labels use it since
// v6.11 (commit cfb00a357864) after patching.

	.equ IPI_CALL_FUNC, 1

	.text

// void kick_all_cpus_sync(void)
	.global kick_all_cpus_sync
kick_all_cpus_sync:
	ldr	x9, =kick_skip_smp_mb		// a scenario's knob (not the kernel's): 1
	ldr	w9, [x9]			// leaves out the smp_mb()
	cbnz	w9, 3f
	dmb	ish				// smp_mb()
3:	ldr	x9, =nr_cpus
	ldr	w10, [x9]
	sub	w10, w10, #1			// every other online CPU must answer
	ldr	x11, =call_function_pending
	str	w10, [x11]
	dsb	ish
	ldr	x12, =GIC_BASE
	mov	w13, #(IPI_CALL_FUNC << 8)
	str	w13, [x12, #GIC_SEND_OTHERS]
1:	ldar	w10, [x11]			// csd_lock_wait()
	cbz	w10, 2f
	yield
	b	1b
2:	ret

// void ipi_call_function(int ipi): the IPI handler (generic_smp_call_function_
// single_interrupt with do_nothing as the function): acknowledge the call.
	.global ipi_call_function
ipi_call_function:
	ldr	x11, =call_function_pending
1:	ldaxr	w10, [x11]
	sub	w10, w10, #1
	stlxr	w12, w10, [x11]
	cbnz	w12, 1b
	ret

	.data
	.align	3
	.global nr_cpus
nr_cpus:				// set by the scenario: CPUs online for IPIs
	.word	0
	.global call_function_pending
call_function_pending:
	.word	0
	.global kick_skip_smp_mb
kick_skip_smp_mb:			// 1: kick_all_cpus_sync() without its smp_mb()
	.word	0
