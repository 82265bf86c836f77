"""Whole machine states: save, load, the state key, and the cheap reset to the baseline.

``save`` takes everything a run can change (registers, shared memory, stacks, the
fetch model, the interrupt controller, findings), ``load`` comes back to it, and
``state_key`` digests what can affect the rest of a run, so that exhaustive search
(``exploration``, ``search``) can prune states it has seen.  ``reset`` returns to the
sealed baseline cheaply: when the baseline's fetch model is the initial one, the model
puts back only the words the run touched instead of every CPU's whole I-cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import layout
from .cpu import CpuState
from .findings import Finding
from .isa import OpKind
from .memory import Snapshot
from .statehash import Bytes, digest
from .textside import forget_view, kind_for, refresh_fetch_points

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["Core", "MachineState", "content_digest", "load", "outcome_digest", "reset", "save",
           "state_key"]


@dataclass(frozen=True)
class Core:
    """What a saved state holds besides the fetch model and the run's history: the CPUs
    (registers, stacks, where and how they stand), shared memory and the per-CPU areas,
    the interrupt controller, the text's stores, the Arm model.  A decision of the fetch
    model alone (``machine.ARM_FREE``, with no CPU parked and no promises) leaves all of
    it as it was, so the states it leads to share their parent's ``Core``: ``save`` does
    not copy it again, ``load`` does not put it back when the machine still holds it
    (``Machine.core_held``), and its part of the state key is digested once."""

    contexts: list[Any]
    data: bytes
    percpu: bytes
    stacks: list[bytes]
    cpus: list[tuple[CpuState, int, tuple[int, int, int] | None, bool, int]]
    spins: list[tuple[bool, bool, tuple[object, ...] | None]]  # each Cpu's spun, parked, mark
    gic: tuple[int, ...]
    stopped: bool
    text_stores: tuple[tuple[int, int, int, int, int], ...]
    arm: tuple[object, ...] | None = None  # the Arm data-memory model's state
    promise_phase: bool = False
    invalid: str = ""
    arm_key: bytes | None = None  # Machine.arm_key at the save
    # Its part of the state key, once known: (Machine.key_generation, digest)
    key: list[tuple[int, bytes]] = field(default_factory=list, compare=False)


@dataclass(frozen=True)
class MachineState:
    """A saved machine state (see Machine.save)."""

    core: Core
    logs: tuple[int, ...]  # each CPU's log length
    model: Snapshot
    step_no: int
    events: int
    findings: tuple[Finding, ...]
    mutations: int = 0


def save(m: Machine) -> MachineState:
    """Everything a run can change, so that load() can come back here.

    Shared memory is saved up to the end of the image's data: nothing in the project
    uses the free shared memory beyond it.
    """
    core = m.core_held
    if core is None:
        pending = m.core_key_pending
        core = m.core_held = Core(
            [c.save_context() for c in m.cpus], bytes(m.data[:m.data_extent]),
            bytes(m.percpu), [bytes(c.stack) for c in m.cpus],
            [(c.state, c.pc, c.exc, c.irq_masked, c.last_cse) for c in m.cpus],
            [(c.spun, c.parked, c.mark) for c in m.cpus],
            m.gic.state(), m.stopped, tuple(m.text_stores),
            None if m.arm is None else m.arm.save(), m.promise_phase, m.invalid, m.arm_key)
        if pending is not None:  # state_key digested this core already
            core.key.append(pending)
            m.live_for = core
    st = MachineState(core, tuple(len(c.log) for c in m.cpus), m.model.snapshot(), m.step_no,
                      len(m.events), tuple(m.findings), m.mutations)
    m.arm_saved = core.arm  # the Arm model is as saved there (until a decision changes it)
    return st


def load(m: Machine, st: MachineState, *, model: bool = True) -> None:
    """Back to ``st``.  The ground-truth logs and events are history, not state: they
    are cut to their length at ``st``, which is this state's history only when the
    machine has not run another branch since; replay the path for a history.
    ``model=False``: the caller has already put the fetch model back (reset)."""
    if model and not m.model.holds(st.model):  # (a search often comes back unchanged)
        for c, words in zip(m.cpus, m.model.restore(st.model), strict=True):
            forget_view(m, c, words)  # their kinds follow the I-view
        refresh_fetch_points(m, m.model.stale)  # and the words whose status changed
    core = st.core
    if m.core_held is not core:  # (not when only the fetch model changed since)
        m.data[:m.data_extent] = core.data
        m.percpu[:] = core.percpu
        for c, ctx, stack, (state, pc, exc, masked, cse), (spun, parked, mark) in zip(
                m.cpus, core.contexts, core.stacks, core.cpus, core.spins, strict=True):
            c.restore(ctx)
            c.stack[:] = stack
            c.state, c.pc, c.exc, c.irq_masked, c.last_cse = state, pc, exc, masked, cse
            c.spun, c.parked, c.mark = spun, parked, mark
        # State, not history: a depth-first search loads states of other branches, so a
        # truncation would keep another branch's entries.
        m.text_stores[:] = core.text_stores
        m.gic.set_state(core.gic)
        m.stopped = core.stopped
        if m.arm is not None and core.arm is not None and m.arm_saved is not core.arm:
            m.arm.load(core.arm)  # (not when only the fetch model changed since st was loaded)
            m.arm_saved = core.arm
        m.arm_key = core.arm_key
        m.promise_phase = core.promise_phase
        m.invalid = core.invalid
        m.core_held = core
        m.states_changed()
    for c, loglen in zip(m.cpus, st.logs, strict=True):
        del c.log[loglen:]
        c.read_fix = []
    m.step_no = st.step_no
    del m.events[st.events:]
    m.findings[:] = st.findings
    m.mutations = st.mutations


def reset(m: Machine, baseline: MachineState, model_initial: bool,
          initial_kinds: dict[int, OpKind]) -> None:
    """Back to ``baseline``, keeping the Unicorn instances and translations.

    ``model_initial``: the baseline's fetch model is the initial one, so the model's own
    reset may put it back; ``initial_kinds`` caches each fetch point's kind in the
    initial text (filled here).
    """
    # A finished run's result keeps its logs, events and findings: start new lists.
    for c in m.cpus:
        c.log = []
    m.events = []
    m.findings = []
    if not model_initial:
        load(m, baseline)
        return
    # The model's own reset puts back only the words this run touched (a restore
    # copies every CPU's whole I-cache), and fetch points get their initial kinds.
    base = layout.TEXT_BASE
    for c, words in zip(m.cpus, m.model.reset(), strict=True):
        remove = c.remove_cache
        for w in words:  # an I-view word changes only where stores touched it:
            remove(base + w, base + w + 4)  # a fetch point, whose kind is set below
    for addr in m.fetch_points:
        kind = initial_kinds.get(addr)
        if kind is None:
            kind = initial_kinds[addr] = kind_for(m, m.cpus[0], addr - layout.TEXT_BASE)
        for c in m.cpus:
            c.kind_at[addr] = kind
    load(m, baseline, model=False)


def state_key(m: Machine) -> bytes:
    """A digest of everything that can affect the rest of a run or its final state.

    Folded steps (execute.py): whether a CPU spins is part of the key (it decides what
    a preemption costs); whether it is parked, what it held at its last spin hint and
    the mutation count are not: two states that differ only there differ in whether a
    spin iteration that comes back to the same state is taken once more, which reaches
    no other state (and a parked CPU, at a spin, costs no preemption to leave either).

    Shared data declared history (``Machine.set_history``: the perf ring and its clock,
    which the guest writes and never reads) is left out: two states that differ only in
    what was recorded there continue identically.

    The ground-truth log and the step counter are history, not state: two paths that
    reach the same key continue identically, but for one thing: the guest's clock
    (``layout.GIC_CLOCK``) reads the step counter, so a scenario that records it (perf
    records) continues with other timestamps.  The search merges such states; final
    states that differ only in recorded timestamps may not all be reached.

    The key is the digest of three parts: the ``Core``'s (digested once per ``Core``:
    the states a decision of the fetch model alone leads to share it), the fetch model's
    (``FetchModel.state_key``, which depends on the CPUs' fetch liveness, a function of
    the core) and the findings.
    """
    core, generation = m.core_held, m.key_generation
    cached = core.key if core is not None else None
    if cached and cached[0][0] == generation:
        core_key = cached[0][1]
        m.update_liveness()  # (nothing to do if it was computed for this core)
    else:
        pending = m.core_key_pending if core is None else None
        if pending is not None and pending[0] == generation:
            core_key = pending[1]  # (the liveness is this core's: set when it was made)
        else:
            core_key = _core_key(m)
            if cached is not None:
                cached[:] = [(generation, core_key)]
            else:
                m.core_key_pending = (generation, core_key)
    parts = [core_key, m.model.state_key()]
    if m.findings:
        parts.append(repr([f.signature() for f in m.findings]).encode())
    return digest(b"".join(parts))


def _core_key(m: Machine) -> bytes:
    """The digest of the machine's core (``Core``: what ``state_key`` digests but the
    fetch model and the findings); updates the fetch model's liveness on the way."""
    parts: list[Bytes] = []
    add = parts.append
    base = m.baseline
    small: list[object] = []  # what is not bytes, in one repr at the end
    base_stacks = base.core.stacks if base is not None else None
    for i, c in enumerate(m.cpus):
        small.append((c.state.value, c.pc, c.exc, c.irq_masked, c.read_spsr(), c.spun))
        add(c.read_regs())
        # Stacks and per-CPU areas rarely change: compare (memcmp) before hashing.
        # (Each part of varying presence or length is tagged: the parts are joined.)
        if base_stacks is None or c.stack != base_stacks[i]:
            add(b"S")
            add(c.stack)
        else:
            add(b"s")
    data = memoryview(m.data)
    for lo, hi in m.key_spans():  # shared data but its history (Machine.set_history)
        add(data[lo:hi])
    if base is None or m.percpu != base.core.percpu:
        add(b"C")
        add(m.percpu)
    m.update_liveness()
    if m.arm is not None:
        arm_key = m.arm_key
        if arm_key is None:  # (kept across decisions that leave the Arm model alone)
            arm_key = m.arm_key = m.arm.key()
        add(arm_key)
        add(b"P" if m.promise_phase else b"-")
    if m.cmodx_oracle and m.text_stores:  # what the CMODX oracle will judge at each
        small.append(_cmodx_pending(m))  # CPU's next fetches
    small.append((m.gic.state(), m.stopped))
    add(repr(small).encode())
    return digest(b"".join(parts))


