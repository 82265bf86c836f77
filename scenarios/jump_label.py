"""Static keys flipped while other CPUs run through their sites.

CPU0 calls ``static_key_enable(&jl_key)`` (three sites, NOP -> B) and then sets
``jl_key_flipped``; the other CPUs loop over the three sites, logging the flag they
read (load-acquire) and the path each site took.

* ``jump_label_nosync``: arm64 v5.0 .. v6.10: each site patched with
  ``aarch64_insn_patch_text_nosync`` and nothing else.  A worker that has seen
  ``static_key_enable()`` return can still run a site's old NOP, since nothing made it
  synchronise its instruction stream: static-key incoherence.
* ``missing_dc`` / ``missing_dc_idc1``: the kick, but a patcher that forgets
  ``DC CVAU``: incoherent with IDC=0, correct with IDC=1.
* ``jump_label_kick``: v6.11 (commit cfb00a357864): ``kick_all_cpus_sync()`` after the
  sites are patched.  Every worker takes the IPI (an exception entry: a context
  synchronization event) before the enable returns, so none can run an old site
  after seeing the flag.
"""

from __future__ import annotations

from testbed.machine import Finding, Machine
from testbed.memory import CacheType
from testbed.oracles import SiteLog, static_key_incoherence
from testbed.scenario import Scenario

SITES = (("jl_site_a", "jl_site_a_yes"), ("jl_site_b", "jl_site_b_yes"),
         ("jl_site_c", "jl_site_c_yes"))
IPI_CALL_FUNC = 1


class JumpLabelNosync(Scenario):
    name = "jump_label_nosync"
    description = "static key flipped with nosync patching, no IPI (arm64 v5.0-v6.10)"
    kernels = ("boot.S", "insn.S", "smp.S", "jump_label.S", "jl_workload.S",
               "broken_patch.S")
    ncpus = 3
    cache = CacheType.IDC0
    iterations = 12
    patch_mode = 0  # jump_label_patch_mode: bit 0 kick_all_cpus_sync, bit 1 no DC CVAU
    expect = "static-key-incoherence"

    def setup(self, m: Machine) -> None:
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        m.write(m.addr("jump_label_patch_mode"), self.patch_mode.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_CALL_FUNC,
                m.addr("ipi_call_function").to_bytes(8, "little"))
        m.start(0, "jl_patcher", m.addr("jl_key"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "jl_worker", self.iterations, self._log(m, cpu))

    def _log(self, m: Machine, cpu: int) -> int:
        return m.addr("jl_log") + 4 * 64 * (cpu - 1)

    def logs(self, m: Machine) -> list[SiteLog]:
        return [SiteLog(cpu, self._log(m, cpu), self.iterations, SITES)
                for cpu in range(1, m.ncpus)]

    def check(self, m: Machine) -> list[Finding]:
        return static_key_incoherence(m, self.logs(m))

    def observe(self, m: Machine) -> dict[str, object]:
        return {"key": m.read_u32("jl_key"), "flipped": m.read_u32("jl_key_flipped")}


class JumpLabelKick(JumpLabelNosync):
    name = "jump_label_kick"
    description = "as jump_label_nosync plus kick_all_cpus_sync() (v6.11, cfb00a357864)"
    patch_mode = 1
    expect = None


class MissingDc(JumpLabelNosync):
    """A patcher without DC CVAU, even with the kick: with IDC=0 the invalidated lines
    refill from a PoU that still holds the old instruction."""

    name = "missing_dc"
    description = "jump labels patched without DC CVAU (with kick), IDC=0: incoherent"
    patch_mode = 3
    expect = "static-key-incoherence"


class MissingDcIdc1(MissingDc):
    name = "missing_dc_idc1"
    description = "as missing_dc on a CPU with CTR_EL0.IDC=1: the clean is not needed"
    cache = CacheType.IDC1
    expect = None
