"""Folded steps and parked spins (testbed/execute.py), and history left out of state
keys (Machine.set_history, snapshot.state_key)."""

from __future__ import annotations

import pytest
from conftest import MachineFactory

from testbed.isa import OpKind
from testbed.machine import Machine
from testbed.scenario import Session, load_scenario, session_for
from testbed.schedule import ScheduleMismatch, step
from testbed.scheduler import run
from testbed.search import SearchBounds, search
from testbed.snapshot import content_digest, outcome_digest
from testbed.strategies import RandomWalk

WAIT_PROGRAM = """
	.text
	.global t_wait
t_wait:					// spin until flag != 0 (a YIELD, a load, a branch)
	ldr	x1, =flag
1:	yield
	ldr	w0, [x1]
	cbz	w0, 1b
	dmb	ish
	sev
	dsb	ish
	ret

	.global t_wait_clock
t_wait_clock:				// the same, reading the clock each time (x2 discarded)
	ldr	x1, =flag
	ldr	x9, =GIC_BASE
1:	yield
	ldr	x2, [x9, #GIC_CLOCK]
	mov	x2, #0
	ldr	w0, [x1]
	cbz	w0, 1b
	ret

	.global t_wait_count
t_wait_count:				// the same, counting on the stack (invisible stores)
	ldr	x1, =flag
	str	xzr, [sp, #-16]!
1:	yield
	ldr	x3, [sp]
	add	x3, x3, #1
	str	x3, [sp]
	mov	x3, #0
	ldr	w0, [x1]
	cbz	w0, 1b
	add	sp, sp, #16
	ret

	.global t_set
t_set:
	ldr	x1, =flag
	mov	w0, #1
	dmb	ish
	str	w0, [x1]
	ret

	.global t_clean
t_clean:				// a clean of its own text, then the barriers
	ldr	x1, =t_wait
	mov	w0, #1
	dc	cvau, x1
	dmb	ish
	dsb	ish
	ldr	x2, =flag
	str	w0, [x2]
	ret

	.global t_read_record
t_read_record:
	ldr	x1, =record
	ldr	x0, [x1]
	ret

	.data
	.align	3
	.global flag
flag:	.quad	0
	.global record
record:	.quad	0
"""

FOLDED = {OpKind.YIELD, OpKind.WFE, OpKind.SEV}


def _pending(m: Machine) -> set[OpKind]:
    return {m.pending_kind(c.index) for c in m.cpus if c.exc is None
            and c.state.value == "runnable"}


def _scheduling_points(make_machine: MachineFactory, starts: list[tuple[int, str, tuple[()]]],
                       **kwargs: object) -> set[OpKind]:
    kinds: set[OpKind] = set()
    for seed in range(12):
        m = make_machine(WAIT_PROGRAM, 2, starts=starts, **kwargs)
        m.reset()
        strategy = RandomWalk(seed)
        strategy.begin(m)
        while (d := strategy.choose(m)) is not None:
            kinds |= _pending(m)
            m.apply(d)
        assert m.valid and all(c.state.value == "off" for c in m.cpus)
    return kinds


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_spin_hints_and_sc_barriers_are_no_scheduling_points_when_folded(
        make_machine: MachineFactory, memory: str) -> None:
    starts: list[tuple[int, str, tuple[()]]] = [(0, "t_set", ()), (1, "t_wait", ())]
    seen = {fold: _scheduling_points(make_machine, starts, memory=memory, fold=fold)
            for fold in (0, 1)}
    assert FOLDED & seen[0] and OpKind.BARRIER in seen[0]  # (the test can fail)
    assert not FOLDED & seen[1]
    # At level 1 a barrier under the Arm model stays a scheduling point (level 2: below).
    assert (OpKind.BARRIER in seen[1]) == (memory == "arm")


def test_arm_barriers_fold_at_level_2_unless_they_have_something_to_complete(
        make_machine: MachineFactory) -> None:
    waiting: list[tuple[int, str, tuple[()]]] = [(0, "t_set", ()), (1, "t_wait", ())]
    cleaning: list[tuple[int, str, tuple[()]]] = [(0, "t_clean", ()), (1, "t_wait", ())]
    # Level 1 (schedules recorded with "fold": true) keeps them scheduling points.
    assert OpKind.BARRIER in _scheduling_points(make_machine, waiting, memory="arm", fold=1)
    assert OpKind.BARRIER not in _scheduling_points(make_machine, waiting, memory="arm",
                                                    fold=2)
    # A DMB after a DC CVAU that is still queued completes it (fetch rule 9): it stays.
    assert OpKind.BARRIER in _scheduling_points(make_machine, cleaning, memory="arm", fold=2)
    # So does every barrier when promises are on: a promise's solo run records them.
    assert OpKind.BARRIER in _scheduling_points(make_machine, waiting, memory="arm", fold=2,
                                                promises="anytime")


def _spin_alone(m: Machine, cpu: int, steps: int) -> None:
    for _ in range(steps):
        if cpu not in m.steppable():
            return
        m.apply(step(cpu))


