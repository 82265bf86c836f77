// gnu_pool.S: literal pool placement and sharing, checked against GNU as.

	.equ	K, 0x100

	.text
	.global	pool_fn
pool_fn:
	ldr	x0, =K				// constant: shared with the next two
	ldr	x1, =0x100
	ldr	x2, =K
	ldr	w3, =K				// other size: its own entry
	ldr	x4, =pool_fn			// symbol: shared with the next
	ldr	x5, =pool_fn
	ldr	x6, =pool_fn + 4		// other addend: its own entry
	ldr	x7, =1f				// forward local label
	ldr	x8, =LATE			// forward constant: keyed by name
	ldr	x9, =0x100			// shared with x0
1:	.ltorg
	ldr	x10, =0xfedcba9876543210	// only 8-byte entries in this pool
	nop
	.ltorg
	ldr	w11, =7				// only 4-byte entries
	.ltorg
	.ltorg					// empty: nothing
	ldr	x12, =K				// a new pool: a new entry
	ldr	w13, =-1
	ldr	x14, =main_entry		// another file
	ret
	.equ	LATE, 0x55
