"""The machine: several AArch64 CPUs, one ``unicorn.Uc`` each, sharing the D-side.

Memory (``layout``): every CPU maps the same host buffers for the text's writable
alias, the shared data and the per-CPU areas (``mem_map_ptr``), its own private stack,
and its own I-view of the text, read and executed at the text's address.  The I-views
belong to the fetch model (``memory.FetchModel``); the machine keeps Unicorn's
translated code coherent with them: whenever an I-view word changes, the CPU's
translations of it are dropped (``ctl_remove_cache``) before it runs again.

A CPU runs freely between visible operations (``isa.OpKind``): a code hook on the
addresses whose current instruction is visible stops it *before* the instruction, and
the scheduler decides who performs the next one.  Data accesses that name a text
address reach the D-side: stores through the write-protection hook, loads by
presenting the D-side bytes for the one load and stopping right after it.

Exceptions are modelled as on hardware: BRK, undefined instructions, SVC and IRQs
write ELR_EL1 and SPSR_EL1 (and ESR_EL1 for the synchronous ones: the Arm ARM leaves
ESR_ELx unchanged for IRQs), mask DAIF, enter EL1h at VBAR_EL1 plus the vector offset,
and the guest returns with ``ERET``.  Exception entry and ERET are context
synchronization events: each forces a catch-up of the CPU's I-view.
"""

from __future__ import annotations

import array
import ctypes
import enum
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import unicorn as uc_mod
from unicorn import arm64_const as A

from . import emulator, layout, trace
from .asm import Image
from .findings import Event, EventKind, Finding, OracleName
from .interrupts import InterruptController
from .isa import OpKind, classify, is_cmodx
from .memory import FetchConfig, FetchModel, ModelError, Snapshot
from .schedule import Decision, DecisionKind, InvalidDecision

__all__ = ["CpuState", "Event", "EventKind", "Finding", "GuestError", "Machine"]

# The binding does not re-export its error type for type checkers.
UcError: type[Exception] = uc_mod.UcError  # type: ignore[attr-defined]
_Uc: Any = uc_mod.Uc  # type: ignore[attr-defined]
UNTIL = 0xFFFF_FFFF_FFFF_FFFC  # an address never reached: runs end by hooks or count
PSTATE_I = 0x80
ESR_IL = 1 << 25
EC_UNKNOWN, EC_SVC64, EC_BRK64 = 0x00, 0x15, 0x3C
EXCP_UDEF, EXCP_SWI, EXCP_BKPT = 1, 2, 7  # QEMU's exception numbers seen by UC_HOOK_INTR
# Xn register ids of Unicorn (X29, X30 are not contiguous with X0..X28).
XREG = [A.UC_ARM64_REG_X0 + i for i in range(29)] + [A.UC_ARM64_REG_X29,
                                                     A.UC_ARM64_REG_X30, A.UC_ARM64_REG_XZR]


class GuestError(Exception):
    """A scenario asked the machine for something impossible (bad symbol, bad CPU)."""


class CpuState(enum.Enum):
    RUNNABLE = "runnable"
    OFF = "off"  # not started, or wrote GIC_CPU_OFF
    FAULTED = "faulted"  # stopped by a finding (fault, torn word, liveness, die)


class _Stop(enum.IntEnum):
    NONE = 0  # the instruction budget ran out
    VISIBLE = 1
    EXCEPTION = 2
    HALT = 3
    TEXT = 4  # a data access to a text address: redone in text mode
    DIE = 5


class Cpu:
    """One CPU: its Unicorn instance and what the scheduler needs to know about it."""

    __slots__ = (
        "_keep",
        "exc",
        "hook_error",
        "index",
        "irq_masked",
        "kind_at",
        "last_cse",
        "log",
        "on_code",
        "pc",
        "read_ctx",
        "read_fix",
        "read_pc",
        "read_regs",
        "read_spsr",
        "reason",
        "regs",
        "remove_cache",
        "restore",
        "skip",
        "stack",
        "start",
        "state",
        "stop",
        "text_read_mode",
        "uc",
        "write_spsr",
    )

    def __init__(self, index: int, uc: Any) -> None:
        self.index = index
        self.uc = uc
        self.state = CpuState.OFF
        self.pc = 0  # stopped before the instruction here
        self.skip = -1  # the hooked address to let through once when resuming
        self.reason = _Stop.NONE
        self.exc: tuple[int, int, int] | None = None  # (ESR, ELR, executed-through) pending
        self.irq_masked = True
        self.last_cse = 0  # step of this CPU's last context synchronization event
        self.kind_at: dict[int, OpKind] = {}  # every hooked address -> its current kind
        # Ground truth, in order: (step, start, end) for code run, (step, ~word, value)
        # for an I-view change; start/end are addresses, ~word is negative.
        self.log: list[tuple[int, int, int]] = []
        # (buffer, offset, bytes) to put back after a data access to text is redone.
        self.read_fix: list[tuple[bytearray, int, bytes]] = []
        self.read_pc = 0
        self.read_ctx: Any = None
        self.text_read_mode = False
        self.stack = bytearray(layout.STACK_SIZE)
        self.start = emulator.starter(uc)
        self.stop = emulator.stopper(uc)
        self.remove_cache = emulator.cache_remover(uc)  # ctl_remove_cache, one C call
        self.restore = emulator.context_restorer(uc)  # context_restore, one C call
        self.regs = emulator.register_access(uc)  # reg_read/reg_write, one C call each
        self.write_spsr = emulator.cp_writer(uc, 3, 0, 4, 0, 0)
        self.on_code: emulator.HookFn = _no_hook
        self.read_regs = emulator.register_reader(uc, _KEY_REGS)
        self.read_spsr = emulator.cp_reader(uc, 3, 0, 4, 0, 0)
        self.hook_error: BaseException | None = None
        self._keep: list[Any] = []


@dataclass(frozen=True)
class MachineState:
    """A saved machine state (see Machine.save)."""

    contexts: list[Any]
    data: bytes
    percpu: bytes
    stacks: list[bytes]
    cpus: list[tuple[CpuState, int, tuple[int, int, int] | None, bool, int, int]]
    model: Snapshot
    gic: tuple[int, ...]
    step_no: int
    events: int
    findings: tuple[Finding, ...]
    stopped: bool
    text_stores: tuple[tuple[int, int, int, int, int], ...]


def _ptr(buf: bytearray, keep: list[Any]) -> int:
    c = (ctypes.c_char * len(buf)).from_buffer(buf)
    keep.append(c)
    return ctypes.addressof(c)


