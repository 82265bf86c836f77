"""The random walk in one Python loop: the pure path's walker (``walk``).

``scheduler.run`` asks the strategy for each decision (``RandomWalk.choose``) and the
machine to perform it (``Machine.apply``): about a dozen Python frames a decision, each
checking again what holds for the whole run (no Arm model, no promises, no declared
fetch liveness...).  The compiled walker (``_fastpath.walk``) takes the commonest
decisions in C; without it (the pure path, ``TESTBED_FASTPATH=0`` or no C compiler at
install), ``walk`` runs the loop in Python, under the same conditions (``applies``: a
``RandomWalk`` on a ``random.Random``, under sc, with folded steps, no declared fetch
liveness, no promises).

Each decision draws what ``choose`` draws, in the same order: ``random()``, then, for a
step with no IRQ pending and no ``WFI`` in the machine, ``randrange`` over the
steppable CPUs (as ``Random._randbelow`` draws it); any other case is
``RandomWalk.decide`` from the same first draw.  A step, whoever chose it, is performed
here when it is a memory access, a ``DAIF`` write, a fetch of a touched word, an
``ISB``, a ``DC`` or an ``IC`` (or a CPU stopped where nothing is visible) with no
exception to take: what ``Machine.apply``, ``Machine._step_folded`` and
``execute.step`` do for it under these conditions, with the first run of
``execute._run`` inlined (the rest of that run, when it did not simply stop before a
visible operation, is ``execute.run_started``'s).  Every other decision is
``Machine.apply``'s.  So the schedule, the trace, the events, the findings and the
random stream are those of the plain loop: ``tests/test_walker_python.py`` runs every
scenario both ways on the same seeds (and the compiled walker's tests, the C side).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from ctypes import c_uint64
from typing import TYPE_CHECKING

from unicorn import arm64_const as A

from .cpu import NO_COUNT, PSTATE_I, UNTIL, CpuState, Stop
from .execute import FOLDABLE, fetch_allowed, resume, run_started
from .isa import OpKind
from .schedule import Decision, DecisionKind, step
from .strategies.random_walk import RandomWalk
from .textside import cache_op, catch_up

if TYPE_CHECKING:
    from .machine import Machine
    from .strategies import Strategy

__all__ = ["applies", "walk"]

_RUNNABLE = CpuState.RUNNABLE
_STEP = DecisionKind.STEP
_NONE, _VISIBLE = Stop.NONE, Stop.VISIBLE
_INVISIBLE, _MEMORY, _DAIF, _FETCH = OpKind.INVISIBLE, OpKind.MEMORY, OpKind.DAIF, OpKind.FETCH
_ISB, _DC, _IC = OpKind.ISB, OpKind.DC, OpKind.IC
# The kinds of operation a step takes here: run by the emulator (no ERET), or an ISB
# or cache maintenance (None: the CPU stopped where no operation is visible)
_TAKEN = frozenset({None, _INVISIBLE, _MEMORY, _DAIF, _FETCH, _ISB, _DC, _IC})
_PSTATE = A.UC_ARM64_REG_PSTATE


def applies(m: Machine, strategy: Strategy) -> bool:
    """Whether ``walk`` may run ``m`` under ``strategy``: the pure path, and the walkers
    not turned off (``TESTBED_WALKER=0``, or ``Machine.walk_function`` False).  Checked
    once per run; ``WFI``, which can appear during a run, at every decision."""
    return (not m.fastpath and m.walk_function is not False
            and os.environ.get("TESTBED_WALKER", "1") != "0"
            and type(strategy) is RandomWalk and type(strategy.rng) is random.Random
            and m.arm is None and bool(m.fold) and not m.has_fetch_liveness
            and not m.promises)


def walk(m: Machine, strategy: RandomWalk, decisions: list[Decision],
         give_up: Callable[[], None], max_decisions: int) -> int:
    """``scheduler.run``'s loop for a run ``applies`` allows: decide and perform until the
    run stops, the strategy has nothing to decide, or ``max_decisions`` were taken
    (``give_up`` then records the finding).  Returns how many steps it took itself."""
    rng = strategy.rng
    draw, bits = rng.random, rng.getrandbits
    threshold = 1.0 - strategy.p_model
    decide = strategy.decide
    apply, append = m.apply, decisions.append
    cpus, gic = m.cpus, m.gic
    pure_loads, points = m.pure_loads, m.fetch_points
    # (the constant arguments as C values: ctypes converts none of them at each call)
    until, zero, counted = c_uint64(UNTIL), c_uint64(0), c_uint64(NO_COUNT)
    steps = tuple(step(i) for i in range(m.ncpus))
    ncpus = m.ncpus
    walked = 0
    while not m.stopped:
        r = draw()
        d: Decision | None = None
        ci = -1
        if r < threshold and not m.has_wfi and not any(gic.pending):
            ready = m._runnable  # (steppable(), no WFI)
            n = len(ready)
            if n == 1:
                ci = ready[0]
            elif n:  # rng.randrange(n), as Random._randbelow draws it
                k = n.bit_length()
                x = bits(k)
                while x >= n:
                    x = bits(k)
                ci = ready[x]
        if ci < 0:  # RandomWalk.choose's other cases, from the same draw
            d = decide(m, r)
            if d is None:
                return walked
            if d.kind is _STEP and 0 <= d.cpu < ncpus:  # (taken below as well)
                ci = d.cpu
        if ci >= 0:
            c = cpus[ci]
            pc = c.pc
            kind_at = c.kind_at
            kind = kind_at.get(pc)
            if (c.exc is not None or kind not in _TAKEN or len(decisions) >= max_decisions
                    or c.state is not _RUNNABLE or c.parked):
                d = steps[ci]
            else:
                # Machine.apply: a step drops the Arm key and the core held
                m.arm_key = m.arm_saved = None
                m.core_held = m.core_key_pending = None
                m.step_no += 1
                # Machine._step_folded
                before = m.mutations
                if not (kind is _MEMORY and pc in pure_loads and pc not in points):
                    m.mutations = before + 1
                c.spun = False
                # execute.step, under sc with no exception to take
                if kind is _ISB or kind is _DC or kind is _IC:  # performed, then run on
                    c.log.append((m.step_no, pc, pc + 4))
                    if kind is _ISB:
                        catch_up(m, c, "ISB")
                    else:
                        cache_op(m, c, pc)
                    pc += 4  # execute.resume from there: a run, unless visible
                    kind_at = c.kind_at
                    after = kind_at.get(pc)
                    if after is not None and after is not _INVISIBLE:
                        if after in FOLDABLE:
                            resume(m, c, pc)
                        else:
                            c.pc = pc
                        pc = -1
                elif kind is _FETCH and not fetch_allowed(m, c, pc):
                    pc = -1
                if pc >= 0:  # execute.run, its first run inlined (the rest: run_started)
                    u = c.uc
                    c.skip = pc if pc in kind_at else -1
                    c.reason = _NONE
                    c.left = m.budget
                    u._hook_exception = None
                    status = c.uc_start(u._uch, pc, until, zero, counted if c.counting else zero)
                    if (status or u._hook_exception is not None or c.reason is not _VISIBLE
                            or c.hook_error is not None or not c.cut
                            or kind_at.get(c.pc) in FOLDABLE):
                        run_started(m, c, pc, status)
                    else:  # stopped before a visible operation: trace.cut() inlined
                        log = c.log
                        at, begin, end = log[-1]
                        stop = c.pc
                        if begin == stop:
                            log.pop()
                        elif begin < stop < end:
                            log[-1] = (at, begin, stop)
                    if kind is _DAIF and c.state is _RUNNABLE:
                        c.irq_masked = bool(c.regs.read(_PSTATE) & PSTATE_I)
                # Machine._stepped
                if m.mutations != before:
                    if m._parked:
                        m._unpark()
                elif c.parked:
                    m.states_changed()
                if c.state is not _RUNNABLE:
                    m.states_changed()
                append(steps[ci])
                walked += 1
                continue
        assert d is not None
        if len(decisions) >= max_decisions:
            give_up()
            return walked
        apply(d, len(decisions))
        append(d)
    return walked
