"""Which decisions commute: the independence relation of exhaustive exploration's sleep
sets (``exploration.explore``).

The reduction and its argument
------------------------------
Two decisions ``a`` and ``b``, both enabled in a state ``s``, are *independent* in ``s``
when performing one leaves the other enabled, performing the other the same way, and
both orders reach states with the same key (``Machine.state_key``).  Sleep sets
(Godefroid, *Partial-Order Methods for the Verification of Concurrent Systems*, LNCS 1032,
1996, chapter 5) use that: once ``a`` has been explored from ``s``, a later sibling ``b``
independent of ``a`` need not explore ``a`` again right after it, because ``b; a``
reaches the state ``a; b`` reached.  ``a`` then *sleeps* in ``b``'s successor, and in
its successors for as long as the decisions taken are independent of it.  With a table
of visited states, a state reached again with a sleep set that is not a superset of the
one it was stored with explores the decisions of the difference, and keeps the
intersection (Godefroid's algorithm with state caching).  Sleep sets alone prune
*transitions*, never states: every reachable state is still visited, which is what
``tests/test_independence.py`` checks (the same states and final states with and
without them), beside a check of this relation against the machine itself (both orders
of every pair it calls independent, on states of real tests).

Exhaustive exploration has no preemption bound, so nothing else has to compose with the
reduction.  The bounded search (``search.py``) does not use it: there a decision's cost
in preemptions depends on the order, which this argument does not cover.

The relation
------------
Each decision gets a *footprint* in the state it is taken from: the CPU it belongs to
(-1 for a write-back, which belongs to none), the resources it reads (including what
decides whether it is enabled and which choices it offers) and the resources it writes;
or ``None``, "depends on everything", whenever this module cannot be sure.  Two
footprints are independent when they belong to different CPUs and neither writes what
the other reads or writes.  Resources:

- a data granule (its address, ``armmem.GRANULE`` bytes) of shared data or of the
  per-CPU areas: read by a load, written by a store, both by an exclusive or atomic;
- ``TEXT``: the D-side text and the point of unification, read by fills, catch-ups,
  ``ISB`` and loads from the text, written by write-backs and ``DC``;
- ``CLOCK``, under the Arm model: the order of its messages, written by every store (a
  message's timestamp orders it against every location, and views compare timestamps:
  two stores to different locations do not commute), read by write-backs and ``DC``
  (rule 10 records the time of what the PoU holds).

What a CPU's own decisions touch besides (its registers, stack, private data
(``Machine.set_private``: any other CPU's access to it is a finding in every order),
views, I-cache and I-view, its queue of cache maintenance) belongs to it alone.
Everything else depends on everything: interrupts, exception entry and return, stores to
the text, ``IC``, the completion of queued maintenance, promises (the Arm model's key is
canonical only without them), accesses outside modelled memory (the interrupt
controller's clock reads the step counter).  Decisions that turn out to change findings,
stop the machine, invalidate the run or take a CPU out of the steppable ones but as
``kept`` allows are treated as dependent on everything after the fact (``explore``
checks, as a successor and as a sibling: what a decision does is decided by what it
reads, so a sleeping one would do the same again).  Folded steps (``Machine.fold``) park
spinning CPUs on a global count of mutations, which makes steppability depend on every
decision: a machine that folds gets no reduction.

A thread's end
--------------
A CPU whose step brought it to its thread's end (``OpKind.HALT``, where a litmus thread
ends) has one thing left to do, the step that switches it off; ``explore`` takes that
step at once, as part of the decision that led there (``at_end``).  The halt is a
persistent set of one decision (Godefroid, chapter 4): it reads and writes nothing that
another decision reads or writes, stays enabled whatever else happens, and cannot
enable or disable another CPU's decisions while a CPU that can step remains.  Every
path from that state that does not take it at once takes it later, and reaches a final
state that the path taking it first reaches too, but for what that path does in between
that needs the ending CPU itself: its own fills and catch-ups (it never fetches again),
and, once every other CPU has stopped, the write-backs and completions of maintenance
that only a CPU able to step keeps enabled.  Those change the fetch model's state
alone: the PoU and the I-caches and I-views of CPUs that fetch nothing more, never a
register, memory or a finding.  So every final state is still reached up to the fetch
model's state: the same observations and findings, and sometimes fewer final states
(``tests/test_independence.py`` compares the final states' registers and memory with
and without it).  The conditions, each about the ending CPU alone (so that the same
decision is taken at once in whichever order it comes): no exception pending, IRQs
masked (none can be taken at the end), no promise held (the Arm model's P3 judges a CPU
that stops with one), the end's word never stored to, and a machine without WFI (whose
waits make steppability depend on every CPU) outside the promise phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import layout
from .armmem import granules
from .cpu import CpuState
from .dataside import pending_access
from .isa import MemKind, OpKind, classify
from .schedule import Decision, DecisionKind

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["CLOCK", "TEXT", "Footprint", "at_end", "footprint", "independent", "kept",
           "observed", "reducible"]

TEXT = -1  # the resource of the D-side text and the point of unification
CLOCK = -2  # the Arm model's order of messages (every store appends one)
_NOTHING: frozenset[int] = frozenset()
_TEXT_ONLY = frozenset({TEXT})
_TEXT_CLOCK = frozenset({TEXT, CLOCK})
_CLOCK_ONLY = frozenset({CLOCK})

# (owner CPU or -1, resources read, resources written)
Footprint = tuple[int, frozenset[int], frozenset[int]]

_OWN_KINDS = frozenset({DecisionKind.FILL, DecisionKind.FILL_DSIDE, DecisionKind.CATCH_UP})


def reducible(m: Machine) -> bool:
    """Whether the relation may call anything independent in ``m``'s current state."""
    if m.fold or m.promise_phase:
        return False
    arm = m.arm
    return arm is None or not any(t.promises for t in arm.threads)


