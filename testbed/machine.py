"""The machine: several AArch64 CPUs, one ``unicorn.Uc`` each, sharing the D-side.

``Machine`` is the public face: the memory map (``layout``), the scenario's set-up, the
decisions the scheduler may choose and their application, saved states and the ground
truth.  Each job behind it has its own module, as functions taking the machine (and the
CPU) they work on:

- ``cpu``: one CPU, its Unicorn instance on the shared buffers, its own hooks (stop
  before a visible operation, log each block, ``CTR_EL0``), its registers;
- ``textside``: data accesses to the text, fetch points, catch-ups and translated-code
  coherence with the I-views, cache maintenance, the CMODX oracle;
- ``exceptions``: exception entry, IRQs, ``ERET``, the interrupt controller's MMIO page;
- ``execute``: what a STEP decision does, one visible operation and on to the next;
- ``snapshot``: ``save``, ``load``, ``state_key``, the reset to the sealed baseline;
- ``trace``: the ground-truth log of each CPU, expanded and digested.

Memory: every CPU maps the same host buffers for the text's writable alias, the shared
data and the per-CPU areas, its own private stack, and its own I-view of the text,
read and executed at the text's address.  The I-views belong to the fetch model
(``memory.FetchModel``); the machine keeps Unicorn's translated code coherent with them.

Attributes without an underscore that the scenario API does not use (``fetch_points``,
``new_fetch_points``, ``fixed_kinds``, ``static_kinds``, ``has_wfi``, ``baseline``,
``data_extent``, ``keep``) are the state the machine's modules share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Literal

import unicorn as uc_mod
from unicorn import arm64_const as A

from . import dataside, fastpath, layout, slab, snapshot, textside, trace
from .armmem import GRANULE, ArmMemory
from .asm import Image
from .cpu import PSTATE_I, Cpu, CpuState, Stop, hook_code, new_cpu, register_id
from .cpu import XREG as XREG
from .exceptions import EC_BRK64 as EC_BRK64
from .exceptions import EC_SVC64 as EC_SVC64
from .exceptions import EC_UNKNOWN as EC_UNKNOWN
from .exceptions import install_hooks as install_exception_hooks
from .execute import irq as _irq
from .execute import resume as _resume
from .execute import run_started as _run_started
from .execute import step as _step
from .fastpath import function as compiled_function
from .fastpath import wanted as wanted_fastpath
from .findings import Event, EventKind, Finding, OracleName, make_event
from .interrupts import InterruptController
from .isa import MemKind, OpKind, classify
from .memory import FetchConfig, FetchModel, ModelError
from .schedule import Decision, DecisionKind, InvalidDecision
from .snapshot import MachineState as MachineState
from .textside import catch_up, install_fetch_points, refresh_fetch_points

__all__ = ["MEMORY_MODELS", "CpuState", "Event", "EventKind", "Finding", "GuestError",
           "Machine"]

MEMORY_MODELS = ("sc", "arm")

_STEP, _RUNNABLE = DecisionKind.STEP, CpuState.RUNNABLE
# What a CPU may still fetch, and fetch from its I-view (``Machine.set_fetch_liveness``).
Liveness = tuple[frozenset[int], frozenset[int]]
# ``FetchModel.choices``'s codes (memory.CHOICE_*), in order
_CHOICE_KINDS = (DecisionKind.CATCH_UP, DecisionKind.FILL, DecisionKind.FILL_DSIDE,
                 DecisionKind.EVICT, DecisionKind.COMPLETE, DecisionKind.WRITE_BACK)
_ARM_KINDS = frozenset({DecisionKind.READ, DecisionKind.FAIL, DecisionKind.PROMISE})
# Decisions that change the fetch model alone, never the Arm model's messages and views
# (a chosen catch-up is not a context synchronization event: no B2): they keep
# ``Machine.arm_key`` (tests/test_independence.py checks it against a fresh key).
ARM_FREE = frozenset({DecisionKind.CATCH_UP, DecisionKind.FILL, DecisionKind.FILL_DSIDE,
                      DecisionKind.EVICT, DecisionKind.WRITE_BACK, DecisionKind.COMPLETE})


class GuestError(Exception):
    """A scenario asked the machine for something impossible (bad symbol, bad CPU)."""


class Machine:
    """N CPUs running one linked image under the fetch model.

    Create it once and reuse it: ``seal()`` after the scenario set it up records the
    baseline, and ``reset()`` returns to it cheaply (context restore, buffer copies,
    targeted ``ctl_remove_cache``) instead of rebuilding the Unicorn instances.
    """

    def __init__(self, image: Image, ncpus: int, fetch: FetchConfig | None = None, *,
                 budget: int = 200_000, cmodx_oracle: bool = True, memory: str = "sc",
                 promises: bool | str = False, fastpath: bool | None = None,
                 fold: int = 0, private: bool = True) -> None:
        if not 1 <= ncpus <= layout.MAX_CPUS:
            raise GuestError(f"ncpus must be 1..{layout.MAX_CPUS}, not {ncpus}")
        if image.text_base != layout.TEXT_BASE or image.data_base != layout.DATA_BASE:
            raise GuestError("the image must be linked at layout.TEXT_BASE/DATA_BASE")
        if memory not in MEMORY_MODELS:
            raise GuestError(f"memory must be one of {', '.join(MEMORY_MODELS)}, not {memory!r}")
        self.image = image
        self.ncpus = ncpus
        # The compiled hooks (testbed/fastpath.py): None uses them when they were built
        try:
            self.fastpath = wanted_fastpath(fastpath)
        except ValueError as e:
            raise GuestError(str(e)) from None
        # The data side: None is sequentially consistent ("sc"), else the Arm model's
        # messages and views (testbed/dataside.py drives it).
        self.memory = memory
        self.arm: ArmMemory | None = ArmMemory(ncpus) if memory == "arm" else None
        # Promises (P1-P3 of armmem.py): ``True`` or "first" offers them only before any
        # CPU did anything else (litmus tests), "anytime" at every state (scenarios: their
        # stores are too far in for a solo run from the start to reach; dataside.py).
        mode = "first" if promises is True else (promises or "")
        if mode not in ("", "first", "anytime"):
            raise GuestError(f"promises must be 'first' or 'anytime', not {promises!r}")
        self.promises = bool(mode) and self.arm is not None
        self.anytime = self.promises and mode == "anytime"
        self.promise_phase = self.promises  # promise-first: until any other decision
        self.invalid = ""  # why this run is not an execution of the model ("": it is)
        # The Arm model's key for its current state, when known (``snapshot.state_key``):
        # decisions of the fetch model alone (``ARM_FREE``) keep it, any other drops it.
        self.arm_key: bytes | None = None
        # The saved core (``snapshot.Core``) the machine's core parts equal, if known:
        # ``save`` shares it and ``load`` skips it; decisions of the fetch model alone
        # keep it (``ARM_FREE``, with nothing parked and no promises), any other drops it.
        self.core_held: snapshot.Core | None = None
        # The core's part of the state key computed since the core last changed, before
        # any save made a Core of it: (key_generation, digest); ``save`` gives it the Core.
        self.core_key_pending: tuple[int, bytes] | None = None
        self.live_for: snapshot.Core | None = None  # the core update_liveness last saw
        self.key_generation = 0  # counts changes of what state keys digest (history)
        self._liveness: Callable[[Machine, Cpu], Liveness | None] | None = None
        self._within_live: dict[tuple[int, int], tuple[frozenset[int], frozenset[int]]] = {}
        # The saved Arm model state (``snapshot``) the current one equals, if known.
        self.arm_saved: object | None = None
        self.solo_stores: list[tuple[int, int, bytes]] | None = None  # a solo run's stores
        self.solo_cache: dict[tuple[int, bytes], list[tuple[int, bytes]]] = {}
        self.solo_steps = 64  # how far a solo run looks for stores to promise
        # Folded steps and parked spins (execute.py): a schedule records whether it ran
        # with them and at which level (config "fold": true is 1, 2 is 2; execute.FOLD),
        # as its decisions differ.  ``mutations`` counts the
        # decisions (and reads of the interrupt controller) that may change what a
        # spinning CPU reads; a parked CPU waits for it to move.
        if type(fold) is bool:
            fold = int(fold)
        if fold not in (0, 1, 2):
            raise GuestError(f"fold must be 0, 1 or 2, not {fold!r}")
        self.fold = fold
        self.mutations = 0
        # Data private to one CPU (``set_private``): per CPU, its ranges (lo, hi, name).
        # With ``private`` a plain access of the owner wholly inside one is no visible
        # operation; every other CPU's access to one is a finding either way.  A
        # schedule records it (config "private": true), as its decisions differ.
        self.private = private
        self.private_ranges: list[list[tuple[int, int, str]]] = [[] for _ in range(ncpus)]
        self.walked = 0  # decisions a walker took (scheduler._walker, walker.walk), all runs
        # scheduler._walker's compiled function, once known (False: none here)
        self.walk_function: Callable[..., int] | Literal[False] | None = None
        self._parked = False  # whether a CPU is parked (states_changed)
        self.fetch_config = fetch or FetchConfig()
        self.budget = budget
        self.cmodx_oracle = cmodx_oracle
        # Whole-word stores to text, in order: (step, cpu, word, old value, new value).
        self.text_stores: list[tuple[int, int, int, int, int]] = []
        # snapshot._cmodx_pending's memo: (text stores, each CPU's last CSE) -> its part
        self.cmodx_memo: dict[tuple[object, ...], list[list[tuple[int, int, int]]]] = {}
        # The decision of each fetch-model choice (``FetchModel.choices``) made so far:
        # at most a few per text word and CPU.
        self.choice_decisions: dict[tuple[int, int, int], Decision] = {}
        line = max(layout.PAGE, self.fetch_config.iline, self.fetch_config.dline)
        self.text_size = max(line, -(-len(image.text) // line) * line)
        if self.text_size > layout.TEXT_MAX or len(image.data) > layout.DATA_SIZE:
            raise GuestError("the image is larger than the memory map allows")
        text = image.text + bytes(self.text_size - len(image.text))
        self.keep: list[Any] = []  # ctypes views of the mapped buffers
        self.dside_text = bytearray(text)
        self.data = bytearray(layout.DATA_SIZE)
        self.data[:len(image.data)] = image.data
        self.data_extent = -(-len(image.data) // 64) * 64
        self.percpu = bytearray(layout.PERCPU_SIZE * ncpus)
        self.iviews = [bytearray(text) for _ in range(ncpus)]
        self.model = FetchModel(self.fetch_config, text, ncpus,
                                dside=memoryview(self.dside_text), iviews=self.iviews)
        self.model.deferred = memory == "arm"  # rule 9: maintenance completes at a DSB
        # A run's instruction count (trace.instructions), and the model's choices
        # (Machine.model_choices): in C with the compiled path
        self._count_instructions = (compiled_function("instructions") if self.fastpath
                                    else trace.instructions)
        if self.fastpath:
            self.model.catch_up_c = compiled_function("catch_up")
            self.model.reset_c = compiled_function("model_reset")
            self.model.key_words_c = compiled_function("key_words")
            self.model.restore_c = compiled_function("restore_cpus")
            if self.arm is not None:
                self.arm.key_bytes_c = compiled_function("arm_key")
        self._fetch_choices = (partial(compiled_function("fetch_choices"), self.model)
                               if self.fastpath else self.model.choices)
        if self.arm is not None:  # rule 10: a DC may clean its line as it was earlier
            self.model.history = dataside.TextHistory(self.arm, self.model.initial)
        self.gic = InterruptController(ncpus)
        # Per CPU, whether taking an exception (SCTLR_EL1.EIS) and returning from one
        # (SCTLR_EL1.EOS) are context synchronization events (``set_exception_sync``).
        self.eis = [True] * ncpus
        self.eos = [True] * ncpus
        self.step_no = 0
        self.events: list[Event] = []
        self.findings: list[Finding] = []
        self.stopped = False  # a finding ended the run
        # Plain loads (a step of one changes nothing another CPU can read), by address
        # in the image's text; a word stores touched is not one (a fetch point).
        self.pure_loads: frozenset[int] = frozenset()
        self.static_kinds = self._visible_addresses()
        self.has_wfi = OpKind.WFI in self.static_kinds.values()
        self.fixed_kinds: dict[int, OpKind] = {}  # kinds set by the machine, not the text
        self.fetch_points: set[int] = set()  # text addresses ever touched by a store
        self.new_fetch_points: list[int] = []
        # Text addresses whose fetch is a schedule point from the start of every run
        # (``may_patch``, ``set_patched``), besides the words stores touched in this one.
        self.declared: set[int] = set()
        self._declared_by_setup: set[int] = set()
        # History (``set_history``): data the guest writes and never reads, left out of
        # state keys.  (offset in ``data``, end, name); the key's spans of ``data``.
        self.history: list[tuple[int, int, str]] = []
        self._key_spans: tuple[int, list[tuple[int, int]]] = (-1, [])
        self._history_keyed = False
        self._runnable: list[int] = []
        self.cpus = [self._make_cpu(i) for i in range(ncpus)]
        self.baseline: MachineState | None = None
        self._baseline_model_initial = False  # reset() may use FetchModel.reset()
        self._initial_kinds: dict[int, OpKind] = {}  # fetch point -> kind in the initial text
        self._initial_words: list[int] | None = None  # the text as words (ground_truth)

    # -- construction ------------------------------------------------------------------
    def _visible_addresses(self) -> dict[int, OpKind]:
        """Each visible instruction's kind, by address (and ``pure_loads``)."""
        kinds: dict[int, OpKind] = {}
        loads = []
        for addr in self.image.insn_addrs():
            off = addr - layout.TEXT_BASE
            info = classify(int.from_bytes(self.dside_text[off:off + 4], "little"))
            if info.kind is not OpKind.INVISIBLE:
                kinds[addr] = info.kind
                if info.mem is not None and info.mem.kind is MemKind.LOAD:
                    loads.append(addr)
        self.pure_loads = frozenset(loads)
        return kinds

    def _make_cpu(self, i: int) -> Cpu:
        c = new_cpu(self, i)
        install_exception_hooks(self, c)
        textside.install_hooks(self, c)
        return c

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
        if self.baseline is not None:
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
        self.states_changed()

    def set_register(self, cpu: int, name: str, value: int) -> None:
        """Set a register (``x0``..``x30``, ``sp``, ``vbar_el1``, ``elr_el1``...) before seal()."""
        if self.baseline is not None:
            raise GuestError("set_register() after seal(): set CPUs up before sealing")
        self.cpus[cpu].uc.reg_write(_register(name), value & (2**64 - 1))

    def add_halt(self, addr: int) -> None:
        """Make reaching ``addr`` switch a CPU off, registers untouched (litmus threads)."""
        if self.baseline is not None:
            raise GuestError("add_halt() after seal()")
        self.fixed_kinds[addr] = OpKind.HALT
        for c in self.cpus:
            if addr not in c.kind_at:
                hook_code(c, addr)
            c.kind_at[addr] = OpKind.HALT
            c.remove_cache(addr, addr + 4)

    def may_patch(self, where: str | int, size: int = 4) -> None:
        """Declare that text at ``where`` (``size`` bytes) may be stored to in a run.

        Its words' fetches are then schedule points from the start of every run: a CPU
        that reaches one stops before fetching it, so an interleaving in which another
        CPU patches it first is explored even when the CPU's last visible operation came
        long before (hardware may stall a CPU there as long as it likes).  A word not
        declared becomes a fetch point once a store touched it, in that run, and in the
        session's later runs (``set_patched``).
        """
        if self.baseline is not None:
            raise GuestError("may_patch() after seal(): declare patch sites in setup()")
        start = self.addr(where)
        words = {a & ~3 for a in range(start, start + max(size, 1))}
        if not all(layout.TEXT_BASE <= a < layout.TEXT_BASE + self.text_size for a in words):
            raise GuestError(f"may_patch({where!r}): not in the kernel text")
        self._declared_by_setup |= words
        self.set_patched(())

    def set_patched(self, addrs: Iterable[int]) -> None:
        """The text addresses, besides the declared ones, whose fetches are schedule
        points from the start of each run (what the session learned from earlier runs,
        or what a replayed schedule recorded)."""
        declared = self._declared_by_setup | {a & ~3 for a in addrs}
        if declared == self.declared:
            return
        self.declared = declared
        self.new_fetch_points += [a - layout.TEXT_BASE for a in declared
                                  if a not in self.fetch_points]
        install_fetch_points(self)
        self._initial_kinds.clear()
        refresh_fetch_points(self)

    def set_history(self, where: str | int, size: int) -> None:
        """Declare ``size`` bytes of shared data at ``where`` history: written by the
        guest for the host to read after the run (the perf ring and its clock), never
        read by the guest.  State keys leave history out (``snapshot.state_key``), so a
        search merges states that differ only in what was recorded there; a guest load
        from it is a guest-fault finding, so a wrong declaration cannot go unseen."""
        addr, name = self._watch_reads("set_history", "history", where, size,
                                       lambda name, addr: partial(_history_read, self,
                                                                  name, addr))
        off = addr - layout.DATA_BASE
        self.history.append((off, off + size, name))
        self.set_keyed_history(self._history_keyed)

    def set_private(self, cpu: int, where: str | int, size: int) -> None:
        """Declare ``size`` bytes of shared data or per-CPU areas at ``where`` private to
        ``cpu``: no other CPU reads or writes them (a CPU's own log, its counters).

        A plain load or store of ``cpu`` wholly inside them (``isa.plain_address``:
        not acquire, release, exclusive or atomic) is then no scheduling point: the code
        hook computes its address from the registers and lets it run, as an access to
        the CPU's own stack is (sound: an access no other CPU can observe commutes with
        every other CPU's operations).  Under the Arm model the owner's accesses there
        are not the model's (as its stack's are not: ``dataside``), and their register
        views pass through the CPU's spill view.

        Every other CPU's read or write of them is a guest-fault finding (a watch on
        each other CPU's memory accesses), so a wrong declaration cannot go unseen."""
        if self.baseline is not None:
            raise GuestError("set_private() after seal(): declare private data in setup()")
        if not (type(cpu) is int and 0 <= cpu < self.ncpus):
            raise GuestError(f"set_private({cpu!r}, ...): no CPU {cpu!r} (ncpus={self.ncpus})")
        addr = self.addr(where)
        end = addr + size if type(size) is int and size > 0 else addr
        in_data = layout.DATA_BASE <= addr < end <= layout.DATA_BASE + len(self.data)
        in_percpu = layout.PERCPU_BASE <= addr < end <= layout.PERCPU_BASE + len(self.percpu)
        if not (in_data or in_percpu):
            raise GuestError(f"set_private({cpu}, {where!r}, {size!r}): not in shared data "
                             "or the per-CPU areas")
        for other, ranges in enumerate(self.private_ranges):
            for lo, hi, name in ranges:
                if lo < end and addr < hi and other != cpu:
                    raise GuestError(f"set_private({cpu}, {where!r}, {size}): overlaps "
                                     f"{name}, private to CPU{other}")
        if len(self.private_ranges[cpu]) >= 16:  # (_fastpath.c's MAX_PRIVATE)
            raise GuestError(f"set_private({cpu}, ...): at most 16 ranges per CPU")
        name = where if isinstance(where, str) else f"{addr:#x}"
        self.private_ranges[cpu].append((addr, end, name))
        on_access = partial(_private_access, self, name, addr, cpu)
        for c in self.cpus:
            if c.index != cpu:
                c.uc.hook_add(uc_mod.UC_HOOK_MEM_READ | uc_mod.UC_HOOK_MEM_WRITE, on_access, c,
                              addr, end - 1)
        if self.private:
            c = self.cpus[cpu]
            c.private = tuple((lo, hi) for lo, hi, _ in self.private_ranges[cpu])
            if c.fast is not None:
                fastpath.set_private(c, self.iviews[cpu], XREG[:31])

    def private_bytes(self, cpu: int) -> bytes:
        """What ``cpu``'s private data holds now (``set_private``), in order."""
        out = []
        for lo, hi, _ in self.private_ranges[cpu]:
            buf, base = ((self.data, layout.DATA_BASE) if lo < layout.PERCPU_BASE
                         else (self.percpu, layout.PERCPU_BASE))
            out.append(bytes(buf[lo - base:hi - base]))
        return b"".join(out)

    def _watch_reads(self, call: str, what: str, where: str | int, size: int,
                     hook: Callable[[str, int], Callable[..., None]]) -> tuple[int, str]:
        """A range of shared data declared in set-up (``call``: the method, for errors;
        ``what``: what it declares), with ``hook(name, address)``'s callback on every
        CPU's guest reads of it; its address and name."""
        if self.baseline is not None:
            raise GuestError(f"{call}() after seal(): declare {what} in setup()")
        addr = self.addr(where)
        off = addr - layout.DATA_BASE
        if not (isinstance(size, int) and size > 0 and off >= 0
                and off + size <= len(self.data)):
            raise GuestError(f"{call}({where!r}, {size!r}): not in shared data")
        name = where if isinstance(where, str) else f"{addr:#x}"
        on_read = hook(name, addr)  # one callback: Unicorn passes each CPU as user data
        for c in self.cpus:
            c.uc.hook_add(uc_mod.UC_HOOK_MEM_READ, on_read, c, addr, addr + size - 1)
        return addr, name

    def set_exception_sync(self, cpu: int, *, entry: bool = True, exit: bool = True) -> None:
        """Whether, on ``cpu``, taking an exception (``entry``: ``SCTLR_EL1.EIS``) and
        returning from one (``exit``: ``SCTLR_EL1.EOS``) are context synchronization
        events: the CPU's instruction stream catches up with the PoU there, as at an
        ``ISB``.

        With FEAT_ExS (Armv8.5) these two bits decide it; without it both are context
        synchronizing.  Linux sets both (``INIT_SCTLR_EL1_MMU_ON`` in
        ``arch/arm64/include/asm/sysreg.h``, v6.6), which is the default here; the
        kprobes XOL argument ("the BRK exception is a context synchronization event")
        rests on ``entry``."""
        if self.baseline is not None:
            raise GuestError("set_exception_sync() after seal(): set it in setup()")
        if not 0 <= cpu < self.ncpus:
            raise GuestError(f"CPU{cpu} does not exist (the machine has {self.ncpus})")
        self.eis[cpu] = bool(entry)
        self.eos[cpu] = bool(exit)

    def watch_object(self, where: str | int, size: int) -> None:
        """Declare ``size`` bytes of shared data at ``where`` a heap object the guest may
        free with ``kfree()`` (``kernels/slab.S``), which fills it with SLUB's poison
        (``POISON_FREE``, the last byte ``POISON_END``).  A guest load of the object that
        returns the poison is a use-after-free finding: the load read the free's own
        stores, so under either data model it came after the free (``slab.poison``).

        A load that reads the object's bytes from before the free is not one, even if it
        comes later in the schedule: what it read is still the object (what KASAN would
        say depends on the allocator reusing the memory, which this machine does not)."""
        self._watch_reads("watch_object", "objects", where, size,
                          lambda name, addr: partial(_freed_read, self, name, addr,
                                                     slab.poison(size)))

    def set_keyed_history(self, keyed: bool) -> None:
        """Whether state keys digest the history too (as before it was declared): a
        search then tells apart states that differ only in what was recorded there."""
        self.key_generation += 1  # (cores' cached key parts digested the other way)
        self._key_spans = (-1, [])
        self._history_keyed = keyed
        if self.arm is not None:  # the granules wholly inside the history
            base = layout.DATA_BASE
            self.arm_key = None
            self.arm.history = frozenset() if keyed else frozenset(
                g for lo, hi, _ in self.history
                for g in range(base - (-lo // GRANULE) * GRANULE, base + hi - GRANULE + 1,
                               GRANULE))

    def key_spans(self) -> list[tuple[int, int]]:
        """The spans of ``data`` (up to ``data_extent``) a state key digests: all of it
        but the history."""
        extent, spans = self._key_spans
        if extent != self.data_extent:
            spans, at = [], 0
            for lo, hi, _ in sorted(self.history) if not self._history_keyed else ():
                if lo >= self.data_extent:
                    break
                if lo > at:
                    spans.append((at, lo))
                at = max(at, hi)
            if at < self.data_extent:
                spans.append((at, self.data_extent))
            self._key_spans = (self.data_extent, spans)
        return spans

    def set_fetch_scope(self, cpu: int, addrs: Iterable[int]) -> None:
        """Declare every text address ``cpu`` can ever fetch (a pruning hint for search).

        Fetching a modified word outside the scope is reported as a "fetch-scope"
        finding: the hint was wrong and the search may have missed outcomes.
        """
        if self.baseline is not None:
            raise GuestError("set_fetch_scope() after seal()")
        self.model.set_scope(cpu, frozenset(a - layout.TEXT_BASE for a in addrs))

    def set_fetch_liveness(self, live: Callable[[Machine, Cpu], Liveness | None]) -> None:
        """Declare, per state, the text offsets each CPU may still fetch from where it
        is: ``live(machine, cpu)`` gives (``None``: any) the words it may fetch from
        there on, and those it may fetch before its next context synchronization event
        (whose catch-up overwrites its I-view), as a function of the CPU's own state
        alone (its pc and registers); over-approximations, empty once it is switched off.
        Choices and state-key parts for other words cannot change an outcome and are
        left out (the fetch model's ``live`` and ``view_live``).  Every step is checked
        against the first set: a CPU that goes where it did not reach before is a
        "fetch-scope" finding.  A wrong declaration merges states that differ, so it is
        for code whose control flow is known (litmus tests: ``litmus_run``)."""
        if self.baseline is not None:
            raise GuestError("set_fetch_liveness() after seal()")
        self._liveness = live

    @property
    def has_fetch_liveness(self) -> bool:
        """Whether a fetch liveness was declared (``set_fetch_liveness``)."""
        return self._liveness is not None

    def update_liveness(self) -> None:
        """The fetch model's ``live`` for the current state (set_fetch_liveness): a
        function of the core, so not computed again for the core it was computed for."""
        live = self._liveness
        if live is not None:
            core = self.core_held
            if core is not None and self.live_for is core:
                return
            self.live_for = core
            both = [live(self, c) for c in self.cpus]
            self.model.live[:] = [None if b is None else b[0] for b in both]
            self.model.view_live[:] = [None if b is None else b[1] for b in both]

    def _check_liveness(self, c: Cpu, before: Liveness) -> None:
        """``c`` stepped: what it may fetch now must be part of what it might before
        (else the declaration was wrong, and states it merged may have differed)."""
        assert self._liveness is not None
        after = self._liveness(self, c)
        if after is not None:
            # Pairs of sets found within one another, by identity: a litmus test's
            # liveness memoises its sets, and equal sets of different positions would
            # be compared element by element (the values hold the sets, so that their
            # ids are not reused while they are keys).
            pair = (id(after[0]), id(before[0]))
            if pair in self._within_live:
                return
            if after[0] <= before[0]:
                if len(self._within_live) >= 1 << 16:
                    self._within_live.clear()
                self._within_live[pair] = (after[0], before[0])
                return
        self.add_finding(c, OracleName.FETCH_SCOPE, f"CPU{c.index} went on at "
                         f"{self.image.symbolize(c.pc)}, which the declared fetch "
                         "liveness did not reach from where it was: the exploration "
                         "may have merged states that differ", c.pc)

    def read(self, addr: int, size: int) -> bytes:
        buf, off = self._buffer(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        """Write guest memory from the host (set-up only: no model bookkeeping)."""
        if layout.TEXT_BASE <= addr < layout.TEXT_BASE + self.text_size:
            raise GuestError("write the text through the model, not from the host")
        buf, off = self._buffer(addr, len(data))
        buf[off:off + len(data)] = data
        self.core_changed()
        if buf is self.data:  # saved states must cover what set-up wrote
            self.data_extent = max(self.data_extent, -(-(off + len(data)) // 64) * 64)

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
        self.states_changed()
        self.baseline = self.save()
        m = self.model
        self._baseline_model_initial = not m.touched and not any(
            c.invalid or c.pending or c.changed for c in m.cpus)

    def reset(self) -> None:
        """Back to the sealed baseline, keeping the Unicorn instances and translations."""
        if self.baseline is None:
            raise GuestError("reset() before seal()")
        snapshot.reset(self, self.baseline, self._baseline_model_initial, self._initial_kinds)

    # -- saving and restoring whole states (for exhaustive search) -----------------------
    def save(self) -> MachineState:
        """Everything a run can change, so that load() can come back here."""
        return snapshot.save(self)

    def load(self, st: MachineState, *, model: bool = True) -> None:
        """Back to ``st`` (see ``snapshot.load``: logs and events are cut, not restored).
        ``model=False``: the caller has already put the fetch model back (reset)."""
        snapshot.load(self, st, model=model)

    def state_key(self) -> bytes:
        """A digest of everything that can affect the rest of a run or its final state.

        The ground-truth log and the step counter are history, not state: two paths that
        reach the same key continue identically.
        """
        return snapshot.state_key(self)

    # -- what the scheduler may choose -------------------------------------------------
    @property
    def done(self) -> bool:
        return self.stopped or (not self.steppable() and not self.irq_choices())

    @property
    def valid(self) -> bool:
        """Whether this run is an execution of the data-memory model so far: under the
        Arm model with promises, one it ends with a promise unfulfilled is not (P3); its
        final state is no outcome and its findings are none."""
        arm = self.arm
        return arm is None or (not self.invalid and (not self.promises or not any(
            t.promises for t in arm.threads)))

    def steppable(self) -> list[int]:
        """CPUs that can perform their next operation now (do not mutate the list)."""
        if not self.has_wfi:
            return self._runnable
        return [i for i in self._runnable if self._can_step(self.cpus[i])]

    def _can_step(self, c: Cpu) -> bool:
        if c.state is not CpuState.RUNNABLE or c.parked:
            return False
        # A CPU at WFI sleeps until an interrupt is pending (masked or not).
        return (not self.has_wfi or c.exc is not None or self.gic.pending[c.index] != 0
                or c.kind_at.get(c.pc) is not OpKind.WFI)

    def states_changed(self) -> None:
        self._runnable = [c.index for c in self.cpus
                          if c.state is CpuState.RUNNABLE and not c.parked]
        self._parked = any(c.parked for c in self.cpus)

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
        """Whether ``cpu`` waits in a spin loop: its next operation is YIELD or WFE, or
        (folded steps) it passed one since its last step."""
        return self.cpus[cpu].spun or self.pending_kind(cpu) in (OpKind.YIELD, OpKind.WFE)

    def model_choices(self, compact: bool = False) -> list[Decision]:
        """Memory-model choices that can change an outcome now.

        ``compact``: fills are refills (evict if valid, then fill) and there are no bare
        evictions; the same I-view histories are reachable with fewer states, which
        exhaustive exploration uses.
        """
        self.update_liveness()
        made = self.choice_decisions
        out: list[Decision] = []
        for choice in self._fetch_choices(
                [c.index for c in self.cpus if c.state is _RUNNABLE], compact):
            d = made.get(choice)
            if d is None:
                code, cpu, where = choice
                d = made[choice] = Decision(_CHOICE_KINDS[code], cpu, where)
            out.append(d)
        if self.arm is not None:
            out += self._arm_choices()
        return out

    def _arm_choices(self) -> list[Decision]:
        out = []
        for c in self.cpus:
            if c.state is not CpuState.RUNNABLE or not self._can_step(c):
                continue
            out += dataside.choices(self, c)
        if self.promise_phase:
            for c in self.cpus:
                if c.state is CpuState.RUNNABLE:
                    for k in range(len(dataside.promise_choices(self, c.index))):
                        out.append(Decision(DecisionKind.PROMISE, c.index, k))
        return out

    def core_changed(self) -> None:
        """The machine's core (``snapshot.Core``: CPUs, shared memory, the Arm model...)
        is about to change outside ``apply`` and ``load``: it no longer equals the core
        it held, and no key part computed for it holds."""
        self.core_held = None
        self.core_key_pending = None

    # -- performing decisions -----------------------------------------------------------
    def apply(self, d: Decision, index: int = -1) -> None:
        """Perform one decision; ``InvalidDecision`` if it is not enabled now."""
        if self.stopped:
            raise InvalidDecision(index, d, "the run has already stopped")
        kind = d.kind
        if kind not in ARM_FREE:
            self.arm_key = self.arm_saved = None
            self.core_changed()
        elif self._parked or (self.promises and self.promise_phase != self.anytime):
            self.core_changed()  # (it unparks every CPU, or ends the promise phase: the
            # promise check after it changes nothing else)
        if kind is _STEP and 0 <= d.cpu < self.ncpus:  # the common case, first
            c = self.cpus[d.cpu]
            if c.state is _RUNNABLE and not c.parked and (not self.has_wfi
                                                          or self._can_step(c)):
                self.step_no += 1
                live = None if self._liveness is None else self._liveness(self, c)
                if self.fold:
                    self._step_folded(c)
                else:
                    _step(self, c)
                if live is not None:
                    self._check_liveness(c, live)
                if c.state is not _RUNNABLE:
                    self.states_changed()
                if self.promises:
                    self.promise_phase = self.anytime
                    self._check_promises()
                return
        if kind is not DecisionKind.WRITE_BACK and not 0 <= d.cpu < self.ncpus:
            raise InvalidDecision(index, d, f"no CPU{d.cpu}")
        self.step_no += 1
        if kind is DecisionKind.STEP:  # (the fast path above takes every enabled step)
            c = self.cpus[d.cpu]
            self.step_no -= 1
            raise InvalidDecision(index, d, f"CPU{d.cpu} cannot step (" + (
                "parked: it spins on memory no one has written since"
                if c.parked else c.state.value) + ")")
        if self.fold:  # anything but a step may change what a spinning CPU reads
            self.mutations += 1
        if kind is DecisionKind.IRQ:
            if d.cpu not in self.irq_choices():
                self.step_no -= 1
                raise InvalidDecision(index, d, f"CPU{d.cpu} has no IRQ it can take")
            self.cpus[d.cpu].spun = False
            _irq(self, self.cpus[d.cpu])
            self.states_changed()
        elif kind in _ARM_KINDS:
            c = self.cpus[d.cpu]
            if kind is not DecisionKind.PROMISE:  # the CPU performs its access
                c.spun = False
            live = None if self._liveness is None else self._liveness(self, c)
            self._apply_arm(d, index)
            if live is not None and kind is not DecisionKind.PROMISE:
                self._check_liveness(c, live)
        else:
            self._apply_model(d, index)
        if self._parked:
            self._unpark()
        if self.promises:
            if kind is not DecisionKind.PROMISE:
                self.promise_phase = self.anytime
            self._check_promises()

    def _step_folded(self, c: Cpu) -> None:
        """A step with folded operations (execute.py): counts a mutation unless ``c``
        performs a plain load or a spin hint, and unparks every CPU when it does."""
        before = self.mutations
        pc = c.pc
        kind = c.kind_at.get(pc)
        if c.exc is not None or not (
                (kind is OpKind.MEMORY and pc in self.pure_loads
                 and pc not in self.fetch_points)
                or kind is OpKind.YIELD or kind is OpKind.WFE or kind is OpKind.SEV):
            self.mutations += 1
        c.spun = False
        _step(self, c)
        self._stepped(c, before)

    def _stepped(self, c: Cpu, before: int) -> None:
        """The end of ``_step_folded``: unpark every CPU if the step counted a mutation
        (``before``: the count before it)."""
        if self.mutations != before:
            if self._parked:
                self._unpark()
        elif c.parked:
            self.states_changed()

    def _walked(self, cpu: int, status: int, before: int, folds: int, daif: bool) -> None:
        """Finish a step the compiled walker took (``scheduler._walker``) whose run did
        not end as the common case does: it performed the start of ``apply`` and
        ``_step_folded`` and ``execute._run`` up to a run that returned ``status``, after
        ``folds`` folds; the rest is theirs (``before``: the mutation count before the
        step; ``daif``: the step was a ``DAIF`` write)."""
        c = self.cpus[cpu]
        _run_started(self, c, c.pc, status, folds)
        if daif and c.state is _RUNNABLE:  # (execute.step's end)
            c.irq_masked = bool(c.regs.read(A.UC_ARM64_REG_PSTATE) & PSTATE_I)
        self._stepped(c, before)
        if c.state is not _RUNNABLE:
            self.states_changed()

    def _unpark(self) -> None:
        for c in self.cpus:
            c.parked = False
        self.states_changed()

    def _apply_arm(self, d: Decision, index: int) -> None:
        c = self.cpus[d.cpu]
        if self.arm is None or c.state is not CpuState.RUNNABLE or not self._can_step(c):
            self.step_no -= 1
            raise InvalidDecision(index, d, f"CPU{d.cpu} cannot step or there is no Arm "
                                  "data-memory model")
        try:
            if d.kind is DecisionKind.PROMISE:
                dataside.promise(self, d.cpu, d.addr)
                return
            nxt: int | None = -1
            clean = (c.exc is None and c.kind_at.get(c.pc) is OpKind.DC
                     and d.kind is DecisionKind.READ)  # F2: a clean as of an earlier time
            if clean and d.addr not in dataside.clean_choices(self, c):
                raise dataside.ModelChoiceError(f"the DC cannot clean its line as at "
                                                f"time {d.addr}")
            if not clean:
                if c.exc is not None or c.kind_at.get(c.pc) is not OpKind.MEMORY:
                    raise dataside.ModelChoiceError("the next operation is not an access")
                nxt = dataside.access(self, c, c.pc, d.addr if d.kind is DecisionKind.READ
                                      else None, d.kind is DecisionKind.FAIL)
                if nxt is None:
                    raise dataside.ModelChoiceError("the access is not to modelled memory")
        except dataside.ModelChoiceError as e:
            self.step_no -= 1
            raise InvalidDecision(index, d, str(e)) from None
        if clean:
            _step(self, c, d.addr)
        elif nxt is not None and nxt >= 0:
            _resume(self, c, nxt)
        if c.state is not CpuState.RUNNABLE:
            self.states_changed()

    def _check_promises(self) -> None:
        """P3: a CPU that holds a promise it can never fulfil ends the run (not an
        execution: ``valid`` is false)."""
        arm = self.arm
        assert arm is not None
        for c in self.cpus:
            if arm.threads[c.index].promises and (c.state is not CpuState.RUNNABLE
                                                  or arm.dead(c.index)):
                self.stopped = True
                return

    def _apply_model(self, d: Decision, index: int) -> None:
        m, kind = self.model, d.kind
        try:
            if kind is DecisionKind.CATCH_UP:
                self.update_liveness()
                if not m.catch_up_would_change(d.cpu):
                    raise ModelError("the catch-up would change nothing")
                catch_up(self, self.cpus[d.cpu], "chosen")
                return
            if kind is DecisionKind.COMPLETE:
                what = m.describe_pending(d.cpu, d.addr)
                m.complete(d.cpu, d.addr)
                self.add_event(d.cpu, EventKind.COMPLETE, value=d.addr, detail=what)
                return
            if kind is DecisionKind.WRITE_BACK:
                m.write_back(d.addr)
                self.add_event(-1, EventKind.WRITE_BACK, layout.TEXT_BASE + d.addr)
            elif kind is DecisionKind.EVICT:
                m.evict(d.cpu, d.addr)
                self.add_event(d.cpu, EventKind.EVICT, layout.TEXT_BASE + d.addr)
            else:
                from_dside = kind is DecisionKind.FILL_DSIDE
                m.refill(d.cpu, d.addr, from_dside)  # a valid word is evicted first
                self.add_event(d.cpu, EventKind.FILL, layout.TEXT_BASE + d.addr,
                               int.from_bytes(m.cpus[d.cpu].icache[d.addr:d.addr + 4], "little"),
                               "from D-side" if from_dside else "from PoU")
        except (ModelError, IndexError) as e:
            self.step_no -= 1
            raise InvalidDecision(index, d, str(e)) from None

    # -- what a run found and did (for the machine's modules) ---------------------------
    def add_finding(self, c: Cpu | None, oracle: str, message: str, addr: int = -1,
                    words: tuple[int, ...] = ()) -> None:
        """A finding ends the run; ``c``, if given, is the CPU it stopped."""
        cpu = -1 if c is None else c.index
        self.findings.append(Finding(oracle, message, cpu, addr, words, self.step_no))
        if c is not None:
            c.state = CpuState.FAULTED
        self.stopped = True

    def add_event(self, cpu: int, kind: EventKind, addr: int = -1, value: int = -1,
                  detail: str = "") -> None:
        self.events.append(make_event(self.step_no, cpu, kind, addr, value, detail))

    # -- ground truth ---------------------------------------------------------------------
    def logs(self) -> list[list[tuple[int, int, int]]]:
        """The raw ground-truth logs of this run (see trace.py); reset() starts new ones."""
        return [c.log for c in self.cpus]

    def ground_truth(self) -> list[list[trace.Entry]]:
        """Per CPU, every executed instruction: (global step, address, word).

        The same as ``trace.expand`` on the logs, faster (oracles ask for it after
        every run): the words come from a list, not from bytes."""
        if self._initial_words is None:
            self._initial_words = trace.words(self.model.initial)
        return trace.expand_words(self._initial_words, self.logs())

    def trace_digest(self) -> str:
        return trace.digest(self.ground_truth())

    def instructions(self) -> int:
        """Instructions executed so far in this run."""
        return self._count_instructions(self.logs())

    def config_dict(self) -> dict[str, Any]:
        return {"ncpus": self.ncpus, "cache": self.fetch_config.cache.value,
                "iline": self.fetch_config.iline,
                "iallu_broadcast": self.fetch_config.iallu_broadcast,
                "memory": self.memory, **({"promises": "anytime"} if self.anytime else {}),
                **({"cpus": [p.spelled() for p in self.fetch_config.cpus]}
                   if self.fetch_config.cpus else {}),
                **({"fold": True if self.fold == 1 else self.fold} if self.fold else {}),
                **({"private": True} if self.private and any(self.private_ranges) else {})}

    def registers(self, cpu: int, names: Sequence[str]) -> dict[str, int]:
        """Read registers by name (``x0``..``x30``, ``w0``.., ``sp``, ``elr_el1``...)."""
        u = self.cpus[cpu].uc
        out = {}
        for name in names:
            value = int(u.reg_read(_register(name)))
            out[name] = value & 0xFFFF_FFFF if name.lower().startswith("w") else value
        return out


def _history_read(m: Machine, name: str, base: int, u: Any, access: int, addr: int,
                  size: int, value: int, c: Cpu) -> None:
    pc = u.reg_read(A.UC_ARM64_REG_PC)
    m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} reads {name}+{addr - base:#x} "
                  f"at {m.image.symbolize(pc)}, which is declared history (never read by "
                  "the guest, left out of state keys: Machine.set_history)", pc)
    c.reason = Stop.DIE
    u.emu_stop()


def _private_access(m: Machine, name: str, base: int, owner: int, u: Any, access: int,
                    addr: int, size: int, value: int, c: Cpu) -> None:
    pc = u.reg_read(A.UC_ARM64_REG_PC)
    verb = "writes" if access == uc_mod.UC_MEM_WRITE else "reads"
    m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} {verb} {name}+{addr - base:#x} "
                  f"at {m.image.symbolize(pc)}, which is declared private to CPU{owner} "
                  "(Machine.set_private: that CPU's plain accesses there are no scheduling "
                  "points)", pc)
    c.reason = Stop.DIE
    u.emu_stop()


def _freed_read(m: Machine, name: str, base: int, poison: bytes, u: Any, access: int,
                addr: int, size: int, value: int, c: Cpu) -> None:
    lo = addr - base
    off = addr - layout.DATA_BASE  # the bytes the load reads (dataside put the message
    got = bytes(m.data[off:off + size])  # it reads there, under the Arm model)
    if got != poison[lo:lo + size]:
        return
    pc = u.reg_read(A.UC_ARM64_REG_PC)
    m.add_finding(c, OracleName.USE_AFTER_FREE, f"CPU{c.index} reads {name}+{lo:#x} at "
                  f"{m.image.symbolize(pc)} after it was freed: it reads kfree()'s poison "
                  f"{got.hex()}", pc)
    c.reason = Stop.DIE
    u.emu_stop()


def _register(name: str) -> int:
    reg = register_id(name)
    if reg is None:
        raise GuestError(f"unknown register {name!r}")
    return reg
