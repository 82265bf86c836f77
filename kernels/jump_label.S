// jump_label.S: static keys, after include/linux/jump_label.h, kernel/jump_label.c
// and arch/arm64/kernel/jump_label.c (v5.4; the v6.11 batch "apply" step as an option).
//
// struct static_key { int enabled; }  (the entries pointer is not needed: the whole
// table is scanned, as jump_label_update() does for core kernel text).
// struct jump_entry { u64 code; u64 target; u64 key; }  (absolute, not the relative
// s32 form of CONFIG_HAVE_ARCH_JUMP_LABEL_RELATIVE: simpler, same behaviour).
// The table lies between __start___jump_table and __stop___jump_table, which the
// scenario's workload file defines (no linker sections here).
//
// jump_label_patch_mode, a bit mask:
//   bit 0  kick_all_cpus_sync() after the sites are patched (v6.11, commit
//          cfb00a357864, arch_jump_label_transform_apply); clear: nosync only
//          (arm64 v5.0 .. v6.10)
//   bit 1  patch with the broken aarch64_insn_patch_text_nosync_nodc (broken_patch.S)
//   bit 2  patch with the 2019 BRK sketch, text_poke_brk_single (text_poke_brk.S)
//   bit 3  patch with the fixed BRK protocol, text_poke_brk_sync (text_poke_brk.S)
//   bit 4  patch with text_poke_pre_post: nosync between PRE and POST records (perf.S)
//   bit 5  patch with the function at jump_label_patch_fn, int fn(void *addr, u32 insn)
//          (bench/kernels/jl_cost.S: stop_machine per site, or queue for bit 6)
//   bit 6  instead of bit 0's kick, call the function at jump_label_apply_fn after the
//          entries are patched, void fn(void): arch_jump_label_transform_apply()
//   bit 7  patch with the 2019 BRK sketch with plain accesses, text_poke_brk_plain
//
// jump_label_nr_entries: if not 0, only the first that many entries of the table are
// updated (a scenario's knob: one site patched once).

	.equ JUMP_LABEL_NOP, 0
	.equ JUMP_LABEL_JMP, 1
	.equ JE_CODE, 0
	.equ JE_TARGET, 8
	.equ JE_KEY, 16
	.equ JE_SIZE, 24

	.text

// u32 aarch64_insn_gen_branch_imm(u64 pc, u64 addr): B addr at pc (NOLINK).
	.global aarch64_insn_gen_branch_imm
aarch64_insn_gen_branch_imm:
	sub	x2, x1, x0
	ubfx	x2, x2, #2, #26
	movz	w0, #0x1400, lsl #16
	orr	w0, w0, w2
	ret

// void arch_jump_label_transform(struct jump_entry *entry, int type)
	.global arch_jump_label_transform
arch_jump_label_transform:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	ldr	x19, [x0, #JE_CODE]
	cmp	w1, #JUMP_LABEL_JMP
	b.ne	1f
	ldr	x1, [x0, #JE_TARGET]
	mov	x0, x19
	bl	aarch64_insn_gen_branch_imm
	mov	w1, w0
	b	2f
1:	movz	w1, #0x201f			// aarch64_insn_gen_nop(): 0xd503201f
	movk	w1, #0xd503, lsl #16
2:	mov	x0, x19
	ldr	x9, =jump_label_patch_mode
	ldr	w9, [x9]
	tbnz	w9, #1, 3f
	tbnz	w9, #2, 5f
	tbnz	w9, #3, 6f
	tbnz	w9, #4, 7f
	tbnz	w9, #5, 8f
	tbnz	w9, #7, 9f
	bl	aarch64_insn_patch_text_nosync
	b	4f
9:	bl	text_poke_brk_plain
	b	4f
3:	bl	aarch64_insn_patch_text_nosync_nodc
	b	4f
5:	bl	text_poke_brk_single
	b	4f
6:	bl	text_poke_brk_sync
	b	4f
7:	bl	text_poke_pre_post
	b	4f
8:	ldr	x9, =jump_label_patch_fn
	ldr	x9, [x9]
	blr	x9
4:	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void jump_label_update(struct static_key *key, int type): every entry of the key
// (the first jump_label_nr_entries of the table, if that is not 0).
	.global jump_label_update
jump_label_update:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	mov	x19, x0
	mov	w21, w1
	ldr	x20, =__start___jump_table
	ldr	x22, =__stop___jump_table
	ldr	x9, =jump_label_nr_entries
	ldr	w9, [x9]
	cbz	w9, 1f
	mov	x10, #JE_SIZE
	madd	x9, x9, x10, x20
	cmp	x9, x22
	csel	x22, x9, x22, lo
1:	cmp	x20, x22
	b.hs	3f
	ldr	x10, [x20, #JE_KEY]
	cmp	x10, x19
	b.ne	2f
	mov	x0, x20
	mov	w1, w21
	bl	arch_jump_label_transform
2:	add	x20, x20, #JE_SIZE
	b	1b
3:	ldr	x9, =jump_label_patch_mode
	ldr	w9, [x9]
	tbnz	w9, #6, 5f
	tbz	w9, #0, 4f
	bl	kick_all_cpus_sync		// arch_jump_label_transform_apply() (v6.11)
	b	4f
5:	ldr	x9, =jump_label_apply_fn
	ldr	x9, [x9]
	blr	x9
4:	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// void static_key_enable(struct static_key *key): static_key_enable_cpuslocked().
	.global static_key_enable
static_key_enable:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	ldr	w9, [x19]
	cbnz	w9, 1f				// already enabled
	mov	w9, #-1				// atomic_set(&key->enabled, -1): in progress
	str	w9, [x19]
	mov	x0, x19
	mov	w1, #JUMP_LABEL_JMP
	bl	jump_label_update
	mov	w9, #1
	stlr	w9, [x19]			// atomic_set_release(&key->enabled, 1)
1:	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void static_key_disable(struct static_key *key)
	.global static_key_disable
static_key_disable:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x19, [sp, #16]
	mov	x19, x0
	ldr	w9, [x19]
	cbz	w9, 1f				// already disabled
	mov	x0, x19
	mov	w1, #JUMP_LABEL_NOP
	bl	jump_label_update
	stlr	wzr, [x19]
1:	ldr	x19, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

	.data
	.align	3
	.global jump_label_nr_entries
jump_label_nr_entries:
	.word	0
	.global jump_label_patch_mode
jump_label_patch_mode:
	.word	0
	.align	3
	.global jump_label_patch_fn
jump_label_patch_fn:
	.quad	0
	.global jump_label_apply_fn
jump_label_apply_fn:
	.quad	0