def footprint(m: Machine, d: Decision) -> Footprint | None:
    """``d``'s footprint in ``m``'s current state (``d`` enabled there), or ``None``:
    dependent on every other decision (module docstring)."""
    kind = d.kind
    if kind is DecisionKind.STEP or kind is DecisionKind.FAIL:
        return _step(m, d.cpu)
    if kind in _OWN_KINDS:  # rules 4 and 7: read the PoU (or D-side), write the CPU's own
        return d.cpu, _TEXT_ONLY, _NOTHING
    if kind is DecisionKind.EVICT:
        return d.cpu, _NOTHING, _NOTHING
    if kind is DecisionKind.WRITE_BACK:  # under the Arm model it records the time
        return -1, _TEXT_ONLY if m.arm is None else _TEXT_CLOCK, _TEXT_ONLY
    if kind is DecisionKind.READ:
        c = m.cpus[d.cpu]
        if c.exc is None and c.kind_at.get(c.pc) is OpKind.DC:
            return d.cpu, _TEXT_ONLY, _TEXT_ONLY  # a clean as of an earlier time
        return _step(m, d.cpu)
    return None  # IRQ, COMPLETE, PROMISE


def observed(m: Machine) -> tuple[object, ...]:
    """What a footprint cannot say in advance (``kept``), in ``m``'s current state."""
    return len(m.findings), m.stopped, m.invalid, m.steppable()


def kept(m: Machine, d: Decision, before: tuple[object, ...]) -> bool:
    """Whether ``d``, just performed from a state whose ``observed`` was ``before``,
    behaved as its footprint says: it added no finding, did not stop the machine or
    invalidate the run, and no CPU left the steppable ones but its own, with two others
    still able to step (a CPU whose thread ends is independent of the others' decisions
    only while that is so: with none left, every model choice goes with it).  One that
    did not depends on every other decision, as a successor and as a sibling."""
    now = observed(m)
    if now[:3] != before[:3]:
        return False
    after, steppable = now[3], before[3]
    assert isinstance(after, list) and isinstance(steppable, list)
    return after == steppable or (len(after) >= 2
                                  and after == [i for i in steppable if i != d.cpu])


