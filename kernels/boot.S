// boot.S: the exception vectors, pt_regs save/restore, IPI dispatch and CPU off.
//
// Follows arch/arm64/kernel/entry.S (v5.4): the vector table `vectors`, the
// kernel_entry/kernel_exit macros saving a struct pt_regs on the stack, el1_sync
// dispatching on ESR_EL1.EC, el1_irq calling the interrupt controller's handler.
// The machine sets VBAR_EL1 to `vectors` and LR to `cpu_off` when it starts a CPU.

	.equ S_X0, 0			// struct pt_regs: regs[31], sp, pc, pstate
	.equ S_LR, 240
	.equ S_SP, 248
	.equ S_PC, 256
	.equ S_PSTATE, 264
	.equ S_FRAME_SIZE, 272

	.equ ESR_ELx_EC_SHIFT, 26
	.equ ESR_ELx_EC_BRK64, 0x3c
	.equ ESR_ELx_EC_SVC64, 0x15

	.equ DIE_BAD_MODE, 1		// reason codes written to GIC_DIE
	.equ DIE_UNHANDLED_SYNC, 2
	.equ DIE_UNHANDLED_BRK, 3

	.macro kernel_entry
	sub	sp, sp, #S_FRAME_SIZE
	stp	x0, x1, [sp, #16 * 0]
	stp	x2, x3, [sp, #16 * 1]
	stp	x4, x5, [sp, #16 * 2]
	stp	x6, x7, [sp, #16 * 3]
	stp	x8, x9, [sp, #16 * 4]
	stp	x10, x11, [sp, #16 * 5]
	stp	x12, x13, [sp, #16 * 6]
	stp	x14, x15, [sp, #16 * 7]
	stp	x16, x17, [sp, #16 * 8]
	stp	x18, x19, [sp, #16 * 9]
	stp	x20, x21, [sp, #16 * 10]
	stp	x22, x23, [sp, #16 * 11]
	stp	x24, x25, [sp, #16 * 12]
	stp	x26, x27, [sp, #16 * 13]
	stp	x28, x29, [sp, #16 * 14]
	add	x21, sp, #S_FRAME_SIZE
	mrs	x22, elr_el1
	mrs	x23, spsr_el1
	stp	x30, x21, [sp, #S_LR]
	stp	x22, x23, [sp, #S_PC]
	.endm

	.macro kernel_exit
	ldp	x21, x22, [sp, #S_PC]		// the handler may have moved regs->pc
	msr	elr_el1, x21
	msr	spsr_el1, x22
	ldp	x0, x1, [sp, #16 * 0]
	ldp	x2, x3, [sp, #16 * 1]
	ldp	x4, x5, [sp, #16 * 2]
	ldp	x6, x7, [sp, #16 * 3]
	ldp	x8, x9, [sp, #16 * 4]
	ldp	x10, x11, [sp, #16 * 5]
	ldp	x12, x13, [sp, #16 * 6]
	ldp	x14, x15, [sp, #16 * 7]
	ldp	x16, x17, [sp, #16 * 8]
	ldp	x18, x19, [sp, #16 * 9]
	ldp	x20, x21, [sp, #16 * 10]
	ldp	x22, x23, [sp, #16 * 11]
	ldp	x24, x25, [sp, #16 * 12]
	ldp	x26, x27, [sp, #16 * 13]
	ldp	x28, x29, [sp, #16 * 14]
	ldr	x30, [sp, #S_LR]
	add	sp, sp, #S_FRAME_SIZE
	eret
	.endm

	.macro ventry target
	.align	7
	b	\target
	.endm

	.text
	.align	11
	.global vectors
vectors:
	ventry	bad_mode		// Synchronous EL1t
	ventry	bad_mode		// IRQ EL1t
	ventry	bad_mode		// FIQ EL1t
	ventry	bad_mode		// Error EL1t
	ventry	el1_sync		// Synchronous EL1h
	ventry	el1_irq			// IRQ EL1h
	ventry	bad_mode		// FIQ EL1h
	ventry	bad_mode		// Error EL1h
	ventry	bad_mode		// Synchronous 64-bit EL0
	ventry	bad_mode		// IRQ 64-bit EL0
	ventry	bad_mode		// FIQ 64-bit EL0
	ventry	bad_mode		// Error 64-bit EL0
	ventry	bad_mode		// Synchronous 32-bit EL0
	ventry	bad_mode		// IRQ 32-bit EL0
	ventry	bad_mode		// FIQ 32-bit EL0
	ventry	bad_mode		// Error 32-bit EL0

	.align	7
el1_sync:
	kernel_entry
	mov	x0, sp				// struct pt_regs *regs
	mrs	x1, esr_el1
	bl	do_sync
	kernel_exit

el1_irq:
	kernel_entry
	mov	x0, sp
	bl	handle_ipi
	kernel_exit

// do_sync(regs, esr): el1_sync_handler() dispatch on the exception class.
	.global do_sync
do_sync:
	stp	x29, x30, [sp, #-16]!
	lsr	x2, x1, #ESR_ELx_EC_SHIFT
	cmp	x2, #ESR_ELx_EC_BRK64
	b.ne	1f
	bl	call_break_hook			// x0 = regs, x1 = esr
	cbz	x0, 2f				// DBG_HOOK_HANDLED
	mov	x0, #DIE_UNHANDLED_BRK
	b	die
1:	mov	x0, #DIE_UNHANDLED_SYNC
	b	die
2:	ldp	x29, x30, [sp], #16
	ret

// call_break_hook(regs, esr): arch/arm64/kernel/debug-monitors.c.  Walks the
// `break_hooks` table of {fn, imm, mask} entries (u64 each, fn == 0 ends it) and
// calls the first whose (esr & 0xffff & ~mask) == imm; returns DBG_HOOK_ERROR (1)
// when none matches.
	.global call_break_hook
call_break_hook:
	stp	x29, x30, [sp, #-16]!
	ldr	x9, =break_hooks
	and	x10, x1, #0xffff
1:	ldr	x11, [x9]			// fn
	cbz	x11, 3f
	ldp	x12, x13, [x9, #8]		// imm, mask
	bic	x14, x10, x13
	cmp	x14, x12
	b.eq	2f
	add	x9, x9, #24
	b	1b
2:	blr	x11				// fn(regs, esr)
	ldp	x29, x30, [sp], #16
	ret
3:	mov	x0, #1
	ldp	x29, x30, [sp], #16
	ret

// handle_ipi(regs): acknowledge every pending IPI, count it per CPU and call its
// handler from `ipi_handlers` (one u64 per IPI number, 0 = none).  Follows the
// shape of gic_handle_irq() + handle_IPI() in v5.4.
	.global handle_ipi
handle_ipi:
	stp	x29, x30, [sp, #-16]!
	stp	x19, x20, [sp, #-16]!
	ldr	x19, =GIC_BASE
1:	ldr	w20, [x19, #GIC_ACK]		// irqnr = gic_read_iar()
	cmp	w20, #GIC_SPURIOUS
	b.eq	2f
	isb					// gic_write_eoir(irqnr): "the control
						// dependency from gic_read_iar to the ISB in
						// gic_write_eoir is enough to ensure that any
						// shared data read by handle_IPI will be read
						// after the ACK" (irq-gic-v3.c v5.4)
	mrs	x9, tpidr_el1			// this CPU's per-CPU area
	ldr	x10, [x9, #PERCPU_IPI_COUNT]
	add	x10, x10, #1
	str	x10, [x9, #PERCPU_IPI_COUNT]
	ldr	x9, =ipi_handlers
	ldr	x9, [x9, x20, lsl #3]
	cbz	x9, 1b
	mov	w0, w20
	blr	x9
	b	1b
2:	ldp	x19, x20, [sp], #16
	ldp	x29, x30, [sp], #16
	ret

bad_mode:
	mov	x0, #DIE_BAD_MODE
	b	die

// die(reason): the kernel's die(): report and stop the run.
	.global die
die:
	ldr	x9, =GIC_BASE
	str	w0, [x9, #GIC_DIE]
1:	b	1b

// cpu_off(): a CPU whose work is done (the machine returns every entry here).
	.global cpu_off
cpu_off:
	ldr	x9, =GIC_BASE
	str	wzr, [x9, #GIC_CPU_OFF]
1:	b	1b

// smp_processor_id(): from the interrupt controller.
	.global smp_processor_id
smp_processor_id:
	ldr	x9, =GIC_BASE
	ldr	w0, [x9, #GIC_CPUID]
	ret

	.data
	.align	3
	.global break_hooks
break_hooks:				// {fn, imm, mask} entries, filled by scenarios
	.space	24 * 16
	.quad	0
	.global ipi_handlers
ipi_handlers:
	.space	8 * 16
