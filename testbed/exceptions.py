"""Exceptions as on hardware, and the interrupt controller's MMIO page.

BRK, undefined instructions and SVC (``on_intr``, Unicorn's interrupt hook) become a
pending exception of the CPU, entered at its next step; an IRQ is taken when the
scheduler chooses it (``take_irq``).  Entry (``enter``) writes ELR_EL1 and SPSR_EL1 (and
ESR_EL1 for the synchronous ones: the Arm ARM leaves ESR_ELx unchanged for IRQs), masks
DAIF and enters EL1h at VBAR_EL1 plus the vector offset; the guest returns with
``ERET`` (``eret``).  Exception entry and ERET are context synchronization events: each
forces a catch-up of the CPU's I-view, unless the CPU's FEAT_ExS setting says otherwise
(``SCTLR_EL1.EIS``/``EOS`` = 0: ``Machine.set_exception_sync``); the event then says so.

The interrupt controller (``interrupts.InterruptController``) is mapped as one MMIO page
on every CPU (``gic_read``, ``gic_write``): IPIs sent and acknowledged, the guest's clock,
a CPU switching itself off, and the kernel dying (a "kernel-die" finding).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import unicorn as uc_mod
from unicorn import arm64_const as A

from . import layout, trace
from .cpu import Cpu, CpuState, Stop
from .findings import EventKind, OracleName
from .isa import OpKind
from .textside import catch_up

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["EC_BRK64", "EC_SVC64", "EC_UNKNOWN", "ESR_IL", "NOT_SYNCHRONIZING", "enter",
           "eret", "gic_read", "gic_write", "install_hooks", "on_intr", "take_irq"]

# The detail of an EXCEPTION or ERET event that was not a context synchronization event.
NOT_SYNCHRONIZING = "not context synchronizing (FEAT_ExS: SCTLR_EL1.EIS/EOS = 0)"

ESR_IL = 1 << 25
EC_UNKNOWN, EC_SVC64, EC_BRK64 = 0x00, 0x15, 0x3C
EXCP_UDEF, EXCP_SWI, EXCP_BKPT = 1, 2, 7  # QEMU's exception numbers seen by UC_HOOK_INTR


def install_hooks(m: Machine, c: Cpu) -> None:
    """The interrupt controller's page and the interrupt hook on ``c``'s Unicorn."""
    u = c.uc
    u.mmio_map(layout.GIC_BASE, layout.PAGE, partial(gic_read, m), c, partial(gic_write, m), c)
    u.hook_add(uc_mod.UC_HOOK_INTR, partial(on_intr, m), c)


def on_intr(m: Machine, u: Any, intno: int, c: Cpu) -> None:
    """A synchronous exception inside the emulator: pending, entered at the next step."""
    pc = c.regs.read(A.UC_ARM64_REG_PC)
    if intno == EXCP_BKPT:
        word = m.model.fetch(c.index, pc - layout.TEXT_BASE)
        c.exc = (ESR_IL | EC_BRK64 << 26 | (word >> 5) & 0xFFFF, pc, pc + 4)
    elif intno == EXCP_UDEF:
        c.exc = (ESR_IL | EC_UNKNOWN << 26, pc, pc + 4)
    elif intno == EXCP_SWI:  # QEMU has already stepped PC past the SVC
        word = m.model.fetch(c.index, pc - 4 - layout.TEXT_BASE)
        c.exc = (ESR_IL | EC_SVC64 << 26 | (word >> 5) & 0xFFFF, pc, pc)
    else:
        m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} raises unsupported exception "
                      f"{intno} at {m.image.symbolize(pc)}", pc)
        c.reason = Stop.DIE
        u.emu_stop()
        return
    c.reason = Stop.EXCEPTION
    u.emu_stop()


def enter(m: Machine, c: Cpu, offset: int, esr: int | None, elr: int) -> int:
    """Exception entry to EL1h; returns the vector address."""
    read, write = c.regs.read, c.regs.write
    pstate = read(A.UC_ARM64_REG_PSTATE)
    base = {0b0101: 0x200, 0b0100: 0x000, 0b0000: 0x400}.get(pstate & 0xF)
    vbar = read(A.UC_ARM64_REG_VBAR_EL1)
    if base is None or vbar == 0:
        m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} takes an exception "
                      f"with no vector table (VBAR_EL1={vbar:#x}, PSTATE={pstate:#x})", elr)
        return elr
    write(A.UC_ARM64_REG_ELR_EL1, elr)
    c.write_spsr(pstate)
    if esr is not None:
        write(A.UC_ARM64_REG_ESR_EL1, esr)
    write(A.UC_ARM64_REG_PSTATE, (pstate & 0xF000_0000) | 0x3C5)
    c.irq_masked = True
    vector: int = vbar + base + offset
    if m.eis[c.index]:
        m.add_event(c.index, EventKind.EXCEPTION, elr,
                    esr if esr is not None else -1, f"vector {vector:#x}")
        catch_up(m, c, "exception entry")
    else:  # FEAT_ExS, SCTLR_EL1.EIS=0: not a context synchronization event
        m.add_event(c.index, EventKind.EXCEPTION, elr, esr if esr is not None else -1,
                    f"{NOT_SYNCHRONIZING}; vector {vector:#x}")
    return vector


def take_irq(m: Machine, c: Cpu) -> int:
    """Take ``c``'s pending IRQ; returns where it goes on (the vector, or ELR if none)."""
    elr = c.pc + 4 if c.kind_at.get(c.pc) is OpKind.WFI else c.pc
    m.add_event(c.index, EventKind.IRQ, c.pc)
    return enter(m, c, 0x080, None, elr)