def test_a_spin_that_changes_nothing_parks_and_a_store_unparks_it(
        make_machine: MachineFactory) -> None:
    m = make_machine(WAIT_PROGRAM, 2, starts=[(0, "t_set", ()), (1, "t_wait", ())],
                     fold=True)
    m.reset()
    _spin_alone(m, 1, 10)
    c = m.cpus[1]
    assert c.parked and m.steppable() == [0] and m.spinning(1)
    # Its next iteration would come back to the same state: a self-loop, nothing lost.
    key = m.state_key()
    c.parked = False
    m.states_changed()
    m.apply(step(1))
    assert m.state_key() == key and c.parked
    _spin_alone(m, 0, 2)  # the store to flag
    assert not c.parked and 1 in m.steppable()
    while m.steppable():
        m.apply(step(m.steppable()[-1]))
    assert all(x.state.value == "off" for x in m.cpus)


def test_every_cpu_parked_is_a_deadlock(make_machine: MachineFactory) -> None:
    m = make_machine(WAIT_PROGRAM, 1, starts=[(0, "t_wait", ())], fold=True)
    r = run(m, RandomWalk(0), scenario="t", max_decisions=500)
    assert [f.oracle for f in r.findings] == ["liveness"]
    assert "CPU0 at t_wait+0x8 spin on memory no CPU can write any more" in \
        r.findings[0].message and r.decisions < 10
    m = make_machine(WAIT_PROGRAM, 1, starts=[(0, "t_wait", ())])  # unfolded: no end
    r = run(m, RandomWalk(0), scenario="t", max_decisions=500)
    assert "no end after 500 decisions" in r.findings[0].message


@pytest.mark.parametrize("entry", ["t_wait_clock", "t_wait_count"])
def test_a_spin_that_reads_the_clock_or_changes_its_stack_never_parks(
        make_machine: MachineFactory, entry: str) -> None:
    """The clock moves with every step, and stack stores are not scheduling points:
    their iterations change something, so parking them would invent a deadlock."""
    m = make_machine(WAIT_PROGRAM, 1, starts=[(0, entry, ())], fold=True)
    r = run(m, RandomWalk(0), scenario="t", max_decisions=300)
    assert [f.message[:14] for f in r.findings] == ["no end after 3"]


@pytest.mark.parametrize("name,memory", [("nosync_isb", "sc"), ("jump_label_kick", "sc"),
                                         ("brk_refcount_sync", "sc"), ("nosync_isb", "arm"),
                                         ("jump_label_kick", "arm")])
def test_folding_reaches_the_same_final_states_with_fewer_states(name: str,
                                                                 memory: str) -> None:
    cls = load_scenario(name)
    got = {}
    for fold in (0, 1, 2):
        s = Session(cls(), params=dict(cls.search_scope), memory=memory, fold=fold)
        res = search(s, SearchBounds(1, 1), observe=outcome_digest)
        assert res.covered and not res.findings
        got[fold] = (res.states, res.observations)
    assert got[0][1] == got[1][1] == got[2][1]
    if memory == "sc":  # level 2 changes nothing under sc
        assert got[2][0] == got[1][0] < got[0][0]
    else:  # level 2 folds barriers under arm (nosync_isb has no spin to fold at level 1)
        assert got[2][0] < got[1][0] <= got[0][0]


def test_a_schedule_recorded_without_folding_replays_without_it() -> None:
    s = Session(load_scenario("jump_label_nosync")(), fold=False)
    r = s.run(RandomWalk(3))
    assert "fold" not in r.schedule.config
    again = session_for(r.schedule)
    assert not again.machine.fold
    assert again.replay(r.schedule).trace_digest() == r.trace_digest()
    with pytest.raises(ScheduleMismatch, match="without folded steps"):
        Session(load_scenario("jump_label_nosync")()).replay(r.schedule)


def test_a_schedule_recorded_at_fold_level_1_replays_at_it() -> None:
    s = Session(load_scenario("jump_label_kick")(), memory="arm", fold=1)
    r = s.run(RandomWalk(5))
    assert r.schedule.config["fold"] is True  # as schedules recorded before level 2
    again = session_for(r.schedule)
    assert again.machine.fold == 1
    assert again.replay(r.schedule).trace_digest() == r.trace_digest()
    with pytest.raises(ScheduleMismatch, match="level 1"):
        Session(load_scenario("jump_label_kick")(), memory="arm").replay(r.schedule)
    now = Session(load_scenario("jump_label_kick")(), memory="arm").run(RandomWalk(5))
    assert now.schedule.config["fold"] == 2
    assert session_for(now.schedule).machine.fold == 2


def test_history_is_left_out_of_the_key_and_a_guest_read_of_it_is_a_finding(
        make_machine: MachineFactory) -> None:
    def setup(m: Machine) -> None:
        m.set_history("record", 8)
    m = make_machine(WAIT_PROGRAM, 1, starts=[(0, "t_read_record", ())], setup=setup)
    m.reset()
    key = m.state_key()
    m.write(m.addr("record"), (5).to_bytes(8, "little"))
    assert m.state_key() == key
    m.set_keyed_history(True)
    assert m.state_key() != key
    assert content_digest(m, history=False) != content_digest(m)
    r = run(m, RandomWalk(0), scenario="t")
    assert [f.oracle for f in r.findings] == ["guest-fault"]
    assert "reads record+0x0 at t_read_record+0x4, which is declared history" in \
        r.findings[0].message
