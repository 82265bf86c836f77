"""BRK emulation: the handler emulated something other than the instruction being
patched at that address (the single-slot race of the 2019 BRK text-poke sketch).

The guest's BRK handler logs every emulation, {address, instruction}, in its CPU's
per-CPU area (``layout.PERCPU_EMUL_LOG``); the scenario says which instruction each
patched address is being given.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import layout
from ..findings import EventKind, Finding, OracleName
from ..machine import Machine


def brk_emulation(m: Machine, expected: Mapping[int, int]) -> list[Finding]:
    """One finding per CPU whose handler emulated an unexpected instruction."""
    out: list[Finding] = []
    for cpu in range(m.ncpus):
        base = layout.percpu_base(cpu)
        count = min(int.from_bytes(m.read(base + layout.PERCPU_EMUL_COUNT, 8), "little"), 64)
        for i in range(count):
            entry = m.read(base + layout.PERCPU_EMUL_LOG + 16 * i, 16)
            addr = int.from_bytes(entry[:8], "little")
            insn = int.from_bytes(entry[8:], "little") & 0xFFFF_FFFF
            want = expected.get(addr)
            if want is None or insn != want:
                what = (f"{want:#010x}, the instruction being patched there" if want is not None
                        else "nothing: no patch targets that address")
                steps = [e.step for e in m.events if e.kind is EventKind.EXCEPTION
                         and e.cpu == cpu and e.addr == addr]  # BRKs taken there
                out.append(Finding(
                    OracleName.BRK_EMULATION,
                    f"CPU{cpu}'s BRK handler emulated {insn:#010x} at "
                    f"{m.image.symbolize(addr)} instead of {what}", cpu=cpu, addr=addr,
                    words=(insn,) if want is None else (insn, want),
                    step=steps[-1] if steps else -1))
                break
    return out
