// nosync_race.S: the first end-to-end race.  CPU0 patches the NOP at
// `patch_site` into `B site_new` with aarch64_insn_patch_text_nosync, then
// publishes `patch_done`; CPU1 runs through the site in a loop and logs, for each
// pass, the flag it read and the path it took (1: old NOP path, 2: new branch).

	.text

// void patcher_main(void *site, u32 insn)
	.global patcher_main
patcher_main:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	aarch64_insn_patch_text_nosync
	ldr	x2, =patch_result
	str	w0, [x2]
	ldr	x2, =patch_done
	mov	w3, #1
	stlr	w3, [x2]			// smp_store_release(&patch_done, 1)
	ldp	x29, x30, [sp], #16
	ret

// void site_loop(u64 passes, u64 isb_after_flag): log entry = flag << 8 | path
	.global site_loop
site_loop:
	ldr	x6, =site_log
	ldr	x7, =patch_done
	mov	x8, #0
1:	ldar	w9, [x7]			// smp_load_acquire(&patch_done)
	cbz	x1, 3f
	cbz	w9, 3f
	isb					// context synchronization after seeing the flag
3:
	.global patch_site
patch_site:
	nop					// patched into B site_new
	mov	w5, #1
	b	4f
	.global site_new
site_new:
	mov	w5, #2
4:	orr	w5, w5, w9, lsl #8
	str	w5, [x6, x8, lsl #2]
	add	x8, x8, #1
	cmp	x8, x0
	b.lo	1b
	ret

	.data
	.align	3
	.global patch_done
patch_done:
	.word	0
	.global patch_result
patch_result:
	.word	0
	.global site_log
site_log:
	.space	4 * 64
