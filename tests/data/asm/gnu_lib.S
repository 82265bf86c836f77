// gnu_lib.S: differential fixture; called from gnu_main.S and referring back to it.

	.text
	.globl	lib_func
lib_func:
	nop
	stp	x29, x30, [sp, #-32]!
	ldr	x0, =main_data			// pool entry for the other file's data
	ldr	w1, =main_entry			// a 4-byte pool entry holding an address
	adr	x2, lib_local
	bl	loop_fn				// back into gnu_main.S
	ldp	x29, x30, [sp], #32
	ret
	.global	lib_local
lib_local:
	.word	0				// permanently undefined
	b	main_entry
	.byte	7				// text ends unaligned: the pool pads

	.data
	.p2align 4
	.globl	lib_table
lib_table:
	.quad	main_entry, loop_fn, lib_func
	.word	main_data - lib_table
	.quad	main_bss
