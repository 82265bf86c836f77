// private_spin.S: a CPU that counts in data private to it while it waits for a flag
// (tests/test_private.py, Machine.set_private).
//
// priv_spin(u64 *count, u32 *flag): each spin iteration loads, increments and stores the
// count (plain accesses: no scheduling points once the count is private), then reads the
// flag with an acquire.  Its registers are the same at every YIELD: only the count
// moves, so a spin must not be taken for one that changes nothing.  At the end it reads
// the count once more with a load-acquire and copies it with a store-release into the
// count's second word (accesses to private data that stay visible operations), and
// into priv_seen.
// priv_setter(u32 *flag, u64 *peek): sets the flag with a release; with peek != 0 it
// first reads *peek, which the tests declare private to the other CPU.

	.text
	.global priv_spin
priv_spin:
1:	ldr	x2, [x0]
	add	x2, x2, #1
	str	x2, [x0]
	mov	x2, #0
	ldar	w3, [x1]
	cbnz	w3, 2f
	yield
	b	1b
2:	ldar	x4, [x0]
	add	x6, x0, #8
	stlr	x4, [x6]
	ldr	x5, =priv_seen
	str	x4, [x5]
	ret

	.global priv_setter
priv_setter:
	cbz	x1, 1f
	ldr	x2, [x1]
1:	mov	w3, #1
	stlr	w3, [x0]
	ret

	.data
	.align	4
	.global priv_count
priv_count:
	.quad	0, 0
	.global priv_flag
priv_flag:
	.word	0, 0
	.global priv_seen
priv_seen:
	.quad	0
