"""The first end-to-end race: a nosync patch and a CPU running through the site.

CPU0 patches the ``NOP`` at ``patch_site`` into ``B site_new`` with
``aarch64_insn_patch_text_nosync`` (one store through the text alias, then
``DC CVAU; DSB ISH; IC IVAU; DSB ISH; ISB`` on CPU0 only) and then sets
``patch_done``.  CPU1 runs through the site in a loop and logs, for each pass, the
flag it read and the path it took.

* ``nosync_stale``: CPU1 has no context synchronization between reading the flag and
  the site.  The architecture allows it to run the old ``NOP`` after CPU0's flush has
  completed (it "might have fetched the instructions at any time since its last
  context synchronization event"): the race behind v6.11's ``kick_all_cpus_sync()``
  after jump-label patching.  The check reports that outcome as a finding.
* ``nosync_isb``: CPU1 executes ``ISB`` after seeing the flag set.  Running the old
  instruction after that is forbidden (litmus MP.RF+cachesync+ctrl-isb); a finding
  here is a bug in the model.

Machines whose CPUs differ (rule 11 of ``testbed/memory.py``; ``Scenario.cpu_caches``),
all with CPU1's ``ISB``:

* ``nosync_isb_biglittle``: CPU0 a "big" core with ``CTR_EL0.DIC=1``, CPU1 a "LITTLE"
  one with IDC=0.  The kernel's flush acts on the system-wide safe ``CTR_EL0`` (IDC=0,
  DIC=0: it cleans and invalidates): correct.
* ``nosync_isb_local_ctr``: the same machine, the flush on CPU0's own ``CTR_EL0``
  (``kernels/ctr_local.S``): CPU0 sees DIC=1 and skips the ``IC IVAU`` that CPU1's
  I-cache needs, and CPU1 runs the old instruction after its ``ISB``.
* ``nosync_isb_n1_erratum``: CPU0 DIC=1, CPU1 a Neoverse-N1 with erratum 1542419
  (``CTR_EL0.DIC=1`` advertised, its I-cache not kept coherent by stores): every CPU
  advertises DIC, so the kernel's flush skips the ``IC IVAU``, and CPU1 runs the old
  instruction after its ``ISB``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.isa import NOP, b
from testbed.machine import Machine
from testbed.scenario import Scenario

OLD_PATH, NEW_PATH = 1, 2


class NosyncStale(Scenario):
    name = "nosync_stale"
    description = "CPU1 runs the old instruction after CPU0's nosync patch has completed"
    kernels = ("boot.S", "insn.S", "nosync_race.S")
    ncpus = 2
    passes = 8
    isb_after_flag = 0
    expect = OracleName.STALE_AFTER_FLUSH

    patcher = "patcher_main"

    def setup(self, m: Machine) -> None:
        site = m.addr("patch_site")
        m.start(0, self.patcher, site, b(site, m.addr("site_new")))
        m.start(1, "site_loop", self.passes, self.isb_after_flag)
        m.may_patch("patch_site")
        for cpu in range(2, m.ncpus):
            m.start(cpu, "cpu_off")

    def passes_seen(self, m: Machine) -> list[tuple[int, int]]:
        """(flag, path) of every pass CPU1 logged."""
        raw = m.read(m.addr("site_log"), 4 * self.passes)
        entries = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
        return [(e >> 8, e & 0xFF) for e in entries if e]

    def observe(self, m: Machine) -> dict[str, object]:
        return {"passes": self.passes_seen(m), "patch_result": m.read_u32("patch_result")}

    def check(self, m: Machine) -> list[Finding]:
        passes = self.passes_seen(m)
        if (1, OLD_PATH) not in passes:
            return []
        stale = [i for i, p in enumerate(passes) if p == (1, OLD_PATH)]
        site = m.addr("patch_site")
        new = int.from_bytes(m.read(site, 4), "little")  # text reads see the D-side
        # The i-th pass is CPU1's i-th execution of the site in the ground truth.
        runs = [step for step, addr, _ in m.ground_truth()[1] if addr == site]
        return [Finding(
            OracleName.STALE_AFTER_FLUSH,
            f"CPU1 ran the old instruction at {m.image.symbolize(site)} in pass {stale[0]} "
            f"after seeing patch_done=1, i.e. after CPU0's aarch64_insn_patch_text_nosync "
            f"had completed its flush"
            + (" and CPU1 had executed ISB" if self.isb_after_flag else
               " (no context synchronization on CPU1: allowed by the architecture)"),
            cpu=1, addr=site, words=(NOP, new), step=runs[stale[0]])]


class NosyncIsb(NosyncStale):
    name = "nosync_isb"
    description = "as nosync_stale, but CPU1 executes ISB after seeing the flag: never stale"
    isb_after_flag = 1
    expect = None


class NosyncIsbBigLittle(NosyncIsb):
    name = "nosync_isb_biglittle"
    description = "nosync_isb on a big (DIC=1) + LITTLE (IDC=0) machine: correct"
    kernels = ("boot.S", "insn.S", "nosync_race.S", "ctr_local.S")
    cpu_caches: ClassVar[Mapping[int, str]] = {0: "DIC1", 1: "IDC0"}


class NosyncIsbLocalCtr(NosyncIsbBigLittle):
    name = "nosync_isb_local_ctr"
    description = "nosync_isb_biglittle, the flush on the patcher's own CTR_EL0: stale"
    patcher = "patcher_local"
    expect = OracleName.STALE_AFTER_FLUSH


class NosyncIsbN1Erratum(NosyncIsbBigLittle):
    name = "nosync_isb_n1_erratum"
    description = "nosync_isb, CPU1 a Neoverse-N1 with erratum 1542419 (DIC lies): stale"
    cpu_caches: ClassVar[Mapping[int, str]] = {0: "DIC1", 1: "neoverse-n1-1542419"}
    expect = OracleName.STALE_AFTER_FLUSH
