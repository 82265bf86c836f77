"""The text between Unicorn and the fetch model: data accesses, fetch points, coherence.

Each CPU executes its own I-view of the text (``memory.FetchModel`` owns the buffers);
the D-side's copy is mapped at the text's writable alias.  This module keeps the two
sides and Unicorn's translated code consistent with the model:

- **Data accesses to the text.**  Stores through the alias go to the D-side through the
  model (``text_store``: ``FetchModel.store``, the record of whole-word stores the CMODX
  oracle reads, a ``TEXT_STORE`` event).  A store or load that names the text address
  itself is stopped at its hook and redone in *text mode* (``redo_text_access``): loads
  see the D-side bytes, stores go to the D-side, and the I-view is put back right after.
- **Fetch points.**  Every text word a store has touched gets a code hook on every CPU
  (a fetch of it is a schedule point: catch-ups, fills and evictions may happen just
  before it) and a read hook for loads that overlap it.  ``kind_for`` says what the code
  hook does at a word given a CPU's I-view now.
- **Coherence.**  Whenever an I-view word changes (``catch_up``, a restored state), the
  CPU's translations of it are dropped (``ctl_remove_cache``) before it runs again, and
  its kind follows the new word.
- **Cache maintenance** (``DC``/``IC``) and the **CMODX oracle** at a fetch of a word
  another CPU modified since this CPU's last context synchronization event.

Functions take the machine (and the CPU) they work on; the machine wires the hooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import unicorn as uc_mod
from unicorn import arm64_const as A

from . import layout, trace
from .armmem import WriteOrd
from .cpu import NO_COUNT, UNTIL, XREG, Cpu, Stop, UcError, hook_code
from .findings import EventKind, OracleName
from .isa import OpKind, classify, is_cmodx

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["cache_op", "catch_up", "cmodx_violation", "forget_view", "install_fetch_points",
           "install_hooks", "kind_for", "redo_text_access", "refresh_fetch_points",
           "restore_text_reads", "text_offset", "text_store"]


def install_hooks(m: Machine, c: Cpu) -> None:
    """The hooks on stores to the text (a protection fault) and to its alias.

    Loads from the text need the D-side's bytes only where a store made them differ
    from the I-view: a read hook is added per touched word (``install_fetch_points``),
    so literal pools and other untouched text cost no callback.
    """
    u = c.uc
    u.hook_add(uc_mod.UC_HOOK_MEM_WRITE_PROT, partial(on_text_write, m), c,
               layout.TEXT_BASE, layout.TEXT_BASE + m.text_size - 1)
    u.hook_add(uc_mod.UC_HOOK_MEM_WRITE, partial(on_alias_write, m), c,
               layout.TEXT_ALIAS, layout.TEXT_ALIAS + m.text_size - 1)


# -- data accesses to the text (Unicorn hooks, called from inside emu_start) -------------
def on_text_read(m: Machine, u: Any, access: int, addr: int, size: int, value: int,
                 c: Cpu) -> None:
    off = addr - layout.TEXT_BASE
    view, dside = m.iviews[c.index], m.dside_text
    if view[off:off + size] == dside[off:off + size]:
        return  # e.g. a literal pool: the I-view holds what the D-side holds
    if c.text_read_mode:  # present the D-side bytes to this one load
        c.read_fix.append((view, off, bytes(view[off:off + size])))
        view[off:off + size] = dside[off:off + size]
        return
    _stop_for_text(u, c)


def on_text_write(m: Machine, u: Any, access: int, addr: int, size: int, value: int,
                  c: Cpu) -> bool:
    if not layout.TEXT_BASE <= addr < layout.TEXT_BASE + m.text_size:
        return False  # a genuine protection fault: let it fault
    off = addr - layout.TEXT_BASE
    # With mem_map_ptr memory, returning True does not keep the store out of the
    # buffer (measured): remember the I-view bytes to put them back.
    view = m.iviews[c.index]
    c.read_fix.append((view, off, bytes(view[off:off + size])))
    if c.text_read_mode:
        text_store(m, c, off, size, value)
    else:
        _stop_for_text(u, c)
    return True


def _stop_for_text(u: Any, c: Cpu) -> None:
    if c.reason is not Stop.TEXT:  # the first access of the instruction
        c.read_ctx = u.context_save()  # the registers before it
        c.read_pc = c.regs.read(A.UC_ARM64_REG_PC)
        c.reason = Stop.TEXT
        u.emu_stop()


def on_alias_write(m: Machine, u: Any, access: int, addr: int, size: int, value: int,
                   c: Cpu) -> None:
    off = addr - layout.TEXT_ALIAS
    if c.text_read_mode:
        text_store(m, c, off, size, value)
        return
    points = m.fetch_points
    if c.reason is not Stop.TEXT and all(layout.TEXT_BASE + w in points
                                         for w in range(off & ~3, off + size, 4)):
        # Every word it touches has its hooks on every CPU already (an earlier run
        # touched it): only kinds change, so the store is performed here and the
        # CPU runs on.  The hook runs before Unicorn writes the same bytes.
        text_store(m, c, off, size, value)
        install_fetch_points(m)
        return
    # Redo the store in text mode (after its fetch points exist): undo this attempt.
    c.read_fix.append((m.dside_text, off, bytes(m.dside_text[off:off + size])))
    _stop_for_text(u, c)


def text_store(m: Machine, c: Cpu, off: int, size: int, value: int) -> None:
    """CPU ``c`` stores ``value`` (``size`` bytes) at text offset ``off``, to the D-side;
    under the Arm model, each granule it writes becomes a message (W1-W3, with the
    views ``dataside.access`` left in ``Cpu.text_write``)."""
    value &= (1 << (8 * size)) - 1
    words = range(off & ~3, off + size, 4)
    fresh = [w for w in words if w not in m.model.touched]
    old = [int.from_bytes(m.dside_text[w:w + 4], "little") for w in words]
    arm = m.arm
    grans = range(off & ~7, off + size, 8)
    if arm is not None:
        for g in grans:
            arm.know(layout.TEXT_BASE + g, bytes(m.dside_text[g:g + 8]))
    m.model.store(off, value.to_bytes(size, "little"), c.index)
    for w, before in zip(words, old, strict=True):
        if off <= w and w + 4 <= off + size:  # a store of part of a word is left to
            after = int.from_bytes(m.dside_text[w:w + 4], "little")  # the torn oracle
            m.text_stores.append((m.step_no, c.index, w, before, after))
    if arm is not None:
        vaddr, vdata, ordw = c.text_write
        for g in grans:
            arm.text_write(c.index, layout.TEXT_BASE + g, bytes(m.dside_text[g:g + 8]),
                           vaddr, vdata, WriteOrd(ordw))
    m.new_fetch_points += fresh
    m.add_event(c.index, EventKind.TEXT_STORE, layout.TEXT_BASE + off, value, f"size {size}")


def redo_text_access(m: Machine, c: Cpu) -> int:
    """Redo the data access to a text address that stopped ``c``; the address to run on
    from, or -1 if ``c`` stopped (at its next visible operation, or by a fault).

    The emulator may already have done part of it (a store lands in the I-view buffer,
    a load's register is written, its base writeback is not), so undo that, go back to
    the registers before it, and single-step it in text mode: loads see the D-side
    bytes, stores go to the D-side through the model, and the I-view is put back right
    after.
    """
    pc = c.read_pc
    restore_text_reads(m, c)
    c.uc.context_restore(c.read_ctx)
    trace.cut(c.log, pc)
    c.skip = pc if pc in c.kind_at else -1
    c.text_read_mode = True
    c.counting = True  # (cpu.Cpu.left)
    c.left = NO_COUNT  # Unicorn counts the one step
    logged = len(c.log)
    c.stepping = True  # (cpu._block_hook)
    try:
        c.start(pc, UNTIL, 1)
    except UcError as e:
        restore_text_reads(m, c)
        m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} faults at "
                      f"{m.image.symbolize(pc)}: {e}", pc)
        return -1
    finally:
        c.text_read_mode = c.stepping = False
    restore_text_reads(m, c)
    install_fetch_points(m)
    # The block hook logs the block the step branches to as well (Unicorn's count stops
    # it only after): that block did not run.
    del c.log[logged + 1:]
    pc += 4
    trace.cut(c.log, pc)
    kind = c.kind_at.get(pc)
    if kind is not None and kind is not OpKind.INVISIBLE:
        c.pc = pc
        return -1
    return pc


def restore_text_reads(m: Machine, c: Cpu) -> None:
    for buf, off, old in reversed(c.read_fix):
        buf[off:off + len(old)] = old
        if buf is not m.dside_text:
            c.remove_cache(layout.TEXT_BASE + off, layout.TEXT_BASE + off + len(old))
    c.read_fix = []


# -- fetch points and the kinds the code hook acts on -------------------------------------
def kind_for(m: Machine, c: Cpu, w: int) -> OpKind:
    """What the code hook must do at text word ``w`` given ``c``'s I-view now."""
    addr = layout.TEXT_BASE + w
    fixed = m.fixed_kinds.get(addr)
    if fixed is not None:
        return fixed
    if m.model.is_torn(c.index, w):
        return OpKind.TORN
    kind = classify(int.from_bytes(m.iviews[c.index][w:w + 4], "little")).kind
    if kind is OpKind.INVISIBLE and (w in m.model.touched or addr in m.declared):
        # A fetch of a word that stores touched, or may touch (declared, or touched in
        # an earlier run), is a schedule point: catch-ups, fills and evictions may
        # happen just before it, and other CPUs may store to it first.
        return OpKind.FETCH
    return kind


def install_fetch_points(m: Machine) -> None:
    """Hooks and kinds for the words stores touched for the first time."""
    for w in m.new_fetch_points:
        addr = layout.TEXT_BASE + w
        new = addr not in m.fetch_points
        m.fetch_points.add(addr)
        for c in m.cpus:
            if new:  # any access of up to 16 bytes that overlaps the word
                c.uc.hook_add(uc_mod.UC_HOOK_MEM_READ, partial(on_text_read, m), c,
                              max(layout.TEXT_BASE, addr - 15), addr + 3)
            if addr not in c.kind_at:
                hook_code(c, addr)
                c.remove_cache(addr, addr + 4)
            c.kind_at[addr] = kind_for(m, c, w)
    m.new_fetch_points = []


def refresh_fetch_points(m: Machine, words: Iterable[int] | None = None) -> None:
    """After the model state was replaced (reset, load): kinds follow it again; only at
    ``words`` (text offsets) if given, the only ones whose kinds may have changed."""
    if words is None:
        addrs: Iterable[int] = m.fetch_points
    else:
        addrs = [a for a in (layout.TEXT_BASE + w for w in words) if a in m.fetch_points]
    for addr in addrs:
        w = addr - layout.TEXT_BASE
        for c in m.cpus:
            c.kind_at[addr] = kind_for(m, c, w)


def forget_view(m: Machine, c: Cpu, words: Iterable[int]) -> None:
    """``c``'s I-view words ``words`` changed outside a run: drop their translations."""
    remove = c.remove_cache
    for w in words:
        addr = layout.TEXT_BASE + w
        remove(addr, addr + 4)
        if addr in c.kind_at:
            c.kind_at[addr] = kind_for(m, c, w)


def catch_up(m: Machine, c: Cpu, why: str) -> None:
    """The model's catch-up of ``c``'s I-view (rule 7), and Unicorn kept coherent."""
    if why != "chosen":  # ISB, exception entry, ERET: context synchronization events
        c.last_cse = m.step_no
        if m.arm is not None:  # and for the data side, B2
            m.arm.isb(c.index)
    changed = m.model.catch_up(c.index)
    if not changed:
        return
    view, step = m.iviews[c.index], m.step_no
    for w in changed:
        addr = layout.TEXT_BASE + w
        word = int.from_bytes(view[w:w + 4], "little")
        kind = kind_for(m, c, w)
        if addr not in c.kind_at:
            hook_code(c, addr)
        if kind is OpKind.WFI:
            m.has_wfi = True
        c.kind_at[addr] = kind
        c.remove_cache(addr, addr + 4)
        c.log.append((step, ~w, word))
        m.add_event(c.index, EventKind.CATCH_UP, addr, word, why)


# -- cache maintenance and the CMODX oracle --------------------------------------------
def cache_op(m: Machine, c: Cpu, pc: int, as_of: int | None = None) -> None:
    """The ``DC`` or ``IC`` instruction at ``pc``, on the model (``as_of``: a clean of
    the line as it was then, ``dataside.clean_choices``)."""
    info = classify(m.model.fetch(c.index, pc - layout.TEXT_BASE))
    va = c.regs.read(XREG[info.rt]) if info.rt != 31 else 0
    off = text_offset(m, va)
    model = m.model
    if info.op == "ialluis":
        model.ic_ialluis(c.index)
    elif info.op == "iallu":
        model.ic_iallu(c.index, deferred=True)
    elif off is None:
        return  # maintenance of a data address: no effect on fetches
    elif info.op == "ivau":
        model.ic_ivau(off, c.index)
    elif info.op == "ivac":
        return  # invalidating the D-side to the PoC would lose data: not modelled
    else:  # cvau, cvac, civac, cvap, cvadp all clean at least to the PoU
        model.dc_cvau(off, c.index, as_of)
    m.add_event(c.index, EventKind.IC if info.kind is OpKind.IC else EventKind.DC, va,
                detail=info.op if as_of is None else f"{info.op}, the line as at time {as_of}")


def text_offset(m: Machine, va: int) -> int | None:
    """The text offset ``va`` names (through the text or its alias), None if none."""
    for base in (layout.TEXT_BASE, layout.TEXT_ALIAS):
        if base <= va < base + m.text_size:
            return va - base
    return None


def cmodx_violation(m: Machine, c: Cpu, pc: int) -> bool:
    """The CMODX oracle, at a CPU's fetch of a word that stores have touched.

    The word is concurrently modified for this CPU if another CPU stored to it after
    this CPU's last context synchronization event; the architecture then only
    promises "old or new" when both are in the CMODX set (B, BL, B.cond, CB(N)Z,
    TB(N)Z, NOP, BRK, SVC, HVC, SMC, ISB).
    """
    w = pc - layout.TEXT_BASE
    for step, cpu, word, old, new in reversed(m.text_stores):
        if step <= c.last_cse:
            break
        if word != w or cpu == c.index or (is_cmodx(old) and is_cmodx(new)):
            continue
        ran = m.model.fetch(c.index, w)
        m.add_finding(c, OracleName.CMODX_VIOLATION, f"CPU{c.index} executes {ran:#010x} at "
                      f"{m.image.symbolize(pc)} while CPU{cpu} modifies it from "
                      f"{old:#010x} to {new:#010x}, and not both are instructions the "
                      "architecture allows to be modified concurrently", pc, (old, new))
        return True
    return False
