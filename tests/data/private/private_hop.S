// private_hop.S: a wait loop whose private accesses sit in a block of their own
// (tests/test_walker_python.py).
//
// hop_spin(u64 *count, u32 *flag): reads the flag with an acquire (a visible operation,
// where each of the CPU's runs starts), then branches to a block that increments the
// count (plain accesses to data private to the CPU: no scheduling points) and back.
// The first time that block runs its code is hooked and the run starts again from it
// (cpu._block_hook, _fastpath.c's hook_block); the run must still stop at the acquire
// it started from when it comes round, so each run adds one to the count.

	.text
	.global hop_spin
hop_spin:
1:	ldar	w3, [x1]
	cbnz	w3, 2f
	b	3f
3:	ldr	x2, [x0]
	add	x2, x2, #1
	str	x2, [x0]
	b	1b
2:	ret

	.data
	.align	4
	.global hop_count
hop_count:
	.quad	0, 0
	.global hop_flag
hop_flag:
	.word	0, 0
