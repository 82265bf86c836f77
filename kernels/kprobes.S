// kprobes.S: arm64 kprobes with out-of-line (XOL) stepping through a BRK, as
// arch/arm64/kernel/probes/kprobes.c does it since the XOL slot is written with the
// nosync patcher (Liao Chang, "arm64: kprobes: Avoid stop_machine when preparing the
// XOL slot", LKML 2022; v6.6):
//
//	static void arch_prepare_ss_slot(struct kprobe *p)
//	{
//		kprobe_opcode_t *addr = p->ainsn.api.insn;
//		/*
//		 * Prepare insn slot, Mark Rutland points out it depends on a coupe of
//		 * subtleties:
//		 * - That the I-cache maintenance for these instructions is complete
//		 *   *before* the kprobe BRK is written (and aarch64_insn_patch_text_nosync()
//		 *   ensures this, but just omits causing a Context-Synchronization-Event
//		 *   on all CPUS).
//		 * - That the kprobe BRK results in an exception (and consequently a
//		 *   Context-Synchronoization-Event), which ensures that the CPU will
//		 *   fetch thesingle-step slot instructions *after* this, ensuring that
//		 *   the new instructions are used
//		 */
//		aarch64_insn_patch_text_nosync(addr, p->opcode);
//		aarch64_insn_patch_text_nosync(addr + 1, BRK64_OPCODE_KPROBES_SS);
//		p->ainsn.api.restore = (unsigned long) p->addr + sizeof(kprobe_opcode_t);
//	}
//
// Arming and disarming write the BRK with aarch64_insn_patch_text() (stop_machine:
// every other CPU ends its callback with an ISB).  kprobe_arm_nosync = 1 (a scenario's
// knob, not the kernel's) arms and disarms with aarch64_insn_patch_text_nosync
// instead, as jump labels patch: a BRK is one of the instructions CMODX lets change
// under a running CPU, and the 2019 discussion asked whether stop_machine is needed.
// Then nothing but the BRK exception itself synchronizes a CPU that hits a BRK it
// fetched before the last update, and FEAT_ExS decides whether it does
// (Machine.set_exception_sync).
//
// struct kprobe (the fields used here): addr, opcode, xol slot, xol restore, nhit.

	.equ	KP_ADDR, 0
	.equ	KP_OPCODE, 8
	.equ	KP_SLOT, 16
	.equ	KP_RESTORE, 24
	.equ	KP_NHIT, 32
	.equ	S_PC, 256			// struct pt_regs: pc
	.equ	KPROBES_BRK_IMM, 0x004		// arch/arm64/include/asm/brk-imm.h
	.equ	KPROBES_BRK_SS_IMM, 0x006
	.equ	PERCPU_CURRENT_KPROBE, 0x800	// this CPU's current_kprobe, in its area

	.text

// int kprobe_breakpoint_handler(struct pt_regs *regs, unsigned long esr):
// kprobe_handler(): the kprobe at regs->pc, if one is registered, runs its pre
// handler (here: counts the hit) and single-steps the instruction out of line
// (setup_singlestep: pc = the XOL slot); if none is (it was removed right after this
// CPU hit its BRK), return to the address: "Return back to original instruction".
	.global kprobe_breakpoint_handler
