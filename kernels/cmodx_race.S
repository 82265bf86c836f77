// cmodx_race.S: patching that the architecture does not allow to race with execution.
//
// * add_site_loop runs through `add_site` (ADD W5,W5,#1) that a patcher turns into
//   SUB with aarch64_insn_patch_text_nosync: neither instruction is in the CMODX set,
//   so a CPU running the site while it changes may execute anything.
// * aarch64_insn_patch_text_halves is a broken patcher that writes the instruction as
//   two 16-bit stores (a memcpy-style writer): between them the word is neither the
//   old nor the new instruction.

	.text

// void add_site_loop(u64 passes): reads patch_done each pass (a visible load), runs
// the site, and stores the final counter in add_site_result.
	.global add_site_loop
add_site_loop:
	mov	w5, #0
	mov	x8, #0
	ldr	x7, =patch_done
1:	ldar	w9, [x7]
	.global add_site
add_site:
	add	w5, w5, #1			// patched into SUB W5, W5, #1
	add	x8, x8, #1
	cmp	x8, x0
	b.lo	1b
	ldr	x9, =add_site_result
	str	w5, [x9]
	ret

// void isb_site_loop(u64 passes): ISB, then `torn_site`, each pass.
	.global isb_site_loop
isb_site_loop:
	mov	x8, #0
	ldr	x7, =patch_done
1:	ldar	w9, [x7]
	isb
	.global torn_site
torn_site:
	nop					// patched into B torn_site_new
	mov	w5, #1
	b	2f
	.global torn_site_new
torn_site_new:
	mov	w5, #2
2:	add	x8, x8, #1
	cmp	x8, x0
	b.lo	1b
	ret

// int aarch64_insn_patch_text_halves(void *addr, u32 insn): low half, then high half,
// through the text alias, then the usual caches_clean_inval_pou.
	.global aarch64_insn_patch_text_halves
aarch64_insn_patch_text_halves:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	ldr	x2, =TEXT_ALIAS_OFFSET
	add	x2, x0, x2
	strh	w1, [x2]
	lsr	w1, w1, #16
	strh	w1, [x2, #2]
	mov	x0, x19
	add	x1, x19, #4
	bl	caches_clean_inval_pou
	mov	x0, #0
	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void halves_patcher(void *site, u32 insn)
	.global halves_patcher
halves_patcher:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	aarch64_insn_patch_text_halves
	ldr	x2, =patch_done
	mov	w3, #1
	stlr	w3, [x2]
	ldp	x29, x30, [sp], #16
	ret

	.data
	.align	3
	.global add_site_result
add_site_result:
	.word	0
