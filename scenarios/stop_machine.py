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

    def observe(self, m: Machine) -> dict[str, object]:
        return {"patched": m.read_u32("sm_site"), "result": m.read_u32("patch_result")}
