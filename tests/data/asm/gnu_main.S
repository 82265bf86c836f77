// gnu_main.S: differential fixture (with gnu_lib.S and gnu_pool.S).  Every construct
// testbed.asm supports appears here at least once; tests/test_asm_gnu.py assembles it
// with GNU as and compares word for word.

/* A block comment
   spanning lines; // inside it is nothing */

	.equ	SLOT_SIZE, 16			// .equ
	.set	NSLOTS, 4			// .set
	ALL_SLOTS = SLOT_SIZE * NSLOTS		// NAME = expr
	.equ	MASK, (1 << 12) - 1
	.equ	MIXED, 1 + 2 << 3		// GNU precedence: 1 + (2 << 3) = 17
	.equ	BITS, 3 | 4 + 1			// (3 | 4) + 1 = 8
	.equ	OCT, 010			// octal 8
	.equ	BIN, 0b1011
	.equ	CHR, 'A
	.equ	CHR2, 'z'
	.equ	NEG, -7 / 2			// C truncation: -3
	.equ	REM, -7 % 3			// -1
	.equ	SHR, -8 >> 60			// unsigned shift: 15
	.equ	NOT, ~0x0f & 0xff
	.equ	XOR, 0x5a ^ 0xff
	.equ	FWD_USE, LATER + 1		// a constant defined further down

	.macro	push2 a, b			// two registers on the stack
	stp	\a, \b, [sp, #-16]!
	.endm

	.macro	pop2 a, b
	ldp	\a, \b, [sp], #16
	.endm

	.macro	slot name, value=7, size:req
\name\()_\@:	.word \value
	.space	\size - 4
	.endm

	.macro	words first, rest:vararg
	.word	\first
	.word	\rest
	.endm

	.macro	frame fn			// a macro calling macros
	push2	x29, x30
	mov	x29, sp
	bl	\fn
	pop2	x29, x30
	.endm

	.text
	.global	main_entry
	.type	main_entry, %function
main_entry:	frame lib_func			// label followed by a macro call
	bl	lib_func			// cross-file call
	b	lib_func + 4			// addend on a cross-file symbol
	b	main_entry + 8			// addend on a local symbol: 2 words on
	adr	x0, main_entry			// adr to a label in this file
	adr	x1, main_word - 4		// adr with a negative addend
	adr	x2, .				// the current address
	adr	x3, lib_local + 8		// another file's code
	ldr	x4, main_word			// literal load from a label
	ldrsw	x5, main_word
	prfm	pldl1keep, main_word
	ldr	x6, =lib_table			// pool: another file's label
	ldr	x7, =ALL_SLOTS			// pool: a constant
	ldr	w8, =0xdeadbeef			// pool: a 4-byte entry
	ldr	x9, =ALL_SLOTS			// shared with x7's entry
	ldr	x10, =GIC_BASE + 0x10		// pool: a define
	ldr	x11, =FWD_USE			// pool: forward constant
	ldr	x12, =main_entry + 16		// pool: symbol plus addend
a: b: c:	nop					// several labels on one line
	mov	x0, #SLOT_SIZE ; mov x1, #NSLOTS ; mov x2, #(1 << 4)
	mov	x3, #MAX_CPUS
	mov	x4, #MIXED
	mov	x5, #BITS + OCT + BIN
	mov	x6, #CHR
	mov	x7, #CHR2
	mov	x8, #NEG
	mov	x9, #REM
	mov	x10, #SHR
	mov	x11, #NOT
	mov	x12, #XOR
	mov	x13, #'a'
	mov	x14, #-1
	mov	w15, #0xffff
	movz	x16, #0x1234, lsl #16
	movk	x16, #(MASK >> 4), lsl #32
	movn	x17, #0
	add	x0, x1, #MASK
	add	x0, x1, #1, lsl #12
	sub	sp, sp, #ALL_SLOTS
	add	sp, sp, #ALL_SLOTS
	and	x0, x1, #0xff00
	orr	w2, w3, #0x1
	eor	x4, x5, x6, lsl #3
	add	x7, x8, x9, asr #2
	add	x10, x11, w12, uxtw #2
	cmp	x0, #NSLOTS - 1
	ccmp	x1, #2, #0, ne
	csel	x2, x3, x4, lo
	csinc	x5, x6, x7, hs
	cset	x8, eq
	tst	x0, #3
	ubfx	x6, x5, #16, #4
	lsl	x4, x4, x6
	lsr	x0, x1, #8
	asr	w2, w3, 31			// bare number without #
	madd	x0, x1, x2, x3
	udiv	x4, x5, x6
	neg	x7, x8
	mvn	x9, x10
	rev	w11, w12
	clz	x13, x14
	ldr	x0, [x1]
	ldr	x0, [x1, #SLOT_SIZE]		// offset from a constant
	ldr	x0, [x1, SLOT_SIZE * 2]		// offset without #
	ldr	w0, [x1, #-4]			// unscaled: ldur
	ldr	x0, [x1, x2, lsl #3]
	ldr	x0, [x1, w2, sxtw]
	ldrb	w0, [x1, #1]
	ldrh	w0, [x1, #2]
	ldrsb	x0, [x1]
	str	x0, [x1, #8]!			// pre-index
	str	x0, [x1], #8			// post-index
	strb	wzr, [x1]
	strh	w2, [x1, #4]
	ldp	x0, x1, [x2, #16]
	stp	w0, w1, [x2, #-8]
	ldxr	x0, [x1]
	stxr	w2, x0, [x1]
	ldaxr	w3, [x4]
	stlxr	w5, w3, [x4]
	ldar	x6, [x7]
	stlr	x6, [x7]
	mrs	x0, ctr_el0
	mrs	x1, tpidr_el1
	msr	vbar_el1, x2
	msr	daifset, #2
	msr	daifclr, #0xf
	mrs	x3, mpidr_el1
	dc	cvau, x0
	dc	civac, x1
	ic	ivau, x0
	ic	iallu
	ic	ialluis
	dsb	ish
	dsb	ishst
	dmb	ish
	dmb	sy
	isb
	sys	#0, c7, c5, #1, x0
	wfe
	wfi
	sev
	yield
	brk	#0x100
	svc	#0
	hvc	#1
	eret
	br	x0
	blr	x1
	ret
	ret	x2

// numeric local labels, forward and backward, and a hex constant that looks like one
	.global	loop_fn
loop_fn:
1:	subs	x0, x0, #1
	b.ne	1b
	cbz	x1, 1f
	cbnz	x2, 2f
	mov	x3, #0x1f			// hex, not a label reference
1:	tbz	x4, #3, 1f
	tbnz	w5, #31, 2f
1:	b	2f
2:	beq	1b
	b.hs	2b
	b.lt	loop_fn
	b	.
	.ltorg					// the pool above goes here

	.byte	1
	.align	3				// zeros then NOPs, as GNU pads code
main_word:
	.word	0x11223344			// a data word in .text
	.p2align 4
	.byte	2
	.balign	8, 0xaa				// explicit fill byte
	.hword	3
	.align	2
	.size	main_entry, . - main_entry

	.rept	3				// .rept with a .set counter
	.word	NSLOTS
	.set	NSLOTS, NSLOTS + 1
	.endr
	.rept	2
	.rept	2				// nested .rept
	nop
	.endr
	.endr
	words	1, 2, 3, 4			// vararg
	mov	x0, #LATER
	.equ	LATER, 0x40

	.data
	.align	3
	.global	main_data
main_data:
	.quad	lib_func			// another file's function
	.quad	lib_table + 8			// another file's data, with an addend
	.xword	main_entry
	.8byte	-1
	.word	lib_func - .			// PC-relative, across sections and files
	.long	data_word - main_data		// same-section difference
	.4byte	ALL_SLOTS
	.hword	0xbeef, -2
	.short	1
	.2byte	2
	.byte	1, 2, 255, -128, 'x
	.ascii	"ab\n\t\\\"\101\x42"
	.asciz	"nul", "two"
	.string	"str"
	.align	2
data_word:
	.word	0x12345678
	slot	s0, size=8
	slot	s1, 9, 12
	slot	name=s2, value=3, size=4
	.skip	3
	.space	5, 0x5a
	.zero	2
	.balign	4
	.word	0x5fb8
	.p2align 3
	.quad	. - main_data			// "." in data
	.equ	HERE, .				// "." captured by .equ
	.word	HERE - main_data

	.macro	num_inner			// \@ numbering of nested expansions
	.word	\@
	.endm
	.macro	num_outer
	.word	\@
	num_inner
	.word	\@
	.endm
	num_outer
	num_inner

	.bss
	.align	4
	.global	main_bss
main_bss:
	.space	64
	.align	3
bss_tail:
	.zero	8
