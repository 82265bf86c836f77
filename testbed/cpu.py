"""One CPU of the machine: its Unicorn instance, the hooks that stop it, its registers.

``new_cpu`` creates the Unicorn instance and maps the machine's buffers into it: the
text's writable alias, the shared data and the per-CPU areas are the same host buffers
on every CPU (``mem_map_ptr``); the CPU's own stack, and its own I-view of the text, read
and executed at the text's address.  It sets what firmware would (so that ``ERET`` to
EL1 is legal) and installs the hooks that belong to the CPU alone:

- the code hook on the addresses whose current instruction is visible (``isa.OpKind``):
  it stops the CPU *before* the instruction, so the scheduler decides who performs the
  next visible operation;
- the block hook: the ground-truth log, every block of code as it starts (``trace``);
- the MRS hook: ``CTR_EL0`` reads the machine's cache type.

The hooks for data accesses to the text are ``textside``'s, those for exceptions and the
interrupt controller ``exceptions``'s; the machine wires them.  ``Cpu`` is the record the
machine's modules share: what the scheduler needs to know about a CPU between runs.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import unicorn as uc_mod
from unicorn import arm64_const as A

from . import emulator, fastpath, layout
from .isa import OpKind, plain_address, plain_ea

if TYPE_CHECKING:
    from .asm import Image
    from .machine import Machine

__all__ = ["KEY_REGS", "NO_COUNT", "PSTATE_I", "UNTIL", "XREG", "Cpu", "CpuState", "Stop",
           "UcError", "hook_code", "new_cpu", "own_private", "owns", "ranges", "read_ctr_sites",
           "register_id"]

# The binding does not re-export its error type for type checkers.
UcError: type[Exception] = uc_mod.UcError  # type: ignore[attr-defined]
_Uc: Any = uc_mod.Uc  # type: ignore[attr-defined]
UNTIL = 0xFFFF_FFFF_FFFF_FFFC  # an address never reached: runs end by hooks or count
NO_COUNT = 1 << 62  # a count never reached (Cpu.counting)
PSTATE_I = 0x80
# Xn register ids of Unicorn (X29, X30 are not contiguous with X0..X28).
XREG = [A.UC_ARM64_REG_X0 + i for i in range(29)] + [A.UC_ARM64_REG_X29,
                                                     A.UC_ARM64_REG_X30, A.UC_ARM64_REG_XZR]
# What a state key reads of a CPU's registers, in one C call.
KEY_REGS = [*XREG[:31], A.UC_ARM64_REG_SP, A.UC_ARM64_REG_PSTATE, A.UC_ARM64_REG_ELR_EL1,
            A.UC_ARM64_REG_ESR_EL1, A.UC_ARM64_REG_VBAR_EL1, A.UC_ARM64_REG_TPIDR_EL1]
_SPECIAL_REGS = {"sp": A.UC_ARM64_REG_SP, "lr": A.UC_ARM64_REG_X30, "fp": A.UC_ARM64_REG_X29,
                 "elr_el1": A.UC_ARM64_REG_ELR_EL1, "esr_el1": A.UC_ARM64_REG_ESR_EL1,
                 "vbar_el1": A.UC_ARM64_REG_VBAR_EL1, "tpidr_el1": A.UC_ARM64_REG_TPIDR_EL1,
                 "nzcv": A.UC_ARM64_REG_NZCV, "pstate": A.UC_ARM64_REG_PSTATE,
                 "pc": A.UC_ARM64_REG_PC}


class CpuState(enum.Enum):
    RUNNABLE = "runnable"
    OFF = "off"  # not started, or wrote GIC_CPU_OFF
    FAULTED = "faulted"  # stopped by a finding (fault, torn word, liveness, die)


class Stop(enum.IntEnum):
    """Why the emulator returned."""

    NONE = 0  # the instruction budget ran out
    VISIBLE = 1
    EXCEPTION = 2
    HALT = 3
    TEXT = 4  # a data access to a text address: redone in text mode
    DIE = 5
    HOOKED = 6  # a block was about to run unhooked visible code: hooked, run again from it


def register_id(name: str) -> int | None:
    """Unicorn's id of a register by name (``x0``..``x30``, ``w0``.., ``sp``, ``elr_el1``...),
    None if there is no such register."""
    key = name.lower()
    if key[:1] in ("x", "w") and key[1:].isdigit() and int(key[1:]) <= 30:
        return XREG[int(key[1:])]
    return _SPECIAL_REGS.get(key)


def _no_hook(handle: int, addr: int, size: int, key: int) -> None:
    return None


def _nothing() -> None:
    return None


def _no_range(lo: int, hi: int) -> None:
    return None


class Cpu:
    """One CPU: its Unicorn instance and what the scheduler needs to know about it."""

    __slots__ = (
        "_keep",
        "code_hook",
        "counting",
        "cut",
        "exc",
        "fast",
        "flush",
        "hook_error",
        "hooked",
        "index",
        "irq_masked",
        "kind_at",
        "last_cse",
        "left",
        "log",
        "mark",
        "on_code",
        "parked",
        "pc",
        "private",
        "read_ctx",
        "read_fix",
        "read_pc",
        "read_regs",
        "read_spsr",
        "reason",
        "regs",
        "remove_cache",
        "restore",
        "save_context",
        "skip",
        "spun",
        "stack",
        "start",
        "state",
        "stepping",
        "stop",
        "text_read_mode",
        "text_write",
        "uc",
        "uc_start",
        "verified",
        "write_spsr",
    )

    def __init__(self, index: int, uc: Any) -> None:
        self.index = index
        self.uc = uc
        self.state = CpuState.OFF
        self.pc = 0  # stopped before the instruction here
        self.skip = -1  # the hooked address to let through once when resuming
        self.reason = Stop.NONE
        self.exc: tuple[int, int, int] | None = None  # (ESR, ELR, executed-through) pending
        self.irq_masked = True
        self.last_cse = 0  # step of this CPU's last context synchronization event
        # Folded steps (``Machine.fold``, execute.py): whether this CPU passed a YIELD or
        # WFE since its last step (it spins: switching away is free), whether it is
        # parked (its last spin iteration changed nothing and no one has written since,
        # so the next one would change nothing either), and what it held at its last
        # YIELD or WFE: (pc, registers, stack digest, the machine's mutation count, its
        # Arm-model thread state).
        self.spun = False
        self.parked = False
        self.mark: tuple[object, ...] | None = None
        self.kind_at: dict[int, OpKind] = {}  # every hooked address -> its current kind
        # Ranges [lo, hi) of data private to this CPU (Machine.set_private): a plain load
        # or store wholly inside one is no visible operation (the code hook lets it run).
        self.private: tuple[tuple[int, int], ...] = ()
        # Ground truth, in order: (step, start, end) for code run, (step, ~word, value)
        # for an I-view change; start/end are addresses, ~word is negative.
        self.log: list[tuple[int, int, int]] = []
        # (buffer, offset, bytes) to put back after a data access to text is redone.
        self.read_fix: list[tuple[bytearray, int, bytes]] = []
        self.read_pc = 0
        self.read_ctx: Any = None
        self.text_read_mode = False
        # Arm model: the address and data views and the ordering of this CPU's store to
        # the text, which the text side makes a message (textside.text_store)
        self.text_write: tuple[int, int, int] = (0, 0, 0)
        self.stack = bytearray(layout.STACK_SIZE)
        self.start = emulator.starter(uc)
        # uc_emu_start itself (handle, begin, until, timeout, count) -> status, which
        # ``start`` wraps (walker.walk calls it)
        self.uc_start = emulator.start_function()
        self.stop = emulator.stopper(uc)
        self.remove_cache = emulator.cache_remover(uc)  # ctl_remove_cache, one C call
        self.restore = emulator.context_restorer(uc)  # context_restore, one C call
        self.save_context: Callable[[], Any] = uc.context_save  # what ``restore`` takes
        self.regs = emulator.register_access(uc)  # reg_read/reg_write, one C call each
        self.write_spsr = emulator.cp_writer(uc, 3, 0, 4, 0, 0)
        self.on_code: emulator.HookFn = _no_hook
        self.read_regs = emulator.register_reader(uc, KEY_REGS)
        self.read_spsr = emulator.cp_reader(uc, 3, 0, 4, 0, 0)
        self.hook_error: BaseException | None = None
        # The instruction budget of a run, counted by the block hook: Unicorn's own
        # count (``count`` > 0) walks every code hook at every instruction, about 20x
        # slower.  Once a single step (``count`` = 1) installed Unicorn's counter, it
        # stays (removing it flushes every translation): ``counting`` then passes a
        # count the block hook's budget always reaches first.
        self.left = 0
        self.counting = False
        # The compiled fast path (fastpath.attach) replaces ``start`` and sets ``flush``
        # (hand the blocks its hook logged so far to ``log``: a hook that cuts the log
        # during a run calls it first); new_cpu sets ``code_hook`` (hook the code at
        # [lo, hi]) for either path.
        self.flush: Callable[[], None] = _nothing
        # Whether the caller must cut the log where a run stopped before a visible
        # operation (the compiled run call does it itself, but for a run that logged
        # nothing)
        self.cut = True
        self.code_hook: Callable[[int, int], None] = _no_range
        # The pure path hooks code as it first runs (``_block_hook``): the addresses
        # with a code hook, each block start found hooked throughout with the block's
        # size then, and whether the run is a single step (``count`` = 1).
        self.hooked: set[int] = set()
        self.verified: dict[int, int] = {}
        self.stepping = False
        self.fast: Any = None  # the compiled fast path's handle of this CPU (fastpath.attach)
        self._keep: list[Any] = []


def _ptr(buf: bytearray, keep: list[Any]) -> int:
    c = (ctypes.c_char * len(buf)).from_buffer(buf)
    keep.append(c)
    return ctypes.addressof(c)


def new_cpu(m: Machine, i: int) -> Cpu:
    """CPU ``i`` of ``m``: its Unicorn instance with the memory map, the firmware's
    settings and the CPU's own hooks (code, block, MRS) installed."""
    u: Any = _Uc(uc_mod.UC_ARCH_ARM64, uc_mod.UC_MODE_ARM)
    # The "max" CPU (QEMU's): Armv8.1+ LSE atomics, LDAPR and the rest the toolchain
    # encodes; Unicorn's default CPU takes an exception on each of them.
    u.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)
    cpu = Cpu(i, u)
    keep = cpu._keep
    rx = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC
    rw = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE
    # The I-view is the model's own buffer.  (mem_write on Unicorn-owned pages costs
    # ~65 us as it drops every translation of the page; a buffer write costs nothing.)
    u.mem_map_ptr(layout.TEXT_BASE, m.text_size, rx, _ptr(m.iviews[i], keep))
    u.mem_map_ptr(layout.TEXT_ALIAS, m.text_size, rw, _ptr(m.dside_text, m.keep))
    u.mem_map_ptr(layout.DATA_BASE, layout.DATA_SIZE, rw, _ptr(m.data, m.keep))
    u.mem_map_ptr(layout.PERCPU_BASE, len(m.percpu), rw, _ptr(m.percpu, m.keep))
    u.mem_map_ptr(layout.stack_top(i) - layout.STACK_SIZE, layout.STACK_SIZE, rw,
                  _ptr(cpu.stack, keep))
    # Unicorn boots at EL1 but leaves SCR_EL3.RW/NS and HCR_EL2.RW clear, which makes
    # every ERET to EL1 an illegal exception return (PSTATE.IL set).  Real firmware
    # sets them; so do we.
    u.cpr_write(3, 6, 1, 1, 0, u.cpr_read(3, 6, 1, 1, 0) | (1 << 10) | 1)
    u.cpr_write(3, 4, 1, 1, 0, u.cpr_read(3, 4, 1, 1, 0) | (1 << 31))
    text_end = layout.TEXT_BASE + m.text_size - 1
    if m.fastpath:  # the same hooks, compiled (fastpath.py)
        cpu.kind_at = fastpath.KindTable(layout.TEXT_BASE, m.text_size // 4,
                                         m.static_kinds.items())
        fastpath.attach(m, cpu, u, layout.TEXT_BASE, text_end, Stop.VISIBLE, KEY_REGS)
    else:
        cpu.kind_at = dict(m.static_kinds)
        on_code = cpu.on_code = _code_hook(cpu, m.iviews[i])

        def code_hook(lo: int, hi: int) -> None:
            emulator.add_hook(u, uc_mod.UC_HOOK_CODE, on_code, lo, hi)
            cpu.hooked.update(range(lo, hi + 1, 4))

        cpu.code_hook = code_hook  # (the static kinds' hooks come as their code runs)
        emulator.add_hook(u, uc_mod.UC_HOOK_BLOCK, _block_hook(m, cpu, on_code),
                          layout.TEXT_BASE, text_end)
    cfg = m.fetch_config
    emulator.add_mrs_hook(u, _mrs_hook(cpu, cfg.ctr_el0_of(i), cfg.sanitised_ctr_el0,
                                       read_ctr_sites(m.image)))
    return cpu


