"""kprobes on arm64: a probe re-registered while another CPU calls the probed function.

CPU0 replaces the kprobe on ``kprobe_target``'s first instruction (a ``NOP``, a
patchable function entry) with a new one: it disarms the old (the BRK back to the NOP),
unregisters it, waits for a grace period, prepares the new one's XOL slot (a slot an
earlier kprobe used, on an instruction that set X0 to -1) with two
``aarch64_insn_patch_text_nosync`` calls, registers it and arms it (the NOP back to the
BRK).  CPU1 calls ``kprobe_target(i)`` in a loop and checks that it returns ``i + 1``: a
probed instruction stepped out of line must do what it does in place.

The kernel's argument for writing the slot without stop_machine (``kernels/kprobes.S``)
is that the slot's maintenance completes before the BRK is written, and that the BRK
exception is a context synchronization event.  FEAT_ExS makes the second part a setting
(``SCTLR_EL1.EIS``/``EOS``, ``Machine.set_exception_sync``; Linux sets both).

* ``kprobe_xol``: as Linux does it: arming and disarming through stop_machine, whose
  callback ends with an ``ISB`` on every CPU.  Clean, and still clean with ``EIS`` and
  ``EOS`` cleared (``exs = 0``): the rendezvous resynchronizes every CPU after the slot
  was written, and a CPU that fetches the new BRK fetches the slot after it in program
  order (``MP.FF+cachesync+fpo`` is forbidden).
* ``kprobe_xol_nosync``: arming and disarming with the nosync patcher (BRK and NOP may
  both change under a running CPU: CMODX; an ADD may not, which the machine reports).  A
  CPU may then still hit the old probe's BRK after it was disarmed, find the new probe
  and step its slot: only the exception resynchronizes it.  Clean with the exceptions
  synchronizing, as Linux runs.
* ``kprobe_xol_nosync_noexs``: the same with ``EIS`` and ``EOS`` cleared on CPU1: it
  steps the slot's old instruction (``MOV X0, #-1``) while CPU0's write of the new one
  is one it has not synchronized with: a ``cmodx-violation`` (``MOV`` -> ``NOP`` is not
  a pair CMODX allows), and, with that oracle off, ``kprobe_target`` returns 0
  (``kprobe-xol``).
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.machine import Machine
from testbed.scenario import Scenario

KPROBES_BRK_IMM, KPROBES_BRK_SS_IMM = 0x004, 0x006  # arch/arm64/include/asm/brk-imm.h
IPI_STOP = 2


class KprobeXol(Scenario):
    name = "kprobe_xol"
    description = "kprobe re-registered, XOL slot by nosync, armed by stop_machine: correct"
    kernels = ("boot.S", "insn.S", "smp.S", "nosync_race.S", "stop_machine.S", "perf.S",
               "rcu.S", "kprobes.S")
    ncpus = 2
    calls = 3
    nosync = 0  # kprobe_arm_nosync: arm and disarm with the nosync patcher
    exs = 1  # 0: SCTLR_EL1.EIS and EOS cleared on the calling CPUs (FEAT_ExS)
    expect = None
    search_scope: ClassVar[dict[str, int]] = {"calls": 1}

    def setup(self, m: Machine) -> None:
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        m.write(m.addr("kprobe_arm_nosync"), self.nosync.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_STOP,
                m.addr("ipi_stop_machine").to_bytes(8, "little"))
        hooks = b"".join(m.addr(fn).to_bytes(8, "little") + imm.to_bytes(8, "little")
                         + bytes(8) for fn, imm in (
                             ("kprobe_breakpoint_handler", KPROBES_BRK_IMM),
                             ("kprobe_breakpoint_ss_handler", KPROBES_BRK_SS_IMM)))
        m.write(m.addr("break_hooks"), hooks)
        m.start(0, "kprobe_reregister", m.addr("kprobe_old"), m.addr("kprobe_new"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "kprobe_caller", self.calls, cpu)
            if not self.exs:
                m.set_exception_sync(cpu, entry=False, exit=False)
        m.may_patch("kprobe_site")
        m.may_patch("kprobe_slot1", 8)

    def observe(self, m: Machine) -> dict[str, object]:
        return {"old_hits": m.read_u64(m.addr("kprobe_old") + 32),
                "new_hits": m.read_u64(m.addr("kprobe_new") + 32),
                "wrong": m.read_u64(m.addr("kprobe_wrong") + 8)}

    def check(self, m: Machine) -> list[Finding]:
        """A call of ``kprobe_target(i)`` returned something other than ``i + 1``."""
        if not m.read_u64(m.addr("kprobe_wrong") + 8):
            return []
        wrong = m.read_u64("kprobe_wrong")
        slot = m.addr("kprobe_slot1")
        steps = [step for step, addr, _ in m.ground_truth()[1] if addr == slot]
        return [Finding(
            OracleName.KPROBE_XOL,
            f"kprobe_target returned {wrong:#x} on CPU1: the instruction it stepped out of "
            f"line at {m.image.symbolize(slot)} was the slot's old one, not the probed "
            "NOP (no context synchronization since the slot was written)", cpu=1,
            addr=slot, step=steps[-1] if steps else -1)]


class KprobeXolNosync(KprobeXol):
    name = "kprobe_xol_nosync"
    description = "kprobe_xol armed with the nosync patcher: correct (the BRK synchronizes)"
    nosync = 1


class KprobeXolNosyncNoExs(KprobeXolNosync):
    name = "kprobe_xol_nosync_noexs"
    description = "kprobe_xol_nosync, exceptions not context synchronizing: stale XOL slot"
    exs = 0
    expect = (OracleName.CMODX_VIOLATION, OracleName.KPROBE_XOL)
