"""The compiled walker (``scheduler._walker``, ``_fastpath.c``'s ``walk``): a random walk's
commonest decisions drawn and performed in C must be exactly what ``RandomWalk.choose``
and ``Machine.apply`` do in Python.

Every scenario runs the same seeds with the walker and without it
(``TESTBED_WALKER=0``): the schedules, traces, events, findings and final machine
states must be equal, and the walker must have taken decisions.  The parts it copies
from Python (the Mersenne Twister's draws, ``isa.is_cmodx``) are checked against the
originals on their own.
"""

from __future__ import annotations

import random
from typing import Any

import corpus
import pytest

from testbed import fastpath, isa
from testbed.machine import Machine
from testbed.scenario import Session, list_scenarios, load_scenario
from testbed.strategies import RandomWalk

pytestmark = pytest.mark.skipif(not fastpath.available(),
                                reason="the compiled fast path was not built here")

SEEDS = range(6)


def _runs(name: str, walker: bool, monkeypatch: pytest.MonkeyPatch, *, seeds: range = SEEDS,
          budget: int = 200_000, **walk: float) -> tuple[list[dict[str, Any]], int, int]:
    """Each seed's digests, the decisions the walker took, and how many of its steps
    Python finished (``Machine._walked``)."""
    monkeypatch.setenv("TESTBED_WALKER", "1" if walker else "0")
    finished = [0]
    original = Machine._walked

    def walked(self: Machine, *args: int) -> None:
        finished[0] += 1
        original(self, *args)

    monkeypatch.setattr(Machine, "_walked", walked)
    s = Session(load_scenario(name)(), memory="sc", budget=budget)
    out = []
    for seed in seeds:
        r = s.run(RandomWalk(seed, **walk))
        out.append({"schedule": r.schedule.decisions, **corpus.run_digests(r, s.machine)})
    return out, s.machine.walked, finished[0]