def hook_code(c: Cpu, addr: int) -> None:
    """Make the code hook see ``addr`` (its kind is set in ``c.kind_at`` by the caller)."""
    c.code_hook(addr, addr + 3)


# -- the CPU's own hooks (called from inside emu_start) ---------------------------------
def own_private(c: Cpu, iview: bytearray, addr: int) -> bool:
    """Whether the MEMORY word at ``addr`` is a plain load or store (``isa.plain_address``)
    wholly inside one of ``c``'s private ranges, with the registers it has now: then it
    is no visible operation (``Machine.set_private``; ``_fastpath.c``'s ``own_private``
    is its twin)."""
    off = addr - layout.TEXT_BASE
    plan = plain_address(int.from_bytes(iview[off:off + 4], "little"))
    if plan is None:
        return False
    read = c.regs.read
    rn, rm, nbytes = plan[0], plan[1], plan[5]
    ea = plain_ea(plan, read(XREG[rn]), read(XREG[rm]) if 0 <= rm < 31 else 0)
    return owns(c, ea, nbytes)


def owns(c: Cpu, ea: int, nbytes: int) -> bool:
    """Whether [ea, ea + nbytes) is wholly inside one of ``c``'s private ranges
    (``Machine.set_private``, with private data on)."""
    return any(lo <= ea and ea + nbytes <= hi for lo, hi in c.private)


