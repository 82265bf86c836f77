// perf.S: PERF_RECORD_TEXT_POKE records into a ring buffer in guest memory, as
// kernel/events/core.c perf_event_text_poke() emits them (v5.9+, the event the 2019
// discussion designed).  Layout (include/uapi/linux/perf_event.h):
//   struct perf_event_header { u32 type = 20; u16 misc; u16 size; }
//   u64 addr; u16 old_len; u16 new_len; u8 bytes[old_len + new_len];
//   padding to 8 bytes; struct sample_id { u64 time; }
// The time is the machine's clock (GIC_CLOCK: the global step), the timebase the
// hardware trace's timestamps use too, as perf_clock() is shared by PT/ETM and records.

	.equ PERF_RECORD_TEXT_POKE, 20
	.equ PERF_RING_SIZE, 4096

	// Copy \len bytes from \src to x11, advancing both: words first, then bytes.
	.macro copy_bytes src, len
	mov	w12, \len
91:	cmp	w12, #4
	b.lo	92f
	ldr	w13, [\src], #4
	str	w13, [x11], #4
	sub	w12, w12, #4
	b	91b
92:	cbz	w12, 93f
	ldrb	w13, [\src], #1
	strb	w13, [x11], #1
	sub	w12, w12, #1
	b	92b
93:
	.endm

	.text

// void perf_event_text_poke(const void *addr, const void *old, int old_len,
//                           const void *new, int new_len)
	.global perf_event_text_poke
perf_event_text_poke:
	add	w9, w2, w4			// size = 8 + 8 + 4 + len, rounded up, + 8
	add	w9, w9, #(20 + 7)
	and	w9, w9, #~7
	add	w9, w9, #8
	ldr	x10, =perf_ring_head		// reserve: an atomic fetch-and-add
1:	ldaxr	x11, [x10]
	add	x12, x11, x9
	stlxr	w13, x12, [x10]
	cbnz	w13, 1b
	cmp	x12, #PERF_RING_SIZE
	b.hi	6f				// full: the record is lost (counted)
	ldr	x10, =perf_ring
	add	x10, x10, x11			// the record
	mov	w11, #PERF_RECORD_TEXT_POKE
	str	w11, [x10]
	strh	wzr, [x10, #4]			// misc
	strh	w9, [x10, #6]			// size
	str	x0, [x10, #8]			// addr
	strh	w2, [x10, #16]
	strh	w4, [x10, #18]
	add	x11, x10, #20
	copy_bytes x1, w2			// the old bytes, then the new ones
	copy_bytes x3, w4
	ldr	x11, =GIC_BASE			// sample_id.time = perf_clock()
	ldr	x12, [x11, #GIC_CLOCK]
	ldr	x11, =perf_clock		// the last time handed out, for the reader
	str	x12, [x11]
	sub	x13, x9, #8
	str	x12, [x10, x13]
	ret
6:	ldr	x10, =perf_lost
	ldr	x11, [x10]
	add	x11, x11, #1
	str	x11, [x10]
	ret

// void perf_text_poke_insn(void *addr, u32 old, u32 new): one instruction's change.
	.global perf_text_poke_insn
perf_text_poke_insn:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	w1, w2, [sp, #16]
	add	x1, sp, #16			// old
	mov	w2, #4
	add	x3, sp, #20			// new
	mov	w4, #4
	bl	perf_event_text_poke
	ldp	x29, x30, [sp], #32
	ret

// int text_poke_pre_post(void *addr, u32 insn): a nosync patch between a PRE and a
// POST record (the alternative to the BRK protocol discussed in 2019).
	.global text_poke_pre_post
text_poke_pre_post:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	str	x21, [sp, #32]
	mov	x19, x0
	mov	w20, w1
	ldr	w21, [x19]			// the old instruction (a data load: the D-side)
	mov	w1, w21
	mov	w2, w20
	bl	perf_text_poke_insn		// PRE
	mov	x0, x19
	mov	w1, w20
	bl	aarch64_insn_patch_text_nosync
	mov	x0, x19
	mov	w1, w21
	mov	w2, w20
	bl	perf_text_poke_insn		// POST
	mov	w0, #0
	ldr	x21, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

	.data
	.align	3
	.global perf_clock
perf_clock:
	.quad	0
	.global perf_ring_head
perf_ring_head:
	.quad	0
	.global perf_lost
perf_lost:
	.quad	0
	.global perf_ring
perf_ring:
	.space	PERF_RING_SIZE