kprobe_breakpoint_handler:
	ldr	x9, [x0, #S_PC]			// addr = instruction_pointer(regs)
	ldr	x10, =kprobe_table
	ldr	x10, [x10]			// get_kprobe(addr): rcu_dereference
	cbz	x10, 1f
	ldr	x11, [x10, #KP_ADDR]
	cmp	x11, x9
	b.ne	1f
	ldr	x11, [x10, #KP_NHIT]		// the pre handler
	add	x11, x11, #1
	str	x11, [x10, #KP_NHIT]
	mrs	x12, tpidr_el1
	str	x10, [x12, #PERCPU_CURRENT_KPROBE]	// set_current_kprobe(p)
	ldr	x11, [x10, #KP_SLOT]
	str	x11, [x0, #S_PC]		// instruction_pointer_set(regs, slot)
1:	mov	x0, #0				// DBG_HOOK_HANDLED
	ret

// int kprobe_breakpoint_ss_handler(struct pt_regs *regs, unsigned long esr): the BRK
// after the stepped instruction: back to the probed address + 4 (post_kprobe_handler)
	.global kprobe_breakpoint_ss_handler
kprobe_breakpoint_ss_handler:
	mrs	x12, tpidr_el1
	ldr	x10, [x12, #PERCPU_CURRENT_KPROBE]
	cbz	x10, 1f
	ldr	x9, [x0, #S_PC]
	ldr	x11, [x10, #KP_SLOT]
	add	x11, x11, #4
	cmp	x9, x11				// kprobe_ss_hit(): ours?
	b.ne	1f
	ldr	x11, [x10, #KP_RESTORE]
	str	x11, [x0, #S_PC]
	str	xzr, [x12, #PERCPU_CURRENT_KPROBE]	// reset_current_kprobe()
	mov	x0, #0
	ret
1:	mov	x0, #1				// DBG_HOOK_ERROR: not ours
	ret

// void kprobe_patch(void *addr, u32 insn): arch_arm_kprobe()/arch_disarm_kprobe()'s
// patch_text(): aarch64_insn_patch_text(&addr, &insn, 1), or nosync (the knob)
kprobe_patch:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	ldr	x9, =kprobe_arm_nosync
	ldr	w9, [x9]
	cbz	w9, 1f
	bl	aarch64_insn_patch_text_nosync
	b	2f
1:	ldr	x9, =kprobe_patch_addr		// addrs[0] (shared: the stop_machine
	str	x0, [x9]			// master may be any CPU; the kernel's are
	ldr	x10, =kprobe_patch_insn		// on the caller's stack, which every CPU
	str	w1, [x10]			// can read, and this machine's stacks are
	mov	x0, x9				// private)
	mov	x1, x10
	mov	w2, #1
	bl	aarch64_insn_patch_text
2:	ldp	x29, x30, [sp], #32
	ret

// void kprobe_reregister(struct kprobe *old, struct kprobe *new): unregister_kprobe(old)
// then register_kprobe(new) at the same address, new taking another XOL slot:
// __unregister_kprobe_top (disarm, hlist_del_rcu), synchronize_rcu(),
// __unregister_kprobe_bottom (the slot freed); then arch_prepare_kprobe (opcode,
// get_insn_slot, arch_prepare_ss_slot), hlist_add_head_rcu, arm_kprobe.
	.global kprobe_reregister
kprobe_reregister:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	mov	x19, x0
	mov	x20, x1
	ldr	x0, [x19, #KP_ADDR]		// arch_disarm_kprobe(old)
	ldr	w1, [x19, #KP_OPCODE]
	bl	kprobe_patch
	ldr	x9, =kprobe_table
	str	xzr, [x9]			// hlist_del_rcu()
	bl	synchronize_rcu_tasks		// synchronize_rcu()
	ldr	x9, [x19, #KP_ADDR]		// arch_prepare_kprobe(new):
	ldr	w10, [x9]			// p->opcode = *p->addr (disarmed: the original)
	str	w10, [x20, #KP_OPCODE]
	ldr	x0, [x20, #KP_SLOT]		// arch_prepare_ss_slot(): the slot
	mov	w1, w10
	bl	aarch64_insn_patch_text_nosync
	ldr	x0, [x20, #KP_SLOT]
	add	x0, x0, #4
	ldr	w1, =(0xd4200000 | (KPROBES_BRK_SS_IMM << 5))	// BRK64_OPCODE_KPROBES_SS
	bl	aarch64_insn_patch_text_nosync
	ldr	x9, =kprobe_table
	stlr	x20, [x9]			// hlist_add_head_rcu(): rcu_assign_pointer
	ldr	x0, [x20, #KP_ADDR]		// arch_arm_kprobe(new)
	ldr	w1, =(0xd4200000 | (KPROBES_BRK_IMM << 5))	// BRK64_OPCODE_KPROBES
	bl	kprobe_patch
	ldr	x9, =kprobe_done
	mov	w10, #1
	stlr	w10, [x9]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret

// void kprobe_caller(u64 calls, int cpu): calls kprobe_target(i) for i = 1..calls, with
// a voluntary context switch before each; a result other than i + 1 is counted in
// kprobe_wrong (the probed instruction did not do what it does)
	.global kprobe_caller
kprobe_caller:
	stp	x29, x30, [sp, #-48]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	str	x21, [sp, #32]
	mov	x19, x0
	mov	w20, w1
	msr	daifclr, #2			// IRQs on: it joins stop_machine
	mov	x21, #1
1:	mov	w0, w20
	bl	task_voluntary_switch
	mov	x0, x21
	bl	kprobe_target
	add	x9, x21, #1
	cmp	x0, x9
	b.eq	2f
	ldr	x9, =kprobe_wrong		// the result and how many, for the check
	ldr	x10, [x9, #8]
	add	x10, x10, #1
	stp	x0, x10, [x9]
2:	add	x21, x21, #1
	cmp	x21, x19
	b.ls	1b
	mov	w0, w20
	bl	task_exit_rcu_tasks
	ldr	x9, =kprobe_done		// online until the updater is done
3:	ldar	w10, [x9]
	cbnz	w10, 4f
	yield
	b	3b
4:	msr	daifset, #2
	ldr	x21, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #48
	ret

// u64 kprobe_target(u64 x): returns x + 1.  Its first instruction is a NOP (a
// patchable function entry), probed by `old`: registered and armed before the run, so
// kprobe_site holds the KPROBES BRK and kprobe_old the NOP.  BRK and NOP are both
// instructions CMODX lets change under a running CPU, so the nosync patcher may arm
// and disarm this probe; for most instructions (an ADD, say) it may not, which is one
// reason Linux arms kprobes through stop_machine.
	.global kprobe_target
kprobe_target:
	.global kprobe_site
kprobe_site:
	brk	#KPROBES_BRK_IMM		// NOP, probed
	add	x0, x0, #1
	ret

// Two XOL slots (get_insn_slot(): a page of ROX slots, two instructions each).
// slot 0 is `old`'s, prepared; slot 1 was an earlier kprobe's (on an instruction that
// set X0 to -1, so that kprobe_target returns 0) and was freed: it is what `new` gets.
	.balign	8
	.global kprobe_slot0
kprobe_slot0:
	nop
	brk	#KPROBES_BRK_SS_IMM
	.global kprobe_slot1
kprobe_slot1:
	mov	x0, #-1
	brk	#KPROBES_BRK_SS_IMM

	.data
	.balign	8
	.global kprobe_old
kprobe_old:				// struct kprobe: addr, opcode, slot, restore, nhit
	.quad	kprobe_site, 0xd503201f, kprobe_slot0, kprobe_site + 4, 0
	.global kprobe_new
kprobe_new:
	.quad	kprobe_site, 0, kprobe_slot1, kprobe_site + 4, 0
	.global kprobe_table
kprobe_table:				// the kprobe registered at kprobe_site (or 0)
	.quad	kprobe_old
	.global kprobe_wrong
kprobe_wrong:				// a result of kprobe_target that was not x + 1,
	.quad	0, 0			// and how many there were
kprobe_patch_addr:
	.quad	0
kprobe_patch_insn:
	.word	0
	.global kprobe_done
kprobe_done:				// set by kprobe_reregister() when it returns
	.word	0
	.global kprobe_arm_nosync
kprobe_arm_nosync:			// 1: arm and disarm with the nosync patcher
	.word	0