def _cmodx_pending(m: Machine) -> list[list[tuple[int, int, int]]]:
    """Per CPU, the (word, old, new) of other CPUs' text stores since its last context
    synchronization event (memoised: a search asks at every state, and they rarely
    change)."""
    cses = tuple(c.last_cse for c in m.cpus)
    memo_key = (tuple(m.text_stores), cses)
    got = m.cmodx_memo.get(memo_key)
    if got is None:
        if len(m.cmodx_memo) >= 4096:
            m.cmodx_memo.clear()
        got = m.cmodx_memo[memo_key] = [
            sorted({(w, o, n) for st, cpu, w, o, n in m.text_stores
                    if st > c.last_cse and cpu != c.index}) for c in m.cpus]
    return got


def content_digest(m: Machine, *, history: bool = True) -> str:
    """SHA-256 of what a run left in the machine: every CPU's state, registers and stack,
    shared memory, the per-CPU areas, the text as the D-side and each CPU's I-view hold
    it, and the findings.  Unlike ``state_key`` it does not depend on how states are
    canonicalised or hashed, so it compares final states across versions of the
    testbed (tests/corpus.py, bench/search.py).  ``history=False``: what the machine
    holds as history (``Machine.set_history``) counts as zeros, as states are compared
    when a search merges states that differ only there."""
    h = hashlib.sha256()
    for c in m.cpus:
        h.update(repr((c.state.value, c.pc, c.exc, c.irq_masked)).encode())
        h.update(c.read_regs())
        h.update(bytes(c.stack))
    _memory(h, m, history)
    h.update(repr(sorted(f.signature() for f in m.findings)).encode())
    return h.hexdigest()