class Machine:
    """N CPUs running one linked image under the fetch model.

    Create it once and reuse it: ``seal()`` after the scenario set it up records the
    baseline, and ``reset()`` returns to it cheaply (context restore, buffer copies,
    targeted ``ctl_remove_cache``) instead of rebuilding the Unicorn instances.
    """

    def __init__(self, image: Image, ncpus: int, fetch: FetchConfig | None = None, *,
                 budget: int = 200_000, cmodx_oracle: bool = True) -> None:
        if not 1 <= ncpus <= layout.MAX_CPUS:
            raise GuestError(f"ncpus must be 1..{layout.MAX_CPUS}, not {ncpus}")
        if image.text_base != layout.TEXT_BASE or image.data_base != layout.DATA_BASE:
            raise GuestError("the image must be linked at layout.TEXT_BASE/DATA_BASE")
        self.image = image
        self.ncpus = ncpus
        self.fetch_config = fetch or FetchConfig()
        self.budget = budget
        self.cmodx_oracle = cmodx_oracle
        # Whole-word stores to text, in order: (step, cpu, word, old value, new value).
        self.text_stores: list[tuple[int, int, int, int, int]] = []
        line = max(layout.PAGE, self.fetch_config.iline, self.fetch_config.dline)
        self.text_size = max(line, -(-len(image.text) // line) * line)
        if self.text_size > layout.TEXT_MAX or len(image.data) > layout.DATA_SIZE:
            raise GuestError("the image is larger than the memory map allows")
        text = image.text + bytes(self.text_size - len(image.text))
        self._keep: list[Any] = []
        self.dside_text = bytearray(text)
        self.data = bytearray(layout.DATA_SIZE)
        self.data[:len(image.data)] = image.data
        self._data_extent = -(-len(image.data) // 64) * 64
        self.percpu = bytearray(layout.PERCPU_SIZE * ncpus)
        self.iviews = [bytearray(text) for _ in range(ncpus)]
        self.model = FetchModel(self.fetch_config, text, ncpus,
                                dside=memoryview(self.dside_text), iviews=self.iviews)
        self.gic = InterruptController(ncpus)
        self.step_no = 0
        self.events: list[Event] = []
        self.findings: list[Finding] = []
        self.stopped = False  # a finding ended the run
        self._ctr = self.fetch_config.ctr_el0
        self._static_kinds = self._visible_addresses()
        self._has_wfi = OpKind.WFI in self._static_kinds.values()
        self._fixed_kinds: dict[int, OpKind] = {}  # kinds set by the machine, not the text
        self._fetch_points: set[int] = set()  # text addresses ever touched by a store
        self._new_fetch_points: list[int] = []
        self._runnable: list[int] = []
        self.cpus = [self._make_cpu(i) for i in range(ncpus)]
        self._baseline: MachineState | None = None
        self._baseline_model_initial = False  # reset() may use FetchModel.reset()
        self._initial_kinds: dict[int, OpKind] = {}  # fetch point -> kind in the initial text
        self._initial_words: list[int] | None = None  # the text as words (ground_truth)

    # -- construction ------------------------------------------------------------------
    def _visible_addresses(self) -> dict[int, OpKind]:
        kinds: dict[int, OpKind] = {}
        for addr in self.image.insn_addrs():
            off = addr - layout.TEXT_BASE
            kind = classify(int.from_bytes(self.dside_text[off:off + 4], "little")).kind
            if kind is not OpKind.INVISIBLE:
                kinds[addr] = kind
        return kinds

    def _make_cpu(self, i: int) -> Cpu:
        u: Any = _Uc(uc_mod.UC_ARCH_ARM64, uc_mod.UC_MODE_ARM)
        cpu = Cpu(i, u)
        keep = cpu._keep
        rx = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC
        rw = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE
        # The I-view is the model's own buffer.  (mem_write on Unicorn-owned pages costs
        # ~65 us as it drops every translation of the page; a buffer write costs nothing.)
        u.mem_map_ptr(layout.TEXT_BASE, self.text_size, rx, _ptr(self.iviews[i], keep))
        u.mem_map_ptr(layout.TEXT_ALIAS, self.text_size, rw, _ptr(self.dside_text, self._keep))
        u.mem_map_ptr(layout.DATA_BASE, layout.DATA_SIZE, rw, _ptr(self.data, self._keep))
        u.mem_map_ptr(layout.PERCPU_BASE, len(self.percpu), rw, _ptr(self.percpu, self._keep))
        u.mem_map_ptr(layout.stack_top(i) - layout.STACK_SIZE, layout.STACK_SIZE, rw,
                      _ptr(cpu.stack, keep))
        u.mmio_map(layout.GIC_BASE, layout.PAGE, self._gic_read, cpu, self._gic_write, cpu)
        # Unicorn boots at EL1 but leaves SCR_EL3.RW/NS and HCR_EL2.RW clear, which makes
        # every ERET to EL1 an illegal exception return (PSTATE.IL set).  Real firmware
        # sets them; so do we.
        u.cpr_write(3, 6, 1, 1, 0, u.cpr_read(3, 6, 1, 1, 0) | (1 << 10) | 1)
        u.cpr_write(3, 4, 1, 1, 0, u.cpr_read(3, 4, 1, 1, 0) | (1 << 31))
        text_end = layout.TEXT_BASE + self.text_size - 1
        alias_end = layout.TEXT_ALIAS + self.text_size - 1
        cpu.kind_at = dict(self._static_kinds)
        cpu.on_code = self._code_hook(cpu)
        for lo, hi in _ranges(sorted(self._static_kinds)):
            emulator.add_hook(u, uc_mod.UC_HOOK_CODE, cpu.on_code, lo, hi)
        emulator.add_hook(u, uc_mod.UC_HOOK_BLOCK, self._block_hook(cpu), layout.TEXT_BASE,
                          text_end)
        # Loads from the text need the D-side's bytes only where a store made them differ
        # from the I-view: a read hook is added per touched word (_install_fetch_points),
        # so literal pools and other untouched text cost no callback.
        u.hook_add(uc_mod.UC_HOOK_MEM_WRITE_PROT, self._on_text_write, cpu,
                   layout.TEXT_BASE, text_end)
        u.hook_add(uc_mod.UC_HOOK_MEM_WRITE, self._on_alias_write, cpu,
                   layout.TEXT_ALIAS, alias_end)
        u.hook_add(uc_mod.UC_HOOK_INTR, self._on_intr, cpu)
        emulator.add_mrs_hook(u, self._mrs_hook(cpu))
        return cpu

    # -- scenario set-up ---------------------------------------------------------------
    def addr(self, where: str | int) -> int:
        if isinstance(where, int):
            return where
        try:
            return self.image.addr(where)
        except KeyError as e:
            raise GuestError(str(e.args[0]) if e.args else f"unknown symbol {where!r}") from None

    def start(self, cpu: int, entry: str | int, *args: int) -> None:
        """Make ``cpu`` start at ``entry`` with ``args`` in X0..X7, returning to cpu_off."""
        if self._baseline is not None:
            raise GuestError("start() after seal(): set CPUs up before sealing the machine")
        if not 0 <= cpu < self.ncpus:
            raise GuestError(f"CPU{cpu} does not exist (the machine has {self.ncpus})")
        if len(args) > 8:
            raise GuestError("at most 8 arguments (X0..X7)")
        c = self.cpus[cpu]
        u = c.uc
        for i, value in enumerate(args):
            u.reg_write(XREG[i], value & (2**64 - 1))
        u.reg_write(A.UC_ARM64_REG_SP, layout.stack_top(cpu))
        u.reg_write(A.UC_ARM64_REG_TPIDR_EL1, layout.percpu_base(cpu))
        if "cpu_off" in self.image.symbols:
            u.reg_write(A.UC_ARM64_REG_X30, self.image.addr("cpu_off"))
        if "vectors" in self.image.symbols:
            u.reg_write(A.UC_ARM64_REG_VBAR_EL1, self.image.addr("vectors"))
        c.pc = self.addr(entry)
        c.state = CpuState.RUNNABLE
        self._states_changed()

    def set_register(self, cpu: int, name: str, value: int) -> None:
        """Set a register (``x0``..``x30``, ``sp``, ``vbar_el1``, ``elr_el1``...) before seal()."""
        if self._baseline is not None:
            raise GuestError("set_register() after seal(): set CPUs up before sealing")
        self.cpus[cpu].uc.reg_write(_register(name), value & (2**64 - 1))

    def add_halt(self, addr: int) -> None:
        """Make reaching ``addr`` switch a CPU off, registers untouched (litmus threads)."""
        if self._baseline is not None:
            raise GuestError("add_halt() after seal()")
        self._fixed_kinds[addr] = OpKind.HALT
        for c in self.cpus:
            if addr not in c.kind_at:
                emulator.add_hook(c.uc, uc_mod.UC_HOOK_CODE, c.on_code, addr, addr + 3)
            c.kind_at[addr] = OpKind.HALT
            c.remove_cache(addr, addr + 4)

    def set_fetch_scope(self, cpu: int, addrs: Iterable[int]) -> None:
        """Declare every text address ``cpu`` can ever fetch (a pruning hint for search).

        Fetching a modified word outside the scope is reported as a "fetch-scope"
        finding: the hint was wrong and the search may have missed outcomes.
        """
        if self._baseline is not None:
            raise GuestError("set_fetch_scope() after seal()")
        self.model.scopes[cpu] = frozenset(a - layout.TEXT_BASE for a in addrs)

    def read(self, addr: int, size: int) -> bytes:
        buf, off = self._buffer(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        """Write guest memory from the host (set-up only: no model bookkeeping)."""
        if layout.TEXT_BASE <= addr < layout.TEXT_BASE + self.text_size:
            raise GuestError("write the text through the model, not from the host")
        buf, off = self._buffer(addr, len(data))
        buf[off:off + len(data)] = data
        if buf is self.data:  # saved states must cover what set-up wrote
            self._data_extent = max(self._data_extent, -(-(off + len(data)) // 64) * 64)

    def read_u32(self, where: str | int) -> int:
        return int.from_bytes(self.read(self.addr(where), 4), "little")

    def read_u64(self, where: str | int) -> int:
        return int.from_bytes(self.read(self.addr(where), 8), "little")

    def _buffer(self, addr: int, size: int) -> tuple[bytearray, int]:
        regions = ((layout.DATA_BASE, self.data), (layout.PERCPU_BASE, self.percpu),
                   (layout.TEXT_ALIAS, self.dside_text), (layout.TEXT_BASE, self.dside_text))
        for base, buf in regions:
            if base <= addr and addr + size <= base + len(buf):
                return buf, addr - base
        raise GuestError(f"{addr:#x}+{size} is not host-accessible shared memory")

    def seal(self) -> None:
        """Record the baseline: every started CPU poised at its entry point.

        A CPU's first stretch of code is its first decision, not run here: it may fetch
        words that another CPU's first operation modifies.
        """
        self.step_no = 0
        self._states_changed()
        self._baseline = self.save()
        m = self.model
        self._baseline_model_initial = not m.touched and not any(
            c.invalid or c.pending or c.changed for c in m.cpus)

    def reset(self) -> None:
        """Back to the sealed baseline, keeping the Unicorn instances and translations."""
        if self._baseline is None:
            raise GuestError("reset() before seal()")
        # A finished run's result keeps its logs, events and findings: start new lists.
        for c in self.cpus:
            c.log = []
        self.events = []
        self.findings = []
        if not self._baseline_model_initial:
            self.load(self._baseline)
            return
        # The model's own reset puts back only the words this run touched (a restore
        # copies every CPU's whole I-cache), and fetch points get their initial kinds.
        base = layout.TEXT_BASE
        for c, words in zip(self.cpus, self.model.reset(), strict=True):
            remove = c.remove_cache
            for w in words:  # an I-view word changes only where stores touched it:
                remove(base + w, base + w + 4)  # a fetch point, whose kind is set below
        kinds = self._initial_kinds
        for addr in self._fetch_points:
            kind = kinds.get(addr)
            if kind is None:
                kind = kinds[addr] = self._kind_for(self.cpus[0], addr - layout.TEXT_BASE)
            for c in self.cpus:
                c.kind_at[addr] = kind
        self.load(self._baseline, model=False)

    def _forget_view(self, c: Cpu, words: Iterable[int]) -> None:
        remove = c.remove_cache
        for w in words:
            addr = layout.TEXT_BASE + w
            remove(addr, addr + 4)
            if addr in c.kind_at:
                c.kind_at[addr] = self._kind_for(c, w)

    # -- saving and restoring whole states (for exhaustive search) -----------------------
    def save(self) -> MachineState:
        """Everything a run can change, so that load() can come back here.

        Shared memory is saved up to the end of the image's data: nothing in the project
        uses the free shared memory beyond it.
        """
        return MachineState(
            [c.uc.context_save() for c in self.cpus], bytes(self.data[:self._data_extent]),
            bytes(self.percpu), [bytes(c.stack) for c in self.cpus],
            [(c.state, c.pc, c.exc, c.irq_masked, len(c.log), c.last_cse) for c in self.cpus],
            self.model.snapshot(), self.gic.state(), self.step_no, len(self.events),
            tuple(self.findings), self.stopped, tuple(self.text_stores))

    def load(self, st: MachineState, *, model: bool = True) -> None:
        """Back to ``st``.  The ground-truth logs and events are history, not state: they
        are cut to their length at ``st``, which is this state's history only when the
        machine has not run another branch since; replay the path for a history.
        ``model=False``: the caller has already put the fetch model back (reset)."""
        if model:
            for c, words in zip(self.cpus, self.model.restore(st.model), strict=True):
                self._forget_view(c, words)
            self._refresh_fetch_points()
        self.data[:self._data_extent] = st.data
        self.percpu[:] = st.percpu
        for c, ctx, stack, (state, pc, exc, masked, loglen, cse) in zip(
                self.cpus, st.contexts, st.stacks, st.cpus, strict=True):
            c.restore(ctx)
            c.stack[:] = stack
            c.state, c.pc, c.exc, c.irq_masked, c.last_cse = state, pc, exc, masked, cse
            del c.log[loglen:]
        # State, not history: a depth-first search loads states of other branches, so a
        # truncation would keep another branch's entries.
        self.text_stores[:] = st.text_stores
        self.gic.set_state(st.gic)
        self.step_no = st.step_no
        for c in self.cpus:
            c.read_fix = []
        del self.events[st.events:]
        self.findings[:] = st.findings
        self.stopped = st.stopped
        self._states_changed()

    def state_key(self) -> bytes:
        """A digest of everything that can affect the rest of a run or its final state.

        The ground-truth log and the step counter are history, not state: two paths that
        reach the same key continue identically.
        """
        h = hashlib.blake2b(digest_size=16)
        base = self._baseline
        for i, c in enumerate(self.cpus):
            h.update(repr((c.state.value, c.pc, c.exc, c.irq_masked, c.read_spsr())).encode())
            h.update(c.read_regs())
            # Stacks and per-CPU areas rarely change: compare (memcmp) before hashing.
            if base is None or c.stack != base.stacks[i]:
                h.update(c.stack)
        h.update(self.data[:self._data_extent])
        if base is None or self.percpu != base.percpu:
            h.update(self.percpu)
        h.update(self.model.state_key())
        if self.cmodx_oracle:  # what the CMODX oracle will judge at each CPU's next fetches
            h.update(repr([sorted({(w, o, n) for st, cpu, w, o, n in self.text_stores
                                   if st > c.last_cse and cpu != c.index})
                           for c in self.cpus]).encode())
        h.update(repr((self.gic.state(), self.stopped,
                       [f.signature() for f in self.findings])).encode())
        return h.digest()

    # -- what the scheduler may choose -------------------------------------------------
    @property
    def done(self) -> bool:
        return self.stopped or (not self.steppable() and not self.irq_choices())

    def steppable(self) -> list[int]:
        """CPUs that can perform their next operation now (do not mutate the list)."""
        if not self._has_wfi:
            return self._runnable
        return [i for i in self._runnable if self._can_step(self.cpus[i])]

    def _can_step(self, c: Cpu) -> bool:
        if c.state is not CpuState.RUNNABLE:
            return False
        # A CPU at WFI sleeps until an interrupt is pending (masked or not).
        return (not self._has_wfi or c.exc is not None or self.gic.pending[c.index] != 0
                or c.kind_at.get(c.pc) is not OpKind.WFI)

    def _states_changed(self) -> None:
        self._runnable = [c.index for c in self.cpus if c.state is CpuState.RUNNABLE]

    def irq_choices(self) -> list[int]:
        gic = self.gic.pending
        return [c.index for c in self.cpus if gic[c.index] and not c.irq_masked
                and c.state is CpuState.RUNNABLE and c.exc is None]

    def pending_kind(self, cpu: int) -> OpKind:
        """The kind of the operation ``cpu`` performs next (for strategies)."""
        c = self.cpus[cpu]
        if c.exc is not None:
            return OpKind.ERET  # an exception entry: a context synchronization event
        kind = c.kind_at.get(c.pc)
        return kind if kind is not None else OpKind.INVISIBLE

    def spinning(self, cpu: int) -> bool:
        """Whether ``cpu`` waits in a spin loop (its next operation is YIELD or WFE)."""
        return self.pending_kind(cpu) in (OpKind.YIELD, OpKind.WFE)

    def model_choices(self, compact: bool = False) -> list[Decision]:
        """Memory-model choices that can change an outcome now.

        ``compact``: fills are refills (evict if valid, then fill) and there are no bare
        evictions; the same I-view histories are reachable with fewer states, which
        exhaustive exploration uses.
        """
        m = self.model
        out: list[Decision] = []
        for c in self.cpus:
            if c.state is not CpuState.RUNNABLE:
                continue
            i = c.index
            if m.catch_up_would_change(i):
                out.append(Decision(DecisionKind.CATCH_UP, i))
            fills = m.refill_choices(i) if compact else m.fill_choices(i)
            for w, from_dside in fills:
                out.append(Decision(DecisionKind.FILL_DSIDE if from_dside else DecisionKind.FILL,
                                    i, w))
            if not compact:
                for w in m.evict_choices(i):
                    out.append(Decision(DecisionKind.EVICT, i, w))
        if any(c.state is CpuState.RUNNABLE for c in self.cpus):
            for line in m.write_back_choices():
                out.append(Decision(DecisionKind.WRITE_BACK, -1, line))
        return out

    # -- performing decisions -----------------------------------------------------------
    def apply(self, d: Decision, index: int = -1) -> None:
        """Perform one decision; ``InvalidDecision`` if it is not enabled now."""
        if self.stopped:
            raise InvalidDecision(index, d, "the run has already stopped")
        kind = d.kind
        if kind is _STEP and 0 <= d.cpu < self.ncpus:  # the common case, first
            c = self.cpus[d.cpu]
            if c.state is _RUNNABLE and (not self._has_wfi or self._can_step(c)):
                self.step_no += 1
                self._step(c)
                if c.state is not _RUNNABLE:
                    self._states_changed()
                return
        if kind is not DecisionKind.WRITE_BACK and not 0 <= d.cpu < self.ncpus:
            raise InvalidDecision(index, d, f"no CPU{d.cpu}")
        self.step_no += 1
        if kind is DecisionKind.STEP:
            c = self.cpus[d.cpu]
            if not self._can_step(c):
                self.step_no -= 1
                raise InvalidDecision(index, d, f"CPU{d.cpu} cannot step ({c.state.value})")
            self._step(c)
            if c.state is not CpuState.RUNNABLE:
                self._states_changed()
        elif kind is DecisionKind.IRQ:
            if d.cpu not in self.irq_choices():
                self.step_no -= 1
                raise InvalidDecision(index, d, f"CPU{d.cpu} has no IRQ it can take")
            self._take_irq(self.cpus[d.cpu])
            self._states_changed()
        else:
            self._apply_model(d, index)

    def _apply_model(self, d: Decision, index: int) -> None:
        m, kind = self.model, d.kind
        try:
            if kind is DecisionKind.CATCH_UP:
                if not m.catch_up_would_change(d.cpu):
                    raise ModelError("the catch-up would change nothing")
                self._catch_up(self.cpus[d.cpu], "chosen")
                return
            if kind is DecisionKind.WRITE_BACK:
                m.write_back(d.addr)
                self._event(-1, EventKind.WRITE_BACK, layout.TEXT_BASE + d.addr)
            elif kind is DecisionKind.EVICT:
                m.evict(d.cpu, d.addr)
                self._event(d.cpu, EventKind.EVICT, layout.TEXT_BASE + d.addr)
            else:
                from_dside = kind is DecisionKind.FILL_DSIDE
                m.refill(d.cpu, d.addr, from_dside)  # a valid word is evicted first
                self._event(d.cpu, EventKind.FILL, layout.TEXT_BASE + d.addr,
                            int.from_bytes(m.cpus[d.cpu].icache[d.addr:d.addr + 4], "little"),
                            "from D-side" if from_dside else "from PoU")
        except (ModelError, IndexError) as e:
            self.step_no -= 1
            raise InvalidDecision(index, d, str(e)) from None

    def _step(self, c: Cpu) -> None:
        if c.exc is not None:
            esr, elr, _ = c.exc
            c.exc = None
            vector = self._enter(c, 0x000, esr, elr)
            if c.state is CpuState.RUNNABLE:
                self._continue(c, vector)
            return
        pc = c.pc
        kind = c.kind_at.get(pc, _INVISIBLE)
        if kind is _FETCH:
            if self.cmodx_oracle and self._cmodx_violation(c, pc):
                return
            scope = self.model.scopes[c.index]
            if scope is not None and pc - layout.TEXT_BASE not in scope:
                self._finding(c, OracleName.FETCH_SCOPE, f"CPU{c.index} fetches modified code at "
                              f"{self.image.symbolize(pc)}, outside its declared fetch "
                              "scope: the search may have pruned outcomes", pc)
                return
        if kind <= 4:  # INVISIBLE, MEMORY, ERET, DAIF, FETCH: the emulator executes it
            if kind is _ERET:
                self._catch_up(c, "ERET")
                self._event(c.index, EventKind.ERET, pc)
            self._run(c, pc)
            if (kind == 2 or kind == 3) and c.state is CpuState.RUNNABLE:
                c.irq_masked = bool(c.regs.read(A.UC_ARM64_REG_PSTATE) & PSTATE_I)
            return
        if kind is OpKind.HALT:
            c.state = CpuState.OFF
            self._event(c.index, EventKind.HALT, pc)
            return
        if kind is OpKind.TORN:
            word = self.model.fetch(c.index, pc - layout.TEXT_BASE)
            self._finding(c, OracleName.TORN_WORD, f"CPU{c.index} executes a torn instruction word "
                          f"{word:#010x} at {self.image.symbolize(pc)}", pc, (word,))
            return
        c.log.append((self.step_no, pc, pc + 4))
        if kind is OpKind.ISB:
            self._catch_up(c, "ISB")
        elif kind is OpKind.DC or kind is OpKind.IC:
            self._cache_op(c, pc)
        self._continue(c, pc + 4)

    def _cmodx_violation(self, c: Cpu, pc: int) -> bool:
        """The CMODX oracle, at a CPU's fetch of a word that stores have touched.

        The word is concurrently modified for this CPU if another CPU stored to it after
        this CPU's last context synchronization event; the architecture then only
        promises "old or new" when both are in the CMODX set (B, BL, B.cond, CB(N)Z,
        TB(N)Z, NOP, BRK, SVC, HVC, SMC, ISB).
        """
        w = pc - layout.TEXT_BASE
        for step, cpu, word, old, new in reversed(self.text_stores):
            if step <= c.last_cse:
                break
            if word != w or cpu == c.index or (is_cmodx(old) and is_cmodx(new)):
                continue
            ran = self.model.fetch(c.index, w)
            self._finding(c, OracleName.CMODX_VIOLATION, f"CPU{c.index} executes {ran:#010x} at "
                          f"{self.image.symbolize(pc)} while CPU{cpu} modifies it from "
                          f"{old:#010x} to {new:#010x}, and not both are instructions the "
                          "architecture allows to be modified concurrently", pc, (old, new))
            return True
        return False

    def _cache_op(self, c: Cpu, pc: int) -> None:
        info = classify(self.model.fetch(c.index, pc - layout.TEXT_BASE))
        va = c.regs.read(XREG[info.rt]) if info.rt != 31 else 0
        off = self._text_offset(va)
        m = self.model
        if info.op == "ialluis":
            m.ic_ialluis()
        elif info.op == "iallu":
            m.ic_iallu(c.index)
        elif off is None:
            return  # maintenance of a data address: no effect on fetches
        elif info.op == "ivau":
            m.ic_ivau(off)
        elif info.op == "ivac":
            return  # invalidating the D-side to the PoC would lose data: not modelled
        else:  # cvau, cvac, civac, cvap, cvadp all clean at least to the PoU
            m.dc_cvau(off)
        self._event(c.index, EventKind.IC if info.kind is OpKind.IC else EventKind.DC,
                    va, detail=info.op)

    def _text_offset(self, va: int) -> int | None:
        for base in (layout.TEXT_BASE, layout.TEXT_ALIAS):
            if base <= va < base + self.text_size:
                return va - base
        return None

    def _take_irq(self, c: Cpu) -> None:
        elr = c.pc + 4 if c.kind_at.get(c.pc) is OpKind.WFI else c.pc
        self._event(c.index, EventKind.IRQ, c.pc)
        vector = self._enter(c, 0x080, None, elr)
        if c.state is CpuState.RUNNABLE:
            self._continue(c, vector)

    def _enter(self, c: Cpu, offset: int, esr: int | None, elr: int) -> int:
        """Exception entry to EL1h; returns the vector address."""
        read, write = c.regs.read, c.regs.write
        pstate = read(A.UC_ARM64_REG_PSTATE)
        base = {0b0101: 0x200, 0b0100: 0x000, 0b0000: 0x400}.get(pstate & 0xF)
        vbar = read(A.UC_ARM64_REG_VBAR_EL1)
        if base is None or vbar == 0:
            self._finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} takes an exception "
                          f"with no vector table (VBAR_EL1={vbar:#x}, PSTATE={pstate:#x})", elr)
            return elr
        write(A.UC_ARM64_REG_ELR_EL1, elr)
        c.write_spsr(pstate)
        if esr is not None:
            write(A.UC_ARM64_REG_ESR_EL1, esr)
        write(A.UC_ARM64_REG_PSTATE, (pstate & 0xF000_0000) | 0x3C5)
        c.irq_masked = True
        vector: int = vbar + base + offset
        self._event(c.index, EventKind.EXCEPTION, elr,
                    esr if esr is not None else -1, f"vector {vector:#x}")
        self._catch_up(c, "exception entry")
        return vector

    def _kind_for(self, c: Cpu, w: int) -> OpKind:
        """What the code hook must do at text word ``w`` given ``c``'s I-view now."""
        addr = layout.TEXT_BASE + w
        fixed = self._fixed_kinds.get(addr)
        if fixed is not None:
            return fixed
        if self.model.is_torn(c.index, w):
            return OpKind.TORN
        kind = classify(int.from_bytes(self.iviews[c.index][w:w + 4], "little")).kind
        if kind is OpKind.INVISIBLE and w in self.model.touched:
            # A fetch of a word that stores touched is a schedule point: catch-ups,
            # fills and evictions may happen just before it.
            return OpKind.FETCH
        return kind

    def _install_fetch_points(self) -> None:
        for w in self._new_fetch_points:
            addr = layout.TEXT_BASE + w
            new = addr not in self._fetch_points
            self._fetch_points.add(addr)
            for c in self.cpus:
                if new:  # any access of up to 16 bytes that overlaps the word
                    c.uc.hook_add(uc_mod.UC_HOOK_MEM_READ, self._on_text_read, c,
                                  max(layout.TEXT_BASE, addr - 15), addr + 3)
                if addr not in c.kind_at:
                    emulator.add_hook(c.uc, uc_mod.UC_HOOK_CODE, c.on_code, addr, addr + 3)
                    c.remove_cache(addr, addr + 4)
                c.kind_at[addr] = self._kind_for(c, w)
        self._new_fetch_points = []

    def _refresh_fetch_points(self) -> None:
        """After the model state was replaced (reset, load): kinds follow it again."""
        for addr in self._fetch_points:
            w = addr - layout.TEXT_BASE
            for c in self.cpus:
                c.kind_at[addr] = self._kind_for(c, w)

    def _catch_up(self, c: Cpu, why: str) -> None:
        if why != "chosen":  # ISB, exception entry, ERET: context synchronization events
            c.last_cse = self.step_no
        changed = self.model.catch_up(c.index)
        if not changed:
            return
        u, view, step = c.uc, self.iviews[c.index], self.step_no
        for w in changed:
            addr = layout.TEXT_BASE + w
            word = int.from_bytes(view[w:w + 4], "little")
            kind = self._kind_for(c, w)
            if addr not in c.kind_at:
                emulator.add_hook(u, uc_mod.UC_HOOK_CODE, c.on_code, addr, addr + 3)
            if kind is OpKind.WFI:
                self._has_wfi = True
            c.kind_at[addr] = kind
            c.remove_cache(addr, addr + 4)
            c.log.append((step, ~w, word))
            self._event(c.index, EventKind.CATCH_UP, addr, word, why)

    # -- running a CPU ---------------------------------------------------------------------
    def _continue(self, c: Cpu, pc: int) -> None:
        """Run ``c`` from ``pc`` to its next visible operation (which may be at ``pc``)."""
        kind = c.kind_at.get(pc)
        if kind is not None and kind is not OpKind.INVISIBLE:
            c.pc = pc
            return
        self._run(c, pc)

    def _run(self, c: Cpu, pc: int) -> None:
        """Execute the instruction at ``pc`` and run on to the next visible operation."""
        u = c.uc
        while True:
            c.skip = pc if pc in c.kind_at else -1
            c.reason = _NONE
            try:
                c.start(pc, UNTIL, self.budget)
            except UcError as e:
                where = u.reg_read(A.UC_ARM64_REG_PC)
                self._cut(c, where)
                self._finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} faults at "
                              f"{self.image.symbolize(where)}: {e}", where)
                return
            if c.hook_error is not None:
                raise RuntimeError("internal error in a code hook") from c.hook_error
            reason = c.reason
            if reason is _VISIBLE:  # the common case: _cut() inlined
                log = c.log
                step, start, stop = log[-1]
                end = c.pc
                if start == end:
                    log.pop()
                elif start < end < stop:
                    log[-1] = (step, start, end)
                return
            if reason is _Stop.TEXT:
                # A data access to a text address was stopped at its hook.  The emulator
                # may already have done part of it (a store lands in the I-view buffer,
                # a load's register is written, its base writeback is not), so undo
                # that, go back to the registers before it, and single-step it in text
                # mode: loads see the D-side bytes, stores go to the D-side through the
                # model, and the I-view is put back right after.
                pc = c.read_pc
                self._restore_text_reads(c)
                u.context_restore(c.read_ctx)
                self._cut(c, pc)
                c.skip = pc if pc in c.kind_at else -1
                c.text_read_mode = True
                try:
                    c.start(pc, UNTIL, 1)
                except UcError as e:
                    self._restore_text_reads(c)
                    self._finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} faults at "
                                  f"{self.image.symbolize(pc)}: {e}", pc)
                    return
                finally:
                    c.text_read_mode = False
                self._restore_text_reads(c)
                self._install_fetch_points()
                pc += 4
                self._cut(c, pc)
                kind = c.kind_at.get(pc)
                if kind is not None and kind is not OpKind.INVISIBLE:
                    c.pc = pc
                    return
                continue
            if reason is _Stop.EXCEPTION:
                assert c.exc is not None
                c.pc = c.exc[1] if c.exc[2] == c.exc[1] + 4 else c.exc[2] - 4
                self._cut(c, c.exc[2])
                return
            if reason is _Stop.HALT or reason is _Stop.DIE:
                return
            where = u.reg_read(A.UC_ARM64_REG_PC)
            self._cut(c, where)
            self._finding(c, OracleName.LIVENESS, f"CPU{c.index} ran {self.budget} instructions "
                          f"without a visible operation, at {self.image.symbolize(where)}",
                          where)
            return

    def _cut(self, c: Cpu, end: int) -> None:
        """The last code block ran only up to ``end``."""
        log = c.log
        if log:
            step, start, stop = log[-1]
            if 0 <= start <= end < stop:
                if start == end:
                    log.pop()
                else:
                    log[-1] = (step, start, end)

    def _restore_text_reads(self, c: Cpu) -> None:
        for buf, off, old in reversed(c.read_fix):
            buf[off:off + len(old)] = old
            if buf is not self.dside_text:
                c.remove_cache(layout.TEXT_BASE + off, layout.TEXT_BASE + off + len(old))
        c.read_fix = []

    def _finding(self, c: Cpu | None, oracle: str, message: str, addr: int = -1,
                 words: tuple[int, ...] = ()) -> None:
        cpu = -1 if c is None else c.index
        self.findings.append(Finding(oracle, message, cpu, addr, words, self.step_no))
        if c is not None:
            c.state = CpuState.FAULTED
        self.stopped = True

    def _event(self, cpu: int, kind: EventKind, addr: int = -1, value: int = -1,
               detail: str = "") -> None:
        self.events.append(Event(self.step_no, cpu, kind, addr, value, detail))

    # -- Unicorn hooks (called from inside emu_start) ----------------------------------
    def _code_hook(self, c: Cpu) -> emulator.HookFn:
        """The hook on visible addresses: stop before a visible operation."""
        kind_at, stop, visible = c.kind_at, c.stop, _Stop.VISIBLE

        def on_code(handle: int, addr: int, size: int, key: int) -> None:
            if addr == c.skip:
                c.skip = -1
                return
            try:
                if kind_at[addr]:
                    c.pc = addr
                    c.reason = visible
                    stop()
            except BaseException as e:  # a ctypes callback must not raise
                c.hook_error = e
                stop()

        return on_code

    def _block_hook(self, c: Cpu) -> emulator.HookFn:
        """The ground truth: every block of code as it starts (cut where the run stops)."""

        def on_block(handle: int, addr: int, size: int, key: int) -> None:
            c.log.append((self.step_no, addr, addr + size))

        return on_block

    def _on_text_read(self, u: Any, access: int, addr: int, size: int, value: int,
                      c: Cpu) -> None:
        off = addr - layout.TEXT_BASE
        view, dside = self.iviews[c.index], self.dside_text
        if view[off:off + size] == dside[off:off + size]:
            return  # e.g. a literal pool: the I-view holds what the D-side holds
        if c.text_read_mode:  # present the D-side bytes to this one load
            c.read_fix.append((view, off, bytes(view[off:off + size])))
            view[off:off + size] = dside[off:off + size]
            return
        self._stop_for_text(u, c)

    def _on_text_write(self, u: Any, access: int, addr: int, size: int, value: int,
                       c: Cpu) -> bool:
        if not layout.TEXT_BASE <= addr < layout.TEXT_BASE + self.text_size:
            return False  # a genuine protection fault: let it fault
        off = addr - layout.TEXT_BASE
        # With mem_map_ptr memory, returning True does not keep the store out of the
        # buffer (measured): remember the I-view bytes to put them back.
        view = self.iviews[c.index]
        c.read_fix.append((view, off, bytes(view[off:off + size])))
        if c.text_read_mode:
            self._text_store(c, off, size, value)
        else:
            self._stop_for_text(u, c)
        return True

    def _stop_for_text(self, u: Any, c: Cpu) -> None:
        if c.reason is not _Stop.TEXT:  # the first access of the instruction
            c.read_ctx = u.context_save()  # the registers before it
            c.read_pc = c.regs.read(A.UC_ARM64_REG_PC)
            c.reason = _Stop.TEXT
            u.emu_stop()

    def _on_alias_write(self, u: Any, access: int, addr: int, size: int, value: int,
                        c: Cpu) -> None:
        off = addr - layout.TEXT_ALIAS
        if c.text_read_mode:
            self._text_store(c, off, size, value)
            return
        points = self._fetch_points
        if c.reason is not _Stop.TEXT and all(layout.TEXT_BASE + w in points
                                               for w in range(off & ~3, off + size, 4)):
            # Every word it touches has its hooks on every CPU already (an earlier run
            # touched it): only kinds change, so the store is performed here and the
            # CPU runs on.  The hook runs before Unicorn writes the same bytes.
            self._text_store(c, off, size, value)
            self._install_fetch_points()
            return
        # Redo the store in text mode (after its fetch points exist): undo this attempt.
        c.read_fix.append((self.dside_text, off, bytes(self.dside_text[off:off + size])))
        self._stop_for_text(u, c)

    def _text_store(self, c: Cpu, off: int, size: int, value: int) -> None:
        value &= (1 << (8 * size)) - 1
        words = range(off & ~3, off + size, 4)
        fresh = [w for w in words if w not in self.model.touched]
        old = [int.from_bytes(self.dside_text[w:w + 4], "little") for w in words]
        self.model.store(off, value.to_bytes(size, "little"))
        for w, before in zip(words, old, strict=True):
            if off <= w and w + 4 <= off + size:  # a store of part of a word is left to
                after = int.from_bytes(self.dside_text[w:w + 4], "little")  # the torn oracle
                self.text_stores.append((self.step_no, c.index, w, before, after))
        self._new_fetch_points += fresh
        self._event(c.index, EventKind.TEXT_STORE, layout.TEXT_BASE + off, value, f"size {size}")

    def _on_intr(self, u: Any, intno: int, c: Cpu) -> None:
        pc = c.regs.read(A.UC_ARM64_REG_PC)
        if intno == EXCP_BKPT:
            word = self.model.fetch(c.index, pc - layout.TEXT_BASE)
            c.exc = (ESR_IL | EC_BRK64 << 26 | (word >> 5) & 0xFFFF, pc, pc + 4)
        elif intno == EXCP_UDEF:
            c.exc = (ESR_IL | EC_UNKNOWN << 26, pc, pc + 4)
        elif intno == EXCP_SWI:  # QEMU has already stepped PC past the SVC
            word = self.model.fetch(c.index, pc - 4 - layout.TEXT_BASE)
            c.exc = (ESR_IL | EC_SVC64 << 26 | (word >> 5) & 0xFFFF, pc, pc)
        else:
            self._finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} raises unsupported exception "
                          f"{intno} at {self.image.symbolize(pc)}", pc)
            c.reason = _Stop.DIE
            u.emu_stop()
            return
        c.reason = _Stop.EXCEPTION
        u.emu_stop()

    def _mrs_hook(self, c: Cpu) -> emulator.SysHookFn:
        """MRS: CTR_EL0 reads the machine's cache type; other registers run as they are."""
        write, ctr = c.regs.write, self._ctr

        def on_mrs(reg: int, op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
            if op0 == 3 and op1 == 3 and crn == 0 and crm == 0 and op2 == 1:  # CTR_EL0
                try:
                    write(reg, ctr)
                except BaseException as e:  # a ctypes callback must not raise
                    c.hook_error = e
                    c.stop()
                return 1
            return 0

        return on_mrs

    def _gic_read(self, u: Any, offset: int, size: int, c: Cpu) -> int:
        if offset == layout.GIC_CLOCK:
            return self.step_no  # one timebase for the trace and the guest's records
        value, access = self.gic.read(c.index, offset)
        if access.kind == "ack" and access.ipi != layout.GIC_SPURIOUS:
            self._event(c.index, EventKind.IPI_ACK, value=access.ipi)
        return value

    def _gic_write(self, u: Any, offset: int, size: int, value: int, c: Cpu) -> None:
        try:
            access = self.gic.write(c.index, offset, value)
        except IndexError as e:
            self._finding(c, OracleName.GUEST_FAULT, f"CPU{c.index}: {e}")
            c.reason = _Stop.DIE
            u.emu_stop()
            return
        if access.kind == "send":
            self._event(c.index, EventKind.IPI_SEND, value=access.ipi,
                        detail="to " + ",".join(f"CPU{t}" for t in access.targets))
        elif access.kind == "off":
            pc = u.reg_read(A.UC_ARM64_REG_PC)
            self._cut(c, pc + 4)
            c.state = CpuState.OFF
            c.reason = _Stop.HALT
            self._event(c.index, EventKind.HALT, pc)
            u.emu_stop()
        elif access.kind == "die":
            pc = u.reg_read(A.UC_ARM64_REG_PC)
            self._cut(c, pc + 4)
            self._finding(c, OracleName.KERNEL_DIE, f"CPU{c.index}: kernel died (reason "
                          f"{access.value:#x}) at {self.image.symbolize(pc)}", pc)
            c.reason = _Stop.DIE
            u.emu_stop()

    # -- ground truth ---------------------------------------------------------------------
    def logs(self) -> list[list[tuple[int, int, int]]]:
        """The raw ground-truth logs of this run (see trace.py); reset() starts new ones."""
        return [c.log for c in self.cpus]

    def ground_truth(self) -> list[list[trace.Entry]]:
        """Per CPU, every executed instruction: (global step, address, word).

        The same as ``trace.expand`` on the logs, faster (oracles ask for it after
        every run): the words come from a list, not from bytes."""
        if self._initial_words is None:
            words = array.array("I", self.model.initial)
            if sys.byteorder == "big":
                words.byteswap()
            self._initial_words = words.tolist()
        base = layout.TEXT_BASE
        out = []
        for log in self.logs():
            view = self._initial_words.copy()
            seq: list[trace.Entry] = []
            append = seq.append
            for step, start, end in log:
                if start < 0:  # the CPU's I-view changed at a catch-up
                    view[~start >> 2] = end
                    continue
                i = (start - base) >> 2
                for addr in range(start, end, 4):
                    append((step, addr, view[i]))
                    i += 1
            out.append(seq)
        return out

    def trace_digest(self) -> str:
        return trace.digest(self.ground_truth())

    def instructions(self) -> int:
        """Instructions executed so far in this run."""
        return trace.instructions(self.logs())

    def config_dict(self) -> dict[str, Any]:
        return {"ncpus": self.ncpus, "cache": self.fetch_config.cache.value,
                "iline": self.fetch_config.iline,
                "iallu_broadcast": self.fetch_config.iallu_broadcast}

    def registers(self, cpu: int, names: Sequence[str]) -> dict[str, int]:
        """Read registers by name (``x0``..``x30``, ``w0``.., ``sp``, ``elr_el1``...)."""
        u = self.cpus[cpu].uc
        out = {}
        for name in names:
            value = int(u.reg_read(_register(name)))
            out[name] = value & 0xFFFF_FFFF if name.lower().startswith("w") else value
        return out


_KEY_REGS = [*XREG[:31], A.UC_ARM64_REG_SP, A.UC_ARM64_REG_PSTATE, A.UC_ARM64_REG_ELR_EL1,
             A.UC_ARM64_REG_ESR_EL1, A.UC_ARM64_REG_VBAR_EL1, A.UC_ARM64_REG_TPIDR_EL1]
_SPECIAL_REGS = {"sp": A.UC_ARM64_REG_SP, "lr": A.UC_ARM64_REG_X30, "fp": A.UC_ARM64_REG_X29,
                 "elr_el1": A.UC_ARM64_REG_ELR_EL1, "esr_el1": A.UC_ARM64_REG_ESR_EL1,
                 "vbar_el1": A.UC_ARM64_REG_VBAR_EL1, "tpidr_el1": A.UC_ARM64_REG_TPIDR_EL1,
                 "nzcv": A.UC_ARM64_REG_NZCV, "pstate": A.UC_ARM64_REG_PSTATE,
                 "pc": A.UC_ARM64_REG_PC}
_INVISIBLE, _ERET, _FETCH = OpKind.INVISIBLE, OpKind.ERET, OpKind.FETCH
_NONE, _VISIBLE = _Stop.NONE, _Stop.VISIBLE
_STEP, _RUNNABLE = DecisionKind.STEP, CpuState.RUNNABLE


def _register(name: str) -> int:
    key = name.lower()
    if key[:1] in ("x", "w") and key[1:].isdigit() and int(key[1:]) <= 30:
        return XREG[int(key[1:])]
    if key in _SPECIAL_REGS:
        return _SPECIAL_REGS[key]
    raise GuestError(f"unknown register {name!r}")


def _no_hook(handle: int, addr: int, size: int, key: int) -> None:
    return None


def _ranges(addrs: Sequence[int]) -> list[tuple[int, int]]:
    """Group sorted word addresses into inclusive [first, last byte] runs."""
    out: list[tuple[int, int]] = []
    for a in addrs:
        if out and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], a + 3)
        else:
            out.append((a, a + 3))
    return out