def _code_hook(c: Cpu, iview: bytearray) -> emulator.HookFn:
    """The hook on visible addresses: stop before a visible operation (but a plain
    access to the CPU's private data: ``own_private``)."""
    kind_at, stop, visible, memory = c.kind_at, c.stop, Stop.VISIBLE, OpKind.MEMORY

    def on_code(handle: int, addr: int, size: int, key: int) -> None:
        if addr == c.skip:
            c.skip = -1
            return
        try:
            kind = kind_at[addr]
            if kind:
                if kind is memory and c.private and own_private(c, iview, addr):
                    return
                c.pc = addr
                c.reason = visible
                stop()
        except BaseException as e:  # a ctypes callback must not raise
            c.hook_error = e
            stop()

    return on_code


def _block_hook(m: Machine, c: Cpu, on_code: emulator.HookFn) -> emulator.HookFn:
    """The ground truth: every block of code as it starts (cut where the run stops),
    and the instruction budget: the run stops (``Stop.NONE``) at the first block that
    would take it past ``m.budget`` instructions since its start.

    **Code hooked as it first runs.**  Unicorn walks the list of every code hook of
    the instance at each hooked instruction, skip or stop: with a hook for each run of
    visible instructions in the kernels' text (about 120), hooking only what runs made
    ``jump_label_nosync`` 4% faster.  So the visible instructions of a block are hooked
    when the block first runs: a block whose start and size were not seen before
    (``Cpu.verified``) and that holds an address of ``kind_at`` without a hook gets its
    hooks, its translation dropped, and the run stops before it (``Stop.HOOKED``,
    nothing logged or counted), to run again from it (``execute._run``) through the new
    translation.  A single step (``Cpu.stepping``, ``count`` = 1) hooks the block and
    runs on: its one instruction is the one it steps, which the hook lets through
    anyway.  Hooks added for kinds that appear later (``hook_code``) come at once, as
    before.

    A block that starts at a hooked address gets the code hook's verdict here
    (``on_code``): a run stopped in the block hook does not call the code hook there
    (Unicorn calls no hook once a stop is requested), a callback less at about half
    the stops.  The log is the same: the block is logged, then cut away where the run
    stopped, as when the code hook stops it."""
    stop, kind_at, hooked, verified = c.stop, c.kind_at, c.hooked, c.verified
    rehook = Stop.HOOKED

    def on_block(handle: int, addr: int, size: int, key: int) -> None:
        if verified.get(addr) != size:
            try:
                missing = [a for a in range(addr, addr + size, 4)
                           if a in kind_at and a not in hooked]
                if missing:
                    for lo, hi in ranges(missing):
                        c.code_hook(lo, hi)
                    c.remove_cache(addr, addr + size)
                    if not c.stepping:  # (the PC register holds addr)
                        c.reason = rehook
                        stop()
                        return
                else:
                    verified[addr] = size
            except BaseException as e:  # a ctypes callback must not raise
                c.hook_error = e
                stop()
                return
        c.log.append((m.step_no, addr, addr + size))
        left = c.left - (size >> 2)
        c.left = left
        if left < 0:
            stop()
        elif addr in kind_at and addr != c.skip and not c.stepping:
            on_code(handle, addr, size, key)

    return on_block


