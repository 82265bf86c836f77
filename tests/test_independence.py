"""Exhaustive exploration's reductions: sleep sets (``testbed/independence.py``), a
thread's fetch liveness (``litmus_run._Liveness``) and the words a test may patch it
rests on (``litmus_run._store_targets``), a thread's end taken at once
(``independence.at_end``) and the cached Arm-model key.

Each is checked against the machine itself: the pairs the relation calls independent
are run in both orders on states of real litmus tests; explorations with and without a
reduction reach the same states (sleep sets), the same outcomes (liveness) or the same
final registers, memory and Arm-model state (ends, patch targets); and a deliberately
wrong relation, declaration or reduction is caught by the same checks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testbed import independence, snapshot
from testbed.cpu import CpuState
from testbed.exploration import Bounds, enabled, explore
from testbed.independence import footprint, independent, kept, observed, reducible
from testbed.isa import OpKind
from testbed.litmus import parse_file
from testbed.litmus_run import LitmusProgram, build, run_test
from testbed.machine import Machine
from testbed.schedule import Decision, step

LITMUS = Path(__file__).resolve().parents[2] / "shared" / "litmus"
pytestmark = pytest.mark.skipif(not LITMUS.is_dir(), reason="needs ../shared/litmus")

# Small tests of each kind: text stores and cache maintenance (IDC=0, IDC=1, DIC=1),
# data stores and loads to several locations, exclusives, threads that end early.
SMALL = [
    "esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus",
    "esop2020/MP.RF+dc+ctrl-isb.litmus",
    "esop2020/CoRF+ctrl-isb.litmus",
    "herd-ifetch/DIC0-IDC0/MP.RF+cachesync+ctrlisb.litmus",
    "herd-ifetch/DIC0-IDC1/IDC1.MP.RF+cachesync+ctrlisb.litmus",
    "herd-ifetch/DIC1-IDC1/DIC1.MP.FF+dmb.st+po.litmus",
    "aarch64-data/catalogue/2+2W.litmus",
    "aarch64-data/generated/IRIW+addrs.litmus",
]


def _program(name: str, memory: str = "arm", liveness: bool = True) -> LitmusProgram:
    return build(parse_file(LITMUS / name), memory=memory, liveness=liveness)


def _pairs_commute(m: Machine, walks: int, seed: int) -> tuple[int, list[str]]:
    """Run every pair the relation calls independent in both orders, on the states of
    ``walks`` random walks: (pairs checked, the ones that did not commute)."""
    rng = random.Random(seed)
    checked, bad = 0, []
    for _ in range(walks):
        m.reset()
        for _ in range(100):
            choices = enabled(m)
            if not choices:
                break
            if reducible(m):
                here = m.save()
                prints = {d: footprint(m, d) for d in choices}
                for i, a in enumerate(choices):
                    for b in choices[i + 1:]:
                        if not independent(prints[a], prints[b]):
                            continue
                        checked += 1
                        keys: list[bytes | None] = []
                        for first, second in ((a, b), (b, a)):
                            m.load(here)
                            before = observed(m)
                            m.apply(first)
                            if not kept(m, first, before):  # (explore: dependent)
                                keys = [b"", b""]
                                break
                            if second not in enabled(m):
                                keys.append(None)
                                break
                            m.apply(second)
                            keys.append(m.state_key())
                        if len(keys) != 2 or keys[0] != keys[1] or keys[0] is None:
                            bad.append(f"{a.describe()} / {b.describe()}")
                m.load(here)
            m.apply(rng.choice(choices))
    return checked, bad


@pytest.mark.parametrize("memory", ["arm", "sc"])
@pytest.mark.parametrize("name", SMALL)
def test_decisions_called_independent_commute(name: str, memory: str) -> None:
    prog = _program(name, memory)
    checked, bad = _pairs_commute(prog.machine, walks=8, seed=1)
    assert bad == []
    assert checked > 0  # the relation is not trivially "dependent"


def test_stores_to_different_locations_do_not_commute_under_the_arm_model() -> None:
    # A thread's views are timestamps: which of two stores came first is state under
    # Promising-ARM (a later DMB orders the thread after every earlier message).  The
    # relation would be wrong without its CLOCK resource: check that it is needed.
    prog = _program("esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus")
    real = independence._CLOCK_ONLY
    try:
        independence._CLOCK_ONLY = frozenset()
        _, bad = _pairs_commute(prog.machine, walks=30, seed=0)
    finally:
        independence._CLOCK_ONLY = real
    assert bad


@pytest.mark.parametrize("memory", ["arm", "sc"])
@pytest.mark.parametrize("name", [*SMALL, "esop2020/SM+RW.litmus"])
def test_sleep_sets_reach_the_same_states_with_fewer_transitions(name: str,
                                                                 memory: str) -> None:
    results = []
    for sleep in (False, True):
        prog = _program(name, memory)
        e = explore(prog.machine, prog.observe, Bounds(max_states=10**6, max_seconds=600,
                                                       sleep_sets=sleep))
        assert e.complete
        results.append(e)
    full, reduced = results
    assert reduced.states == full.states  # sleep sets prune transitions, never states
    assert reduced.finals == full.finals
    assert set(reduced.findings) == set(full.findings)
    assert reduced.transitions <= full.transitions


def test_sleep_sets_prune_transitions() -> None:
    full = explore((p := _program("esop2020/SM+RW.litmus")).machine, p.observe,
                   Bounds(max_states=10**6, max_seconds=600, sleep_sets=False))
    reduced = explore((q := _program("esop2020/SM+RW.litmus")).machine, q.observe,
                      Bounds(max_states=10**6, max_seconds=600))
    assert reduced.transitions < full.transitions


def test_a_wrong_independence_relation_loses_states(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the two tests above: everything independent prunes real states.
    name = "esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus"
    prog = _program(name)
    right = explore(prog.machine, prog.observe, Bounds(max_states=10**6))
    monkeypatch.setattr("testbed.exploration.independent", lambda a, b: True)
    monkeypatch.setattr("testbed.exploration.footprint", lambda m, d: (d.cpu, frozenset(),
                                                                       frozenset()))
    prog = _program(name)
    wrong = explore(prog.machine, prog.observe, Bounds(max_states=10**6))
    assert wrong.states < right.states


# -- fetch liveness -------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "ratio"), [
    ("esop2020/MP.RF+dc+ctrl-isb-isb.litmus", 2),  # 5,100 -> 2,092 states when measured
    ("herd-ifetch/DIC0-IDC0/MP+irfi+dmb.ld.litmus", 3),  # 701 -> 221
    ("herd-ifetch/DIC1-IDC1/DIC1.WRC-inst.litmus", 2),  # 1,942 -> 798
    ("esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus", 1),
    ("herd-ifetch/DIC0-IDC0/SM.B+isb.litmus", 1),
    ("esop2020/CoFF.branches.litmus", 1),
])
def test_fetch_liveness_keeps_every_outcome_in_fewer_states(name: str, ratio: int) -> None:
    test = parse_file(LITMUS / name)
    bounds = Bounds(max_states=10**6, max_seconds=600, end_at_once=False)  # (liveness alone)
    without = run_test(test, liveness=False, bounds=bounds)
    with_ = run_test(test, bounds=bounds)
    assert without.complete and with_.complete
    assert set(with_.finals) == set(without.finals)
    assert with_.ok == without.ok
    assert not with_.findings and not without.findings
    assert with_.explored * ratio <= without.explored


def test_a_thread_switched_off_may_fetch_nothing() -> None:
    prog = _program("esop2020/WRC.F.FF.litmus")
    m = prog.machine
    m.reset()
    live = m._liveness
    assert live is not None
    c = m.cpus[0]
    both = live(m, c)
    assert both is not None
    fetch, view = both
    assert fetch and view <= fetch  # it has code to run
    while c.state is CpuState.RUNNABLE:
        m.apply(step(0))
    assert live(m, c) == (frozenset(), frozenset())


def test_a_step_outside_the_declared_liveness_is_a_finding() -> None:
    prog = _program("esop2020/WRC.F.FF.litmus")
    m = prog.machine
    # A declaration too small: each CPU may fetch only where it is now.
    m._liveness = lambda m, c: (frozenset({c.pc}), frozenset({c.pc}))
    m.reset()
    m.apply(next(d for d in enabled(m) if d.kind.value == "step"))
    assert [f.oracle for f in m.findings] == ["fetch-scope"]
    assert "liveness" in m.findings[0].message


# -- the cached key of the Arm model ---------------------------------------------------------
def test_the_cached_arm_key_is_the_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = []
    real = Machine.state_key

    def state_key(self: Machine) -> bytes:
        key = real(self)
        assert self.arm is not None and self.arm_key == self.arm.key()
        checked.append(key)
        return key

    monkeypatch.setattr(Machine, "state_key", state_key)
    for name in ["esop2020/MP.RF+dc+ctrl-isb.litmus", "aarch64-data/catalogue/2+2W.litmus",
                 "herd-ifetch/DIC0-IDC0/MP.RF+cachesync+ctrlisb.litmus",
                 "esop2020/MP.RF+[dc]-ic+ctrl-isb.litmus"]:
        prog = _program(name)
        explore(prog.machine, prog.observe, Bounds(max_states=5000, end_at_once=False))
    assert len(checked) > 1000


# -- a thread's end, taken at once (independence.at_end) -------------------------------------
def _finals_with_cores(prog: LitmusProgram, end_at_once: bool) -> tuple[set[object],
                                                                         set[object], int]:
    """Each final state's observation with the digest of its core (registers, memory, the
    Arm model: all but the fetch model), the findings, and the states explored."""
    e = explore(prog.machine, lambda m: (prog.observe(m), snapshot._core_key(m)),
                Bounds(max_states=10**6, max_seconds=600, end_at_once=end_at_once))
    assert e.complete
    return set(e.finals), set(e.findings), e.states


# Each of these has final states that differ only in the fetch model's state (the PoU,
# the I-cache of a CPU that fetches nothing more), which ending at once does not reach.
ENDS = [*SMALL, "herd-ifetch/DIC1-IDC1/DIC1.coFF.litmus",
        "herd-ifetch/DIC1-IDC1/DIC1.WRC-inst.litmus", "herd-ifetch/DIC0-IDC0/coFW-1.litmus",
        "aarch64-data/catalogue/LB+dmb.sy+data-amo.swp.litmus"]


@pytest.mark.parametrize("memory", ["arm", "sc"])
@pytest.mark.parametrize("name", ENDS)
def test_ending_at_once_reaches_every_final_state_but_the_fetch_models(name: str,
                                                                        memory: str) -> None:
    full = _finals_with_cores(_program(name, memory), end_at_once=False)
    reduced = _finals_with_cores(_program(name, memory), end_at_once=True)
    assert reduced[0] == full[0]
    assert reduced[1] == full[1]
    assert reduced[2] < full[2]


def test_a_thread_end_is_taken_with_the_step_that_reaches_it() -> None:
    prog = _program("esop2020/CoRF+ctrl-isb.litmus")
    m = prog.machine
    m.reset()
    ended = 0
    while not m.done:
        d = next(d for d in enabled(m) if d.kind.value == "step")
        m.apply(d)
        end = independence.at_end(m, d)
        c = m.cpus[d.cpu]
        at_halt = c.state is CpuState.RUNNABLE and c.kind_at.get(c.pc) == OpKind.HALT
        assert (end is not None) == at_halt
        if end is not None:
            m.apply(end)
            assert c.state is CpuState.OFF
            ended += 1
    assert ended == m.ncpus
    # and the witnesses explore() gives replay to their observations, ends included
    e = explore(m, prog.observe, Bounds(max_states=10**6))
    for obs, path in e.witnesses.items():
        m.reset()
        for d in path:
            m.apply(d)
        assert m.done and prog.observe(m) == obs


def test_ending_more_than_the_end_at_once_loses_final_states(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the test above: taking a CPU's next step with the one before it
    # (a pair made atomic, not an end) is caught by the same comparison.
    name = "esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus"
    full = _finals_with_cores(_program(name), end_at_once=False)

    def wrong(m: Machine, d: Decision) -> Decision | None:
        c = m.cpus[d.cpu] if 0 <= d.cpu < m.ncpus else None
        return d if (d.kind.value == "step" and c is not None and not m.stopped
                     and d.cpu in m.steppable()) else None

    monkeypatch.setattr("testbed.exploration.at_end", wrong)
    reduced = _finals_with_cores(_program(name), end_at_once=True)
    assert reduced[0] != full[0]


# -- where a test may patch code (litmus_run._store_targets) ---------------------------------
def test_the_words_a_test_stores_to_are_found_exactly() -> None:
    prog = _program("esop2020/FOW.litmus")
    assert prog.patchable == {prog.label(0, "g")}
    # A base register the thread writes (an address dependency): every label, as before.
    assert _program("esop2020/SM+RW+RW.litmus").patchable is None
    # Data stores only: no text word.
    assert _program("aarch64-data/catalogue/2+2W.litmus").patchable == frozenset()


@pytest.mark.parametrize("name", [
    "esop2020/MP.RF+[dc]-ic+ctrl-isb.litmus",
    "esop2020/ISA2.F+dmb+cachesync+ctrl-isb.litmus",
    "esop2020/CoFF.branches.litmus",
    "esop2020/W+F+branches.litmus",
    "herd-ifetch/DIC0-IDC0/SM.B+isb.litmus",
    "herd-ifetch/DIC1-IDC1/DIC1.WRC-inst.litmus",
])
def test_store_targets_keep_every_final_state(name: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    precise = _program(name)
    assert precise.patchable is not None
    exact = _finals_with_cores(precise, end_at_once=True)
    monkeypatch.setattr("testbed.litmus_run._store_targets", lambda prog, indirect: None)
    every = _finals_with_cores(_program(name), end_at_once=True)
    assert exact[:2] == every[:2]
    assert not exact[1]  # no fetch-scope finding: the walks held at every step
    assert exact[2] <= every[2]


def test_a_store_target_left_out_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # FOW patches g with branches to l1 and l2.  A walk that does not know g is patched
    # goes only to l0, and the step from g runs l2 or l1 unchecked to the thread's end;
    # so once g is stored to, the liveness declares nothing, which the machine reports.
    monkeypatch.setattr("testbed.litmus_run._store_targets",
                        lambda prog, indirect: frozenset())
    prog = _program("esop2020/FOW.litmus")
    m = prog.machine
    m.reset()
    assert m._liveness is not None and m._liveness(m, m.cpus[1]) is not None
    m.apply(step(0))  # STR W0, [X2]: g
    assert m.model.touched and m._liveness(m, m.cpus[1]) is None
    assert [f.oracle for f in m.findings] == ["fetch-scope"]
    e = explore(m, prog.observe, Bounds(max_states=10**6, max_seconds=600))
    assert {f.oracle for f in e.findings.values()} == {"fetch-scope"}


def test_registers_written() -> None:
    from testbed.access import registers_written
    assert registers_written(0xB9400080) == {"x0"}  # LDR W0, [X4]
    assert registers_written(0xF8408C80) == {"x0", "x4"}  # LDR X0, [X4, #8]!
    assert registers_written(0xB8404480) == {"x0", "x4"}  # LDR W0, [X4], #4
    assert registers_written(0xD63F00A0) == {"x30"}  # BLR X5
    assert registers_written(0xB9000040) == frozenset()  # STR W0, [X2]
    assert registers_written(0xA9400880) == {"x0", "x2"}  # LDP X0, X2, [X4]
