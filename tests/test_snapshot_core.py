"""Saved states share their core (``snapshot.Core``) across decisions of the fetch model
alone: ``save`` reuses the core the machine holds, ``load`` skips putting back a core
the machine holds, and ``state_key`` digests each core once.  Each of those is right
only if the machine's core parts really are the held core's; this checks it at every
save, load and key of explorations and searches that park CPUs, make promises, and run
under both data-memory models, against a fingerprint taken from the machine itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import corpus
import pytest

from testbed import snapshot
from testbed.exploration import Bounds, explore
from testbed.litmus import parse_file
from testbed.litmus_run import build
from testbed.machine import Machine
from testbed.memory import CacheType
from testbed.search import SearchBounds, search

LITMUS = Path(__file__).resolve().parents[2] / "shared" / "litmus"


def fingerprint(m: Machine) -> tuple[Any, ...]:
    """The machine's core parts as they are, read from the machine (not from a save)."""
    return (
        [(c.read_regs(), c.read_spsr(), bytes(c.stack), c.state, c.pc, c.exc, c.irq_masked,
          c.last_cse, c.spun, c.parked, c.mark) for c in m.cpus],
        bytes(m.data[:m.data_extent]), bytes(m.percpu), tuple(m.text_stores),
        m.gic.state(), m.stopped, m.promise_phase, m.invalid,
        None if m.arm is None else _arm(m.arm.save()),
    )


def _arm(saved: tuple[object, ...]) -> str:
    """The Arm model's state but its record of initial values (``ArmMemory.know``, filled
    when a location is first looked at, even by the choices offered: a cache of what the
    location held before any message, which a load may drop and a later look refills)."""
    msgs, threads, _initial, wviews, by_loc = saved
    return repr((msgs, threads, wviews, by_loc))


class Checker:
    """Wraps Machine.save, load and state_key: every core reused or kept is the
    machine's, and every key is the key computed afresh."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prints: dict[int, tuple[Any, ...]] = {}
        self.cores: list[snapshot.Core] = []  # (kept alive: ids stay unique)
        self.shared = self.skipped = self.cached = 0
        save, load, key = Machine.save, Machine.load, Machine.state_key

        def checked_save(m: Machine) -> snapshot.MachineState:
            held = m.core_held
            st = save(m)
            now = fingerprint(m)
            if id(st.core) in self.prints:
                assert self.prints[id(st.core)] == now, "a reused core is not the machine's"
                self.shared += held is not None
            else:
                self.prints[id(st.core)] = now
                self.cores.append(st.core)
            return st

        def checked_load(m: Machine, st: snapshot.MachineState, **kw: bool) -> None:
            self.skipped += m.core_held is st.core
            load(m, st, **kw)
            if id(st.core) in self.prints:
                assert fingerprint(m) == self.prints[id(st.core)], "a kept core differs"

        def checked_key(m: Machine) -> bytes:
            cached = (m.core_held is not None and bool(m.core_held.key)) or \
                m.core_key_pending is not None
            got = key(m)
            held, pending, live = m.core_held, m.core_key_pending, m.live_for
            m.core_held = m.core_key_pending = m.live_for = None
            try:
                assert key(m) == got, "a cached core key is not the fresh one"
            finally:
                m.core_held, m.core_key_pending, m.live_for = held, pending, live
            self.cached += cached
            return got

        monkeypatch.setattr(Machine, "save", checked_save)
        monkeypatch.setattr(Machine, "load", checked_load)
        monkeypatch.setattr(Machine, "state_key", checked_key)


@pytest.mark.parametrize("path,cache", [
    ("esop2020/FOW.litmus", None),  # three CPUs, promises, IDC=0: fills, write-backs
    ("esop2020/MP.RF+[dc]-ic+ctrl-isb.litmus", None),  # deferred maintenance completes
    ("esop2020/SM+RW.litmus", CacheType.DIC1),
])
def test_litmus_explorations(monkeypatch: pytest.MonkeyPatch, path: str,
                             cache: CacheType | None) -> None:
    prog = build(parse_file(LITMUS / path), cache)
    chk = Checker(monkeypatch)
    explore(prog.machine, prog.observe, Bounds(max_states=1500))
    assert chk.shared > 50 and chk.skipped > 50 and chk.cached > 100


@pytest.mark.parametrize("name,memory,promises", [
    ("brk_refcount_sync", "sc", False),  # folded spins: CPUs parked and unparked
    ("jump_label_nosync", "arm", False),
    ("brk_release", "arm", True),  # promises at any time
])
def test_scenario_searches(monkeypatch: pytest.MonkeyPatch, name: str, memory: str,
                           promises: bool) -> None:
    s = corpus.session(name, memory, promises, scope=True, fold=2)
    chk = Checker(monkeypatch)
    search(s, SearchBounds(1, 1, max_states=600))
    assert chk.cached > 50 and chk.shared + chk.skipped > 20


def test_a_model_choice_that_unparks_drops_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any decision but a step unparks every parked CPU (folded spins: ``Machine.fold``),
    a change of the core even when the decision is the fetch model's alone: the machine
    must not keep holding the core saved before it.  Random walks that draw model
    choices often, on scenarios that spin."""
    from testbed.scenario import Session, load_scenario
    from testbed.strategies import RandomWalk

    seen = [0]
    apply = Machine.apply

    def checked(m: Machine, d: Any, index: int = -1) -> None:
        if not (m._parked and d.is_model):
            apply(m, d, index)
            return
        st = m.save()
        apply(m, d, index)
        if any(c.parked != p for c, (_, p, _) in zip(m.cpus, st.core.spins, strict=True)):
            seen[0] += 1
            assert m.core_held is not st.core, "an unparking decision kept the core"

    monkeypatch.setattr(Machine, "apply", checked)
    for name in ("jump_label_kick", "brk_refcount_sync"):
        s = Session(load_scenario(name)(), memory="sc")
        for seed in range(30):
            s.run(RandomWalk(seed, p_model=0.3))
    assert seen[0] > 5


def test_a_decision_of_the_compiled_walker_drops_the_core() -> None:
    """The compiled walker changes the machine without ``apply``: after one decision it
    took, the machine holds no saved core (else a save would reuse the stale one and a
    load skip putting it back), and the reset puts the whole baseline back."""
    from testbed import fastpath, scheduler
    from testbed.scenario import Session, load_scenario
    from testbed.schedule import step
    from testbed.strategies import RandomWalk

    if not fastpath.available():
        pytest.skip("the compiled fast path was not built")
    s = Session(load_scenario("jump_label_nosync")(), memory="sc")
    m = s.machine
    m.reset()
    base = fingerprint(m)
    walked = 0
    for seed in range(20):
        m.reset()
        assert m.core_held is m.baseline.core  # type: ignore[union-attr]
        strategy = RandomWalk(seed, p_model=0.0, p_irq=0.0)
        strategy.begin(m)
        strategy.rng.random()  # (the walker cannot make a fresh Random's first draw)
        for cpu in range(m.ncpus):  # (each CPU's first stretch is Python's)
            m.apply(step(cpu))
        st = m.save()
        walk = scheduler._walker(m, strategy)
        assert walk is not None
        if walk([], 1) == 1:
            walked += 1
            assert m.core_held is None and m.core_key_pending is None
            m.load(st)
            assert m.core_held is st.core
        m.reset()
        assert fingerprint(m) == base
    assert walked > 10