def independent(a: Footprint | None, b: Footprint | None) -> bool:
    """Whether decisions of these footprints commute (module docstring)."""
    if a is None or b is None:
        return False
    owner_a, reads_a, writes_a = a
    owner_b, reads_b, writes_b = b
    if owner_a == owner_b:
        return False
    if writes_a and (not writes_a.isdisjoint(reads_b) or not writes_a.isdisjoint(writes_b)):
        return False
    return not writes_b or writes_b.isdisjoint(reads_a)


def at_end(m: Machine, d: Decision) -> Decision | None:
    """The step that switches ``d``'s CPU off, if ``d`` (just performed) brought it to
    its thread's end and that step may be taken at once (module docstring)."""
    cpu = d.cpu
    if d.kind is not DecisionKind.STEP or m.stopped or m.has_wfi or m.promise_phase \
            or not 0 <= cpu < m.ncpus:
        return None
    c = m.cpus[cpu]
    if c.state is not CpuState.RUNNABLE or c.exc is not None or not c.irq_masked \
            or c.kind_at.get(c.pc) is not OpKind.HALT \
            or c.pc - layout.TEXT_BASE in m.model.touched:
        return None
    if m.arm is not None and m.arm.threads[cpu].promises:
        return None
    return d


def _step(m: Machine, cpu: int) -> Footprint | None:
    """A step of ``cpu``: its next visible operation, then what it runs to the next one
    (invisible instructions: its registers, its stack, its private data, its I-view)."""
    c = m.cpus[cpu]
    if c.exc is not None or c.state is not CpuState.RUNNABLE:
        return None
    pc = c.pc
    off = pc - layout.TEXT_BASE
    kind = c.kind_at.get(pc, OpKind.INVISIBLE)
    reads: frozenset[int] = _NOTHING
    if m.arm is not None and off in m.model.touched:
        reads = _TEXT_ONLY  # F1: the fetch of a stored instruction reads its messages
    if kind is OpKind.HALT:  # a litmus thread's end: its CPU switches off
        return cpu, reads, _NOTHING
    if kind is OpKind.BARRIER:
        if m.model.queues[cpu]:
            return None  # a DSB (or DMB after a DC) completes maintenance everywhere
        return cpu, reads, _NOTHING
    if kind is OpKind.ISB:
        return cpu, _TEXT_ONLY, _NOTHING  # rule 7 from the PoU
    if kind is OpKind.DC:  # (under the Arm model queued, but it offers times to clean as of)
        return cpu, _TEXT_ONLY if m.arm is None else _TEXT_CLOCK, _TEXT_ONLY
    if kind is OpKind.FETCH:  # a word stores touched: what it is now decides
        word = int.from_bytes(m.iviews[cpu][off:off + 4], "little")
        if classify(word).kind is not OpKind.INVISIBLE:
            return None
        return cpu, reads, _NOTHING
    if kind is not OpKind.MEMORY:
        return None  # ERET, DAIF, IC, WFI, YIELD, WFE, SEV, TORN, INVISIBLE
    pending = pending_access(m, c)  # (under either model: decoding is the same)
    if pending is None:
        return None  # the text's stores, the interrupt controller, anything unmodelled
    access, ea, _ = pending
    op, size = access.op, access.nbytes
    if _within(ea, size, layout.DATA_BASE, len(m.data)) \
            or _within(ea, size, layout.PERCPU_BASE, len(m.percpu)):
        locs = frozenset(g for g, _, _ in granules(ea, size))
    else:
        return cpu, _TEXT_ONLY, _NOTHING  # a load from the text reads its D-side
    if op.kind is MemKind.LOAD and not op.exclusive:
        return cpu, reads | locs, _NOTHING
    if m.arm is not None:  # a message, after every other: the order of any two matters
        locs |= _CLOCK_ONLY
    if op.kind is MemKind.STORE and not op.exclusive:
        return cpu, reads, locs
    return cpu, reads | locs, locs  # exclusives and atomics read and write


def _within(addr: int, size: int, base: int, length: int) -> bool:
    return base <= addr and addr + size <= base + length
