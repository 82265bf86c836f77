"""A scenario of the tests' own (tests/test_walker.py): CPU0 patches a NOP that CPU1
runs in a loop into WFI, so that the machine has a WFI only from the middle of a run on,
while CPU2 counts in memory; or (``spin=1``) into YIELD, so that an ISB's catch-up
makes the operation after it foldable."""

from typing import ClassVar

from testbed.isa import NOP
from testbed.machine import Machine
from testbed.scenario import Scenario

WFI = 0xD503207F
YIELD = 0xD503203F


class WfiPatch(Scenario):
    name = "wfi_patch"
    description = "a patch makes a WFI visible in the middle of a run"
    kernels = ("boot.S", "insn.S", "wfi_patch.S")
    ncpus = 3
    passes = 6
    counts = 40
    spin = 0  # 1: the NOP becomes a YIELD (foldable) instead
    search_scope: ClassVar[dict[str, int]] = {}

    def setup(self, m: Machine) -> None:
        assert m.read_u32("wfi_site") == NOP
        m.start(0, "wfi_patcher", m.addr("wfi_site"), YIELD if self.spin else WFI)
        m.start(1, "wfi_worker", self.passes)
        m.start(2, "wfi_counter", self.counts)
        m.may_patch("wfi_site")

    def observe(self, m: Machine) -> dict[str, object]:
        return {"passes": m.read_u64("wfi_passes"), "count": m.read_u64("wfi_count")}
