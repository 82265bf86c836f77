"""A small interrupt controller: software-generated interrupts (IPIs) between CPUs.

One MMIO page (``layout.GIC_BASE``), the same registers seen by every CPU, in the
spirit of a GIC CPU interface: send an IPI to one CPU or to all others, read the
pending set, acknowledge the lowest pending IPI (GICC_IAR-like, ``GIC_SPURIOUS`` when
none).  A CPU's IRQ line is asserted while it has a pending IPI; the machine takes it
only when the CPU's ``PSTATE.I`` is clear.  No Unicorn here: the machine wires it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import layout

__all__ = ["GicAccess", "InterruptController"]


@dataclass(frozen=True, slots=True)
class GicAccess:
    """What a register access did, for the machine's event log."""

    kind: str  # "send", "ack", "off", "die", "read"
    targets: tuple[int, ...] = ()
    ipi: int = -1
    value: int = 0


class InterruptController:
    def __init__(self, ncpus: int) -> None:
        self.ncpus = ncpus
        self.pending = [0] * ncpus  # per CPU: bitmask of pending IPI numbers

    def reset(self) -> None:
        self.pending = [0] * self.ncpus

    def state(self) -> tuple[int, ...]:
        return tuple(self.pending)

    def set_state(self, state: tuple[int, ...]) -> None:
        self.pending = list(state)

    def asserted(self, cpu: int) -> bool:
        return self.pending[cpu] != 0

    def send(self, target: int, ipi: int) -> None:
        if not 0 <= target < self.ncpus:
            raise IndexError(f"IPI to CPU{target}, but the machine has {self.ncpus} CPUs")
        self.pending[target] |= 1 << (ipi % layout.GIC_NR_IPIS)

    def read(self, cpu: int, offset: int) -> tuple[int, GicAccess]:
        if offset == layout.GIC_PENDING:
            return self.pending[cpu], GicAccess("read", value=self.pending[cpu])
        if offset == layout.GIC_ACK:
            bits = self.pending[cpu]
            if not bits:
                return layout.GIC_SPURIOUS, GicAccess("ack", (cpu,), layout.GIC_SPURIOUS)
            ipi = (bits & -bits).bit_length() - 1
            self.pending[cpu] = bits & ~(1 << ipi)
            return ipi, GicAccess("ack", (cpu,), ipi)
        if offset == layout.GIC_CPUID:
            return cpu, GicAccess("read", value=cpu)
        return 0, GicAccess("read")

    def write(self, cpu: int, offset: int, value: int) -> GicAccess:
        ipi = (value >> 8) & (layout.GIC_NR_IPIS - 1)
        if offset == layout.GIC_SEND:
            target = value & 0xFF
            self.send(target, ipi)
            return GicAccess("send", (target,), ipi)
        if offset == layout.GIC_SEND_OTHERS:
            targets = tuple(c for c in range(self.ncpus) if c != cpu)
            for t in targets:
                self.send(t, ipi)
            return GicAccess("send", targets, ipi)
        if offset == layout.GIC_CPU_OFF:
            return GicAccess("off", (cpu,))
        if offset == layout.GIC_DIE:
            return GicAccess("die", (cpu,), value=value)
        return GicAccess("read")