def read_ctr_sites(image: Image) -> frozenset[int]:
    """The addresses of the kernel's ``read_ctr`` (a local label ``read_ctr`` at an
    ``MRS ..., CTR_EL0``): Linux's macro, whose alternative reads the system-wide safe
    value on a machine with mismatched cache types."""
    return frozenset(s.addr for key, s in image.symbols.items()
                     if key.rpartition(":")[2] == "read_ctr" and not s.is_global)


def _mrs_hook(c: Cpu, ctr: int, sanitised: int, sites: frozenset[int]) -> emulator.SysHookFn:
    """MRS: CTR_EL0 reads the CPU's cache type as it advertises it, or at a ``read_ctr``
    site the system-wide safe one (``FetchConfig.ctr_el0_of``, ``sanitised_ctr_el0``);
    other registers run as they are."""
    write = c.regs.write
    pc_at = c.uc.reg_read
    sites = sites if ctr != sanitised else frozenset()  # alike: the same value

    def on_mrs(reg: int, op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
        if op0 == 3 and op1 == 3 and crn == 0 and crm == 0 and op2 == 1:  # CTR_EL0
            try:
                value = sanitised if sites and pc_at(A.UC_ARM64_REG_PC) in sites else ctr
                write(reg, value)
            except BaseException as e:  # a ctypes callback must not raise
                c.hook_error = e
                c.stop()
            return 1
        return 0

    return on_mrs


def ranges(addrs: Sequence[int]) -> list[tuple[int, int]]:
    """Group sorted word addresses into inclusive [first, last byte] runs."""
    out: list[tuple[int, int]] = []
    for a in addrs:
        if out and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], a + 3)
        else:
            out.append((a, a + 3))
    return out