def outcome_digest(m: Machine) -> str:
    """SHA-256 of what a run leaves that the scenario can observe: shared data (its
    history as zeros), the text as the D-side and each CPU's I-view hold it, the per-CPU
    areas, each CPU's state and where it stopped, and the findings.  Registers and
    stacks are left out: an interrupt that folded steps (execute.py) take at the load
    after a spin hint rather than at the hint leaves another interrupted address in
    ELR_EL1 and in the copy the handler saves, and nothing else (tests/test_fold.py)."""
    h = hashlib.sha256()
    _memory(h, m, False)
    h.update(repr([(c.state.value, c.pc) for c in m.cpus]).encode())
    h.update(repr(sorted(f.signature() for f in m.findings)).encode())
    return h.hexdigest()


def _memory(h: Any, m: Machine, history: bool) -> None:
    """Shared data (its history as zeros unless ``history``), the per-CPU areas, the
    D-side text and every I-view, into ``h``."""
    data = bytearray(m.data[:m.data_extent])
    if not history:
        for lo, hi, _ in m.history:
            data[lo:hi] = bytes(len(data[lo:hi]))
    h.update(data)
    h.update(bytes(m.percpu))
    h.update(bytes(m.dside_text))
    for view in m.iviews:
        h.update(bytes(view))
