"""BPF trampolines on arm64 (v6.1+): a plt whose 64-bit target is rewritten as data, the
old trampoline's lifetime, and the new one's initialisation.

A JITed BPF prog starts with ``MOV X9, LR`` and a patchsite, and ends with a plt
(``LDR X10, target; BR X10``, ``kernels/bpf_trampoline.S``).  A trampoline out of BL
range is attached as ``BL plt`` with the plt target pointing at it.  CPU0 switches the
prog from trampoline A to trampoline B (``bpf_trampoline_update()``): it prepares B's
image (``arch_prepare_bpf_trampoline()``, flushed by ``flush_icache_range()``, which
IPIs every CPU), then ``modify_fentry()`` -> ``bpf_arch_text_poke()``: both are long
jumps, so only the target is rewritten (a plain 64-bit store, ``WRITE_ONCE``), the
``BL`` stays; then ``bpf_tramp_image_put(A)`` frees A's image.  The other CPUs run the
prog in a loop, with a voluntary context switch after each run.  A CPU that loaded the
target before it changed still runs A afterwards; each trampoline reads its ``struct
bpf_tramp_image``, so one that runs A after the free reads kfree()'s poison: a
``use-after-free`` finding (``Machine.watch_object``).

* ``bpf_tramp_switch``: as the kernel does it (``kernel/bpf/trampoline.c``, v6.6): a
  Tasks RCU grace period (``kernels/rcu.S``) before the free.  Clean under both data
  models.
* ``bpf_tramp_free_early``: the image freed as soon as the target is rewritten (no
  kernel did this for fentry trampolines; ``e21aa341785c``, v5.12, fixed images freed
  under fexit progs that sleep, which the grace period does not wait for): use after
  free under both models.
* ``bpf_tramp_no_kick``: ``flush_icache_range()`` without ``kick_all_cpus_sync()``, as
  it was before v5.0 (commit 3b8c9f1cdfc5, "arm64: IPI each CPU after invalidating the
  I-cache for kernel mappings"; arm64 BPF trampolines came later, in v6.1).  A CPU reads
  the new target and then B's image from before it was prepared (its prog still NULL):
  nothing orders a load after ``BR X10`` after the load that gave X10.  A guest fault
  (the NULL prog's dereference) under ``arm``; ``sc`` cannot show it.

The machine is IDC=DIC=1 (``CacheType.DIC1``, as e.g. Neoverse N1): the races here are
on the data side, and the I-caches' evictions and write-backs would only multiply the
schedules.  Attaching the first trampoline (target, then ``NOP`` -> ``BL plt``) is
``call_ops``'s protocol (``set_memory_ro()``'s ``DSB ISH`` orders the target before the
``BL`` as ``patch_unmap()``'s orders the ftrace literal), and a stale target there is
``dummy_tramp``, harmless by construction: no scenario for it.
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import OracleName
from testbed.machine import Machine
from testbed.memory import CacheType
from testbed.scenario import Scenario

IPI_CALL_FUNC = 1  # kernels/smp.S


class BpfTrampSwitch(Scenario):
    name = "bpf_tramp_switch"
    description = "BPF prog's plt target A -> B, Tasks RCU grace period, free A: correct"
    kernels = ("boot.S", "insn.S", "smp.S", "rcu.S", "slab.S", "cacheflush.S",
               "bpf_trampoline.S")
    ncpus = 2
    cache = CacheType.DIC1  # IDC=DIC=1: see the module's docstring
    calls = 4
    skip_sync = 0  # bpf_tramp_skip_sync: bpf_tramp_image_put() without the grace period
    skip_kick = 0  # flush_icache_skip_kick: flush_icache_range() without the IPIs
    expect: ClassVar[str | tuple[str, ...] | None] = None
    search_scope: ClassVar[dict[str, int]] = {"calls": 1}
    # `testbed ablate` may drop the flush's IPIs and the grace period (the twins' races)
    ablatable = ("kick_all_cpus_sync", "synchronize_rcu_tasks")

    def setup(self, m: Machine) -> None:
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        for knob, value in (("bpf_tramp_skip_sync", self.skip_sync),
                            ("flush_icache_skip_kick", self.skip_kick)):
            m.write(m.addr(knob), value.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_CALL_FUNC,
                m.addr("ipi_call_function").to_bytes(8, "little"))
        m.start(0, "bpf_trampoline_update", m.addr("bpf_prog"), m.addr("bpf_tramp_im_a"),
                m.addr("bpf_tramp_im_b"), m.addr("bpf_fentry_prog_b"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "bpf_prog_run_loop", self.calls, cpu)
        m.may_patch("bpf_plt_target", 8)
        m.watch_object("bpf_tramp_im_a", 16)

    def observe(self, m: Machine) -> dict[str, object]:
        return {"result": m.read_u32("bpf_tramp_result"),
                "a_runs": m.read_u32("bpf_fentry_a_runs"),
                "b_runs": m.read_u32("bpf_fentry_b_runs")}


class BpfTrampFreeEarly(BpfTrampSwitch):
    name = "bpf_tramp_free_early"
    description = "bpf_tramp_switch, the old image freed without a grace period: UAF"
    skip_sync = 1
    expect = OracleName.USE_AFTER_FREE
    # A CPU must stay between its load of the plt target and its load of A's image while
    # CPU0 rewrites the target and frees A: one priority change (PCT, d=2)
    strategy: ClassVar[dict[str, object]] = {"name": "pct", "depth": 2}


class BpfTrampNoKick(BpfTrampSwitch):
    name = "bpf_tramp_no_kick"
    description = "bpf_tramp_switch, new image flushed without the IPIs: NULL prog (arm)"
    skip_kick = 1
    expect = OracleName.GUEST_FAULT
    # CPU0 must prepare B and rewrite the target before the reader's first run, and the
    # reader's load of B's image must then read the value from before the prepare (a
    # model choice): PCT, d=2, puts the reader behind CPU0 half the time
    strategy: ClassVar[dict[str, object]] = {"name": "pct", "depth": 2}