def eret(m: Machine, c: Cpu, pc: int) -> None:
    """The ``ERET`` at ``pc`` is about to run: a context synchronization event, unless
    the CPU's ``SCTLR_EL1.EOS`` is 0 (``Machine.set_exception_sync``)."""
    if m.eos[c.index]:
        catch_up(m, c, "ERET")
        m.add_event(c.index, EventKind.ERET, pc)
    else:
        m.add_event(c.index, EventKind.ERET, pc, detail=NOT_SYNCHRONIZING)


# -- the interrupt controller's page (Unicorn MMIO callbacks) -----------------------------
def gic_read(m: Machine, u: Any, offset: int, size: int, c: Cpu) -> int:
    m.mutations += 1  # the clock moves, an acknowledgement changes the controller
    if offset == layout.GIC_CLOCK:
        return m.step_no  # one timebase for the trace and the guest's records
    value, access = m.gic.read(c.index, offset)
    if access.kind == "ack" and access.ipi != layout.GIC_SPURIOUS:
        m.add_event(c.index, EventKind.IPI_ACK, value=access.ipi)
    return value


def gic_write(m: Machine, u: Any, offset: int, size: int, value: int, c: Cpu) -> None:
    try:
        access = m.gic.write(c.index, offset, value)
    except IndexError as e:
        m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index}: {e}")
        c.reason = Stop.DIE
        u.emu_stop()
        return
    if access.kind == "send":
        if m.arm is not None:
            for t in access.targets:
                m.arm.send_interrupt(c.index, t)
        m.add_event(c.index, EventKind.IPI_SEND, value=access.ipi,
                    detail="to " + ",".join(f"CPU{t}" for t in access.targets))
    elif access.kind == "off":  # (every CPU's last act: its register read in one C call)
        pc = c.regs.read(A.UC_ARM64_REG_PC)
        c.flush()  # the blocks the compiled hook logged so far
        trace.cut(c.log, pc + 4)
        c.state = CpuState.OFF
        c.reason = Stop.HALT
        m.add_event(c.index, EventKind.HALT, pc)
        u.emu_stop()
    elif access.kind == "die":
        pc = c.regs.read(A.UC_ARM64_REG_PC)
        c.flush()  # the blocks the compiled hook logged so far
        trace.cut(c.log, pc + 4)
        m.add_finding(c, OracleName.KERNEL_DIE, f"CPU{c.index}: kernel died (reason "
                      f"{access.value:#x}) at {m.image.symbolize(pc)}", pc)
        c.reason = Stop.DIE
        u.emu_stop()