@pytest.mark.parametrize("name", sorted(list_scenarios()))
def test_the_walker_takes_the_decisions_python_takes(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, walked, _ = _runs(name, True, monkeypatch)
    slow, none, _ = _runs(name, False, monkeypatch)
    assert fast == slow
    assert walked > 0 and none == 0


@pytest.mark.parametrize("walk", [{"p_model": 0.4, "p_irq": 0.1}, {"p_model": 0.0, "p_irq": 0.0},
                                  {"p_model": 0.0, "p_irq": 1.0}])
def test_the_walker_leaves_model_choices_and_interrupts_to_python_as_drawn(
        walk: dict[str, float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Other probabilities move where the draws fall: a model choice or an IRQ the walk
    must not take (and must not have drawn)."""
    for name in ("stop_machine_patch", "jump_label_kick"):
        fast, walked, _ = _runs(name, True, monkeypatch, **walk)
        slow, _, _ = _runs(name, False, monkeypatch, **walk)
        assert fast == slow
        assert walked > 0


def test_steps_the_walker_cannot_finish_are_finished_in_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that ends otherwise than before a visible operation (a data access to the
    text, a spin hint to fold) is handed to Machine._walked, and the runs are equal."""
    fast, _, finished = _runs("jump_label_nosync", True, monkeypatch)
    slow, _, _ = _runs("jump_label_nosync", False, monkeypatch)
    assert fast == slow
    assert finished > 0


@pytest.mark.parametrize(("name", "budget"), [("stop_machine_patch", 12),
                                              ("stop_machine_patch", 21),
                                              ("brk_refcount_sync", 15),
                                              ("brk_refcount_sync", 30)])
def test_a_run_out_of_budget_in_the_walker_is_the_same_liveness_finding(
        name: str, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of a few dozen instructions, runs the walker started end in liveness
    findings after tens of decisions: Python must reach the same ones."""
    fast, walked, _ = _runs(name, True, monkeypatch, budget=budget, seeds=range(4))
    slow, _, _ = _runs(name, False, monkeypatch, budget=budget, seeds=range(4))
    assert fast == slow
    assert walked > 0
    assert any(f[0] == "liveness" and run["decisions"] > 5 for run in fast
               for f in run["findings"])


def test_the_walker_reads_the_random_state_python_draws_from() -> None:
    """rng_peek reads the Random in place; the values are the ones it then returns, at
    every point of its state, and None where Python must regenerate it first."""
    fp = fastpath._module()
    assert fp is not None
    for seed in (0, 1, 12345, 2**64 + 7):
        r = random.Random(seed)
        assert fp.rng_peek(r, 3) == [None] * 3  # (a fresh Random regenerates first)
        for _ in range(700):
            peeked = fp.rng_peek(r, 2)
            want = [r.random(), r.random()]
            assert [p for p in peeked if p is not None] == want[:len(
                [p for p in peeked if p is not None])]
            if None not in peeked:
                assert peeked == want


def test_the_walker_refuses_what_is_not_a_random() -> None:
    fp = fastpath._module()
    with pytest.raises(TypeError, match=r"not a random\.Random"):
        fp.rng_peek(object(), 2)
    with pytest.raises(TypeError, match=r"not a random\.Random"):
        fp.walk(None, (), (), [1, 2, 3], 0.95, (), (0,) * 7, [], 10)


def test_a_random_laid_out_otherwise_turns_the_walker_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fp = fastpath._module()
    assert fastpath.walk_function() is fp.walk
    monkeypatch.setattr(fp, "rng_peek", lambda rng, n: [0.5] * n)
    assert fastpath.walk_function() is None
    monkeypatch.undo()
    monkeypatch.setenv("TESTBED_WALKER", "0")
    assert fastpath.walk_function() is None


def test_the_walkers_cmodx_set_is_isa_is_cmodx() -> None:
    """On every word of the kernels' linked image, the encodings of each class, and
    random words."""
    fp = fastpath._module()
    image = corpus.session("jump_label_nosync", "sc", False).image
    words = {int.from_bytes(image.text[i:i + 4], "little") for i in range(0, len(image.text), 4)}
    words |= {0x14000000, 0x97FFFFFF, isa.NOP, 0xD5033FDF, 0xD5033FDE, 0xD4200000, 0xD4200001,
              0xD4000001, 0xD4000002, 0xD4000003, 0xD4000000, 0xD4000004, 0x54000000,
              0x54000010, 0x34000000, 0xB5000000, 0x36000000, 0xB7000000, 0xD65F03C0}
    rng = random.Random(7)
    words |= {rng.getrandbits(32) for _ in range(20000)}
    assert {w for w in words if fp.is_cmodx(w)} == {w for w in words if isa.is_cmodx(w)}
    assert any(isa.is_cmodx(w) for w in words) and not all(isa.is_cmodx(w) for w in words)


@pytest.mark.parametrize("name", ["jump_label_nosync", "brk_refcount_sync", "cmodx_violation"])
def test_an_isb_with_nothing_to_catch_up_is_walked(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker takes an ``ISB`` whose catch-up would change nothing itself (and not
    one followed by a foldable operation): fewer catch-ups reach ``textside.catch_up``
    (from Python's step or the walker's call), and every CPU's last context
    synchronization event (what the CMODX oracle judges by) is the same."""
    from testbed import textside

    def runs(walker: bool) -> tuple[list[object], int]:
        monkeypatch.setenv("TESTBED_WALKER", "1" if walker else "0")
        isbs = [0]
        original = textside.catch_up

        def counted(m: Machine, c: Any, why: str) -> None:
            isbs[0] += why == "ISB"
            original(m, c, why)

        monkeypatch.setattr("testbed.execute.catch_up", counted)
        monkeypatch.setattr("testbed.scheduler.catch_up", counted)
        s = Session(load_scenario(name)(), memory="sc")
        out: list[object] = []
        for seed in SEEDS:
            r = s.run(RandomWalk(seed))
            out.append((r.schedule.decisions, r.trace_digest(),
                        [c.last_cse for c in s.machine.cpus], [c.pc for c in s.machine.cpus]))
        return out, isbs[0]

    fast, in_python = runs(True)
    slow, every = runs(False)
    assert fast == slow
    assert in_python < every


def test_the_walker_refuses_objects_laid_out_otherwise() -> None:
    """It reads the Cpu's slots at their offsets and the Machine's attributes in its
    dict: a machine whose type has a descriptor of one of those names, or a CPU whose
    attribute is no slot, is refused with a TypeError, not read wrongly."""
    fp = fastpath._module()
    rng = random.Random(1)
    rng.random()
    consts = (0,) * 10

    class Stopped:
        @property
        def stopped(self) -> bool:
            return False

    with pytest.raises(TypeError, match=r"Stopped\.stopped is a descriptor"):
        fp.walk(Stopped(), (), (), rng, 0.95, (), consts, [], 10)

    class Plain:  # attributes in a dict, not slots
        def __init__(self) -> None:
            self.exc = self.state = self.parked = self.pc = None

    class Bare:
        def __init__(self) -> None:
            self.gic, self.pure_loads, self.fetch_points, self.budget = None, (), (), 10

    with pytest.raises(TypeError, match=r"Plain\.exc is not a slot"):
        fp.walk(Bare(), (Plain(),), (None,), rng, 0.95, (), consts, [], 10)


def test_the_compiled_instruction_count_is_trace_instructions() -> None:
    """``_fastpath.instructions`` counts what ``trace.instructions`` counts: blocks'
    words, not catch-up entries (``(step, ~word, value)``), on real runs' logs and on
    made-up ones; a log that is not one is a TypeError, never a wrong count."""
    from testbed import trace
    count = fastpath.function("instructions")
    made = [[(0, 0x1000, 0x1010), (1, ~0x40, 0xD503201F), (2, 0x2000, 0x2004)], [],
            [(5, 0x3000, 0x3000), (6, ~0, 7), (7, 0x10, 0x40)]]
    assert count(made) == trace.instructions(made) == 4 + 1 + 0 + 12
    assert count([]) == 0
    s = Session(load_scenario("jump_label_nosync")(), memory="sc")
    totals = set()
    for seed in range(8):
        r = s.run(RandomWalk(seed))
        logs = s.machine.logs()
        assert any(start < 0 for log in logs for _, start, _ in log)  # catch-ups logged
        assert count(logs) == trace.instructions(logs) == r.instructions
        totals.add(r.instructions)
    assert len(totals) > 1
    for bad in ([(0, 1, 2)], [[(0, 1)]], [[[0, 1, 2]]], [[(0, "a", 2)]]):
        with pytest.raises(TypeError):
            count(bad)  # type: ignore[arg-type]


def test_a_wfi_made_visible_mid_run_hands_the_walk_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch can make a WFI visible in the middle of a run (``Machine.has_wfi`` turns
    true at the catch-up): from then on a CPU at the WFI is not steppable, so the walker,
    which draws among every runnable CPU, must stop and leave the draws to Python.  The
    tests' own scenario patches CPU1's NOP into WFI while CPU2 counts on: the same
    schedules, traces and states with the walker as without, in runs where CPU1 sleeps
    for good with CPU2 still counting."""
    fast, walked, asleep = _own_runs(True, monkeypatch, spin=0)
    slow, none, _ = _own_runs(False, monkeypatch, spin=0)
    assert fast == slow
    assert walked > 0 and none == 0 and asleep >= 3


def test_an_isb_whose_catch_up_makes_a_spin_hint_next_resumes_in_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker performs an ``ISB`` whose catch-up changes something through
    ``textside.catch_up``; when that catch-up shows a foldable operation right after it
    (the tests' scenario patches the NOP after CPU1's ISB into YIELD), the run on is
    ``execute.resume``'s, which folds it: the same as without the walker, and the path is
    taken."""
    from testbed import scheduler
    resumed = [0]
    original = scheduler.resume

    def counting(m: Machine, c: Any, pc: int) -> None:
        resumed[0] += 1
        original(m, c, pc)

    monkeypatch.setattr(scheduler, "resume", counting)
    fast, walked, _ = _own_runs(True, monkeypatch, spin=1)
    slow, _, _ = _own_runs(False, monkeypatch, spin=1)
    assert fast == slow
    assert walked > 0 and resumed[0] >= 2


def _own_runs(walker: bool, monkeypatch: pytest.MonkeyPatch,
              **params: int) -> tuple[list[dict[str, Any]], int, int]:
    """8 seeds of tests/data/wfi_patch: digests, the walker's decisions, and how many
    runs ended with a CPU asleep for good."""
    from pathlib import Path

    cls = load_scenario(str(Path(__file__).parent / "data" / "wfi_patch" / "wfi_patch.py"))
    monkeypatch.setenv("TESTBED_WALKER", "1" if walker else "0")
    out, walked, asleep = [], 0, 0
    for seed in range(8):
        scenario = cls()
        for k, v in params.items():
            setattr(scenario, k, v)
        s = Session(scenario, memory="sc")  # (has_wfi stays true once a run sets it)
        r = s.run(RandomWalk(seed))
        out.append({"schedule": r.schedule.decisions, **corpus.run_digests(r, s.machine)})
        walked += s.machine.walked
        asleep += any("wait for an interrupt" in f.message for f in r.findings)
    return out, walked, asleep
