// slab.S: kfree() as SLUB does it with slub_debug=P (SLAB_POISON): the freed object is
// filled with POISON_FREE and ends with POISON_END (mm/slub.c, init_object();
// include/linux/poison.h, v6.6).  The machine's use-after-free oracle
// (Machine.watch_object, testbed/slab.py) fires when a load returns those bytes.
//
// No barrier: a free is ordered after the object's last use by what the caller did
// before it (a grace period, rcu.S), not by kfree().  The memory is not reused.

	.text

// void kfree(const void *obj, size_t size): size a multiple of 8 (the object's cache)
	.global kfree
kfree:
	add	x3, x0, x1
	sub	x3, x3, #8			// the last doubleword
	ldr	w2, =0x6b6b6b6b			// POISON_FREE
	orr	x2, x2, x2, lsl #32
1:	cmp	x0, x3
	b.hs	2f
	str	x2, [x0], #8
	b	1b
2:	mov	w4, #0xa5			// POISON_END, the object's last byte
	bfi	x2, x4, #56, #8
	str	x2, [x0]
	ret
