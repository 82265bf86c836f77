"""The guest's physical memory map, shared by the machine, the kernels and the tests.

There is no MMU: virtual and physical addresses are the same.  The values are
given to every kernel file as assembler constants (``ASM_DEFINES``) so that
``kernels/*.S`` and the machine cannot disagree about where things live.
"""

from __future__ import annotations

PAGE = 0x1000

# Kernel text, executed by each CPU from its private I-view (see memory.py).
TEXT_BASE = 0x0800_0000
TEXT_MAX = 0x0010_0000
# The writable alias of the text (the kernel's fixmap / linear alias): the D-side.
TEXT_ALIAS = 0x1800_0000
# Shared data: the image's .data/.bss first, then free shared memory.
DATA_BASE = 0x2000_0000
DATA_SIZE = 0x0004_0000
# Per-CPU areas (TPIDR_EL1 points at the CPU's own), shared like any data.
PERCPU_BASE = 0x3000_0000
PERCPU_SIZE = 0x1000
# Per-CPU stacks: private to each CPU (SP-based accesses are not visible operations).
STACK_BASE = 0x4000_0000
STACK_SIZE = 0x2000
# The interrupt controller page (MMIO).
GIC_BASE = 0x5000_0000

# At most 256: GIC_SEND names its target in 8 bits.  The per-CPU areas (1 MiB) and the
# stacks (2 MiB) of 256 CPUs end below the next region (tests/test_many_cpus.py).
MAX_CPUS = 256

# Interrupt controller registers (offsets from GIC_BASE), 32-bit accesses.
GIC_SEND = 0x00  # W: bits[7:0] target CPU (0..255), bits[11:8] IPI number -> pending there
GIC_SEND_OTHERS = 0x04  # W: bits[11:8] IPI number -> pending on every other CPU
GIC_PENDING = 0x08  # R: bitmask of this CPU's pending IPI numbers (no side effect)
GIC_ACK = 0x0C  # R: lowest pending IPI number, now acknowledged; GIC_SPURIOUS if none
GIC_CPUID = 0x10  # R: this CPU's number
GIC_CPU_OFF = 0x14  # W: this CPU stops (its work is done)
GIC_DIE = 0x18  # W: the guest kernel died (value: a reason code); the run stops with a finding
GIC_CLOCK = 0x20  # R (64-bit): the machine's global step: the timebase of traces and records
GIC_SPURIOUS = 0x3FF
# Offsets inside a per-CPU area.
PERCPU_IPI_COUNT = 0x00  # u64: IPIs this CPU handled
PERCPU_EMUL_COUNT = 0x10  # u64: instructions this CPU's BRK handler emulated
PERCPU_EMUL_LOG = 0x18  # {u64 address, u64 instruction} per emulation, 64 at most
GIC_NR_IPIS = 16


def stack_top(cpu: int) -> int:
    """Initial SP of ``cpu`` (full descending stack, 16-byte aligned)."""
    return STACK_BASE + (cpu + 1) * STACK_SIZE


def percpu_base(cpu: int) -> int:
    """Start of ``cpu``'s per-CPU area, the value of its TPIDR_EL1."""
    return PERCPU_BASE + cpu * PERCPU_SIZE


ASM_DEFINES: dict[str, int] = {
    "TEXT_BASE": TEXT_BASE,
    "TEXT_ALIAS": TEXT_ALIAS,
    "TEXT_ALIAS_OFFSET": TEXT_ALIAS - TEXT_BASE,
    "DATA_BASE": DATA_BASE,
    "PERCPU_BASE": PERCPU_BASE,
    "PERCPU_SIZE": PERCPU_SIZE,
    "STACK_BASE": STACK_BASE,
    "STACK_SIZE": STACK_SIZE,
    "GIC_BASE": GIC_BASE,
    "GIC_SEND": GIC_SEND,
    "GIC_SEND_OTHERS": GIC_SEND_OTHERS,
    "GIC_PENDING": GIC_PENDING,
    "GIC_ACK": GIC_ACK,
    "GIC_CPUID": GIC_CPUID,
    "GIC_CPU_OFF": GIC_CPU_OFF,
    "GIC_DIE": GIC_DIE,
    "GIC_CLOCK": GIC_CLOCK,
    "GIC_SPURIOUS": GIC_SPURIOUS,
    "MAX_CPUS": MAX_CPUS,
    "PERCPU_IPI_COUNT": PERCPU_IPI_COUNT,
    "PERCPU_EMUL_COUNT": PERCPU_EMUL_COUNT,
    "PERCPU_EMUL_LOG": PERCPU_EMUL_LOG,
}
