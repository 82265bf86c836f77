"""The machine's own oracles, judged while the CPUs run (``testbed/machine.py``).

- ``cmodx-violation``: a CPU executes a word that another CPU's concurrent store made
  something the Arm ARM's CMODX rule does not allow (B2.2.5: only B, BL, BRK, NOP, ISB
  and the other listed instructions may be swapped while another CPU executes them).
- ``torn-word``: a CPU executes an instruction word no single store ever wrote (stores
  narrower than the word raced).
- ``guest-fault``: an exception with no vector, a fault of the emulator, an unsupported
  exception class.
- ``kernel-die``: the guest called its ``die()`` (e.g. ``BUG()`` in the patcher).
- ``liveness``: a CPU ran its instruction budget without a visible operation, the run
  reached its decision bound, or every CPU waits for an interrupt that cannot come.
- ``fetch-scope``: a CPU fetched a modified word outside the addresses its scenario
  declared it may run (``Machine.set_fetch_scope``).
- ``use-after-free``: a CPU's load returned the poison ``kfree()`` leaves in an object
  the scenario declared (``Machine.watch_object``, ``kernels/slab.S``): it read the
  object after it was freed.

Only the CMODX check costs anything to run; the others are facts of the run that the
machine detects anyway, and switching them off only drops their findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..findings import Finding, OracleName

if TYPE_CHECKING:
    from ..machine import Machine
    from ..scheduler import RunResult

__all__ = ["MACHINE_ORACLES", "MachineOracle"]


@dataclass(frozen=True)
class MachineOracle:
    name: str
    description: str
    stage: str = "machine"

    def configure(self, machine: Machine, enabled: bool) -> None:
        if self.name == OracleName.CMODX_VIOLATION:
            machine.cmodx_oracle = enabled

    def check(self, machine: Machine, result: RunResult,
              raised: Sequence[Finding]) -> list[Finding]:
        return [f for f in raised if f.oracle == self.name]


MACHINE_ORACLES: tuple[MachineOracle, ...] = (
    MachineOracle(OracleName.CMODX_VIOLATION, "a CPU ran a word concurrently modified "
                  "outside what the CMODX rule allows"),
    MachineOracle(OracleName.TORN_WORD, "a CPU ran an instruction word no single store "
                  "wrote"),
    MachineOracle(OracleName.GUEST_FAULT, "an exception with no vector, or the emulator "
                  "faulted"),
    MachineOracle(OracleName.KERNEL_DIE, "the guest kernel called die()"),
    MachineOracle(OracleName.LIVENESS, "a CPU spun past its budget, the run found no end, "
                  "or CPUs deadlocked"),
    MachineOracle(OracleName.FETCH_SCOPE, "a CPU fetched modified code outside its "
                  "declared scope"),
    MachineOracle(OracleName.USE_AFTER_FREE, "a CPU read a heap object after kfree() "
                  "poisoned it"),
)
