"""Patching a non-CMODX pair correctly: aarch64_insn_patch_text() under stop_machine.

CPU0 turns ``ADD W5,W5,#1`` at ``sm_site`` into ``SUB W5,W5,#1`` with the v5.4
``aarch64_insn_patch_text()``: every CPU enters stop_machine (the others from their
IPI handler, IRQs off), all rendezvous, the first one in patches and the others spin
on ``cpu_count`` and then execute ISB.  No other CPU can be running the site while it
changes, and each resynchronises before running it again: no CMODX finding, whatever
the schedule.  The cost is that every CPU stalls for the whole patch.
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.machine import Machine
from testbed.memory import CacheType
from testbed.scenario import Scenario

IPI_STOP = 2


class StopMachinePatch(Scenario):
    name = "stop_machine_patch"
    description = "ADD -> SUB via aarch64_insn_patch_text (stop_machine): correct"
    kernels = ("boot.S", "insn.S", "smp.S", "nosync_race.S", "stop_machine.S", "perf.S")
    ncpus = 3
    cache = CacheType.IDC0
    passes = 16
    expect = None
    search_scope: ClassVar[dict[str, int]] = {"passes": 2, "ncpus": 2}
    trace_decode = True  # one text-poke record, written before stop_machine starts

    def setup(self, m: Machine) -> None:
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_STOP,
                m.addr("ipi_stop_machine").to_bytes(8, "little"))
        m.start(0, "sm_patcher", m.addr("sm_addrs"), m.addr("sm_insns"), 1)
        for cpu in range(1, m.ncpus):
            m.start(cpu, "sm_worker", self.passes)
        m.may_patch("sm_site")
        m.write(m.addr("caches_skip_final_dsb"), self.skip_final_dsb.to_bytes(4, "little"))

    skip_final_dsb = 0  # caches_skip_final_dsb: the variant without the flush's last DSB

    def check(self, m: Machine) -> list[Finding]:
        """A CPU that ran the old instruction after its own stop_machine callback's ISB
        (which follows the master's patch and flush): the patch was not complete."""
        site, isb = m.addr("sm_site"), m.addr("aarch64_insn_patch_text_cb_isb")
        old = int.from_bytes(m.image.text[site - m.image.text_base:][:4], "little")
        new = m.read_u32(site)
        for cpu, entries in enumerate(m.ground_truth()):
            synced = [step for step, addr, _ in entries if addr == isb]
            stale = [step for step, addr, word in entries
                     if addr == site and word == old and synced and step > synced[0]]
            if stale:
                return [Finding(OracleName.STALE_AFTER_FLUSH,
                                f"CPU{cpu} ran the old instruction at sm_site at step "
                                f"{stale[0]}, after its stop_machine callback's ISB at "
                                f"step {synced[0]}: the patch was not complete", cpu=cpu,
                                addr=site, words=(old, new), step=stale[0])]
        return []

    def observe(self, m: Machine) -> dict[str, object]:
        return {"patched": m.read_u32("sm_site"), "result": m.read_u32("patch_result")}


class StopMachineNoDsb(StopMachinePatch):
    """The same with a flush that leaves out the DSB after ``IC IVAU``
    (``caches_clean_inval_pou`` ends ``ic ivau; dsb ish; isb``): the master's notify is a
    relaxed ``atomic_inc``, so nothing else completes the invalidation before the other
    CPUs see the count and execute their ISB.  Under ``arm`` cache maintenance completes
    only at a DSB (fetch rule 9), and a CPU may run the old instruction after its ISB;
    under ``sc`` maintenance completes at once and nothing is found."""

    name = "stop_machine_nodsb"
    description = "stop_machine_patch without the DSB after IC IVAU: stale (arm only)"
    skip_final_dsb = 1
    # The decoder, too, assumes the new instruction from the record on.
    expect = (OracleName.STALE_AFTER_FLUSH, OracleName.TRACE_DECODE)
