"""Running a CPU: what one STEP or IRQ decision does, up to the CPU's next visible operation.

A CPU runs freely between visible operations (``isa.OpKind``): the code hook stops it
*before* the next one, and ``step`` performs that one operation when the scheduler
chooses the CPU: an instruction the emulator executes (a memory access, ``ERET``, a
``DAIF`` write, a fetch of a word stores touched), or one the machine performs itself
(``ISB``, cache maintenance, halting, a torn word, a pending exception's entry).  Then
``run`` lets the emulator go on to the next visible operation, under the instruction
budget: a CPU that runs ``budget`` instructions without one is a liveness finding.

Before a fetch of a word that stores touched, the CMODX oracle (``textside``) and the
declared fetch scope are checked.  Functions take the machine and the CPU they run.

**Folded steps** (``Machine.fold``, on in sessions; schedules record it).  Some visible
operations can neither affect another CPU nor be affected by one: ``YIELD``, ``WFE``
(which never blocks here) and ``SEV`` always, and under ``sc`` a ``DMB``/``DSB`` when the
CPU has no cache maintenance outstanding (it then has no effect at all).  Under the Arm
model such a barrier changes only its own CPU's views (B1: a thread-local step, which
no other CPU reads and which reads nothing another CPU writes), so at fold level 2
(``FOLD``, sessions' default; a schedule records level 1 as ``"fold": true`` and level
2 as ``"fold": 2``) it folds too, unless promises are on (a promise's solo run records
barriers: ``dataside.promise_choices``).  A CPU that
reaches one performs it within the step that brought it there and runs on (``_fold``):
a scheduling point that commutes with every other decision is removed, so that no
schedule and no final state is lost (each interleaving of the removed point is the same
state as one with it moved next to the operation before it).  Passing a ``YIELD`` or
``WFE`` marks the CPU as spinning (``Cpu.spun``): switching away from it is free, as from
a CPU stopped at one.

A CPU that arrives at a ``YIELD``/``WFE`` with the same pc, registers, stack (and private
data: ``Machine.set_private``) and Arm-model
thread state as at its previous arrival, when nothing anyone can read has changed since
(``Machine.mutations``: every decision that is not a step of a plain load, a spin hint or
a folded operation counts one, and so does every read of the interrupt controller's
page, which holds the clock), is **parked**: its last spin iteration changed nothing, so
the next one, which would run from the same state on the same memory, would change
nothing either.  It runs on to its next visible operation, as it would unparked (so
that a parked run takes the same steps, and reads the same clock, as any other), and
is not steppable there until the count moves (``Machine.apply`` unparks).
Parking removes only self-loops; a run in which every CPU left is parked or asleep is a
deadlock (``scheduler.run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import arm64_const as A

from . import dataside, layout, trace
from .cpu import NO_COUNT, PSTATE_I, UNTIL, Cpu, CpuState, Stop, UcError
from .exceptions import enter, eret, take_irq
from .findings import EventKind, OracleName
from .isa import OpKind
from .statehash import digest
from .textside import cache_op, catch_up, cmodx_violation, redo_text_access

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["fetch_allowed", "irq", "resume", "run", "run_started", "step"]

_INVISIBLE, _ERET, _FETCH = OpKind.INVISIBLE, OpKind.ERET, OpKind.FETCH
_NONE, _VISIBLE, _TEXT, _HOOKED = Stop.NONE, Stop.VISIBLE, Stop.TEXT, Stop.HOOKED
_YIELD, _WFE, _SEV, _BARRIER = OpKind.YIELD, OpKind.WFE, OpKind.SEV, OpKind.BARRIER
FOLDABLE = frozenset({_YIELD, _WFE, _SEV, _BARRIER})  # kinds _fold may perform
FOLD = 2  # the fold level sessions run at: 1 without the Arm model's barriers, 2 with


def step(m: Machine, c: Cpu, as_of: int | None = None) -> None:
    """Perform ``c``'s next visible operation (or exception entry) and run on
    (``as_of``: a ``DC``'s clean as of that time, ``dataside.clean_choices``)."""
    if c.exc is not None:
        esr, elr, _ = c.exc
        c.exc = None
        vector = enter(m, c, 0x000, esr, elr)
        if c.state is CpuState.RUNNABLE:
            resume(m, c, vector)
        return
    pc = c.pc
    kind = c.kind_at.get(pc, _INVISIBLE)
    if m.arm is not None and pc - layout.TEXT_BASE in m.model.touched:
        off = pc - layout.TEXT_BASE  # F1: a stored instruction executes after its store
        m.arm.fetched(c.index, pc & ~7, off & 7, bytes(m.iviews[c.index][off:off + 4]))
    if kind is _FETCH and not fetch_allowed(m, c, pc):
        return
    if kind <= 4:  # INVISIBLE, MEMORY, ERET, DAIF, FETCH: the emulator executes it
        if kind is _ERET:
            eret(m, c, pc)
        if kind == 1 and m.arm is not None:  # an access under the Arm model
            nxt = dataside.access(m, c, pc)
            if nxt is not None:
                if nxt >= 0:
                    resume(m, c, nxt)
                return
            run(m, c, pc, pc)  # not modelled memory: run as under sc
            return
        run(m, c, pc)
        if (kind == 2 or kind == 3) and c.state is CpuState.RUNNABLE:
            c.irq_masked = bool(c.regs.read(A.UC_ARM64_REG_PSTATE) & PSTATE_I)
        return
    if kind is OpKind.HALT:
        c.state = CpuState.OFF
        m.add_event(c.index, EventKind.HALT, pc)
        return
    if kind is OpKind.TORN:
        word = m.model.fetch(c.index, pc - layout.TEXT_BASE)
        m.add_finding(c, OracleName.TORN_WORD, f"CPU{c.index} executes a torn instruction "
                      f"word {word:#010x} at {m.image.symbolize(pc)}", pc, (word,))
        return
    c.log.append((m.step_no, pc, pc + 4))
    if (kind is _YIELD or kind is _WFE) and m.fold:
        c.spun = True
    if kind is OpKind.BARRIER:
        if m.arm is not None:
            _arm_barrier(m, c, pc)
    elif kind is OpKind.ISB:
        catch_up(m, c, "ISB")
    elif kind is OpKind.DC or kind is OpKind.IC:
        cache_op(m, c, pc, as_of)
    resume(m, c, pc + 4)


def fetch_allowed(m: Machine, c: Cpu, pc: int) -> bool:
    """The checks before ``c`` fetches a word that stores touched, at ``pc``: the CMODX
    oracle (``textside.cmodx_violation``) and the declared fetch scope; False when one
    of them made a finding (the step ends there)."""
    if m.cmodx_oracle and cmodx_violation(m, c, pc):
        return False
    scope = m.model.scopes[c.index]
    if scope is not None and pc - layout.TEXT_BASE not in scope:
        m.add_finding(c, OracleName.FETCH_SCOPE, f"CPU{c.index} fetches modified code at "
                      f"{m.image.symbolize(pc)}, outside its declared fetch "
                      "scope: the search may have pruned outcomes", pc)
        return False
    return True


def _arm_barrier(m: Machine, c: Cpu, pc: int) -> None:
    """A ``DMB``/``DSB`` at ``pc`` under the Arm model: B1 on ``c``'s views, and the
    cache maintenance it completes (fetch rule 9)."""
    off = pc - layout.TEXT_BASE
    word = int.from_bytes(m.iviews[c.index][off:off + 4], "little")
    dataside.barrier(m, c, word)
    if word & 0xFFFFF0FF == 0xD503309F:  # DSB: maintenance completes
        m.model.complete_all(c.index)
    elif (word >> 8) & 3 != 1:  # a DMB that orders stores: DC CVAU completes
        m.model.complete_cleans(c.index)


def irq(m: Machine, c: Cpu) -> None:
    """Take ``c``'s pending IRQ and run the handler to its first visible operation."""
    vector = take_irq(m, c)
    if c.state is CpuState.RUNNABLE:
        resume(m, c, vector)


def resume(m: Machine, c: Cpu, pc: int) -> None:
    """Run ``c`` from ``pc`` to its next visible operation (which may be at ``pc``)."""
    kind = c.kind_at.get(pc)
    if kind is not None and kind is not OpKind.INVISIBLE:
        c.pc = pc
        if m.fold and kind in FOLDABLE:
            nxt = _fold(m, c)
            if nxt >= 0:
                run(m, c, nxt)
        return
    run(m, c, pc)


def _fold(m: Machine, c: Cpu) -> int:
    """Perform the foldable operations ``c`` stopped at (module docstring): the address
    to run on from, or -1 when ``c`` stays stopped at ``c.pc`` (an operation that is not
    foldable now)."""
    kind_at = c.kind_at
    while True:
        pc = c.pc
        kind = kind_at.get(pc)
        if kind is _YIELD or kind is _WFE:
            arm = m.arm
            mark = (pc, c.read_regs(),  # (its private data is its own too: set_private)
                    digest(c.stack if not c.private else c.stack + m.private_bytes(c.index)),
                    m.mutations,
                    None if arm is None else arm.threads[c.index].copy())
            if mark == c.mark:  # parked, at its next visible operation, as if not
                c.parked = True  # (a parked run takes the same steps as any other)
            c.mark = mark
            c.spun = True
        elif kind is _BARRIER and not m.model.queues[c.index] and (
                m.arm is None or (m.fold >= 2 and not m.promises)):
            if m.arm is not None:  # B1 on the CPU's own views (nothing to complete)
                _arm_barrier(m, c, pc)
        elif kind is not _SEV:
            return -1
        c.log.append((m.step_no, pc, pc + 4))
        pc += 4
        kind = kind_at.get(pc)
        if kind is None or kind is _INVISIBLE:
            return pc
        c.pc = pc


def run(m: Machine, c: Cpu, pc: int, skip: int = -1) -> None:
    """Execute the instruction at ``pc`` and run on to the next visible operation; under
    the Arm model, carry register views through what ran (``skip``: an access at ``pc``
    whose views ``dataside`` set)."""
    if m.arm is None:
        _run(m, c, pc)
        return
    start = len(c.log)
    _run(m, c, pc)
    dataside.track(m, c, start, skip)


def _run(m: Machine, c: Cpu, pc: int, started: int | None = None, folds: int = 0) -> None:
    """``started``: the compiled walker (``scheduler._walker``) already ran the first
    run, after ``folds`` folds, and it returned this status (``Machine._walked``)."""
    u = c.uc
    again = False  # a run again from where Stop.HOOKED stopped it: the same skip and budget
    while True:
        try:
            if started is None:
                if not again:
                    c.skip = pc if pc in c.kind_at else -1
                    c.left = m.budget
                again = False
                c.reason = _NONE
                c.start(pc, UNTIL, NO_COUNT if c.counting else 0)
            else:  # what the compiled start() raises after its run (fastpath.attach)
                status, started = started, None
                if status != 0:
                    raise UcError(status)
                if u._hook_exception is not None:
                    raise u._hook_exception
        except UcError as e:
            where = u.reg_read(A.UC_ARM64_REG_PC)
            trace.cut(c.log, where)
            m.add_finding(c, OracleName.GUEST_FAULT, f"CPU{c.index} faults at "
                          f"{m.image.symbolize(where)}: {e}", where)
            return
        if c.hook_error is not None:
            raise RuntimeError("internal error in a code hook") from c.hook_error
        reason = c.reason
        if reason is _VISIBLE:  # the common case: trace.cut() inlined
            if c.cut:  # (else the compiled run call cut it)
                log = c.log
                step, start, stop = log[-1]
                end = c.pc
                if start == end:
                    log.pop()
                elif start < end < stop:
                    log[-1] = (step, start, end)
        elif reason is _HOOKED:  # its code hooked (cpu._block_hook): run it again
            pc = c.regs.read(A.UC_ARM64_REG_PC)
            again = True
            continue
        elif reason is _TEXT:  # a data access to a text address: redone in text mode
            pc = redo_text_access(m, c)
            if pc >= 0:
                continue
            if c.state is not CpuState.RUNNABLE:  # a fault
                return
        else:
            _stopped(m, c, reason)
            return
        # Stopped before a visible operation: performed here if it can be folded.
        if not m.fold or c.kind_at.get(c.pc) not in FOLDABLE:
            return
        pc = _fold(m, c)
        if pc < 0:
            return
        folds += 1
        if folds > m.budget:  # spinning with a changing state and no visible operation
            m.add_finding(c, OracleName.LIVENESS, f"CPU{c.index} spun {m.budget} times "
                          f"without a visible operation, at {m.image.symbolize(c.pc)}", c.pc)
            return


run_started = _run  # (Machine._walked: a run the compiled walker started, under sc)


def _stopped(m: Machine, c: Cpu, reason: Stop) -> None:
    """``c`` stopped otherwise than before a visible operation: by an exception, a halt,
    a kernel death, or the instruction budget."""
    if reason is Stop.EXCEPTION:
        assert c.exc is not None
        c.pc = c.exc[1] if c.exc[2] == c.exc[1] + 4 else c.exc[2] - 4
        trace.cut(c.log, c.exc[2])
        return
    if reason is Stop.HALT or reason is Stop.DIE:
        return
    where = c.uc.reg_read(A.UC_ARM64_REG_PC)
    trace.cut(c.log, where)
    m.add_finding(c, OracleName.LIVENESS, f"CPU{c.index} ran {m.budget} instructions "
                  f"without a visible operation, at {m.image.symbolize(where)}", where)
