"""Exhaustive exploration: complete on small scenarios, sound, witnesses replay, bounds."""

from __future__ import annotations

import pytest

from testbed.exploration import Bounds, explore
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk, Replay

OLD = 1


def small(name: str) -> tuple[Session, object]:
    sc = load_scenario(name)()
    sc.passes = 2  # type: ignore[attr-defined]
    return Session(sc), sc


@pytest.mark.parametrize(("name", "stale_possible"), [("nosync_isb", False),
                                                      ("nosync_stale", True)])
def test_exploration_is_complete_and_decides_the_race(name: str,
                                                      stale_possible: bool) -> None:
    session, sc = small(name)
    r = explore(session.machine, lambda m: tuple(sc.passes_seen(m)))  # type: ignore[attr-defined]
    assert r.complete and r.reason == ""
    assert r.states > 100
    stale = [obs for obs in r.finals if (1, OLD) in obs]
    assert bool(stale) is stale_possible
    # Every outcome comes with a schedule that reproduces it from the baseline.
    for obs, path in r.witnesses.items():
        session.run(Replay(path))
        assert tuple(sc.passes_seen(session.machine)) == obs  # type: ignore[attr-defined]


def test_exploration_covers_what_random_runs_find() -> None:
    session, sc = small("nosync_stale")
    r = explore(session.machine, lambda m: tuple(sc.passes_seen(m)))  # type: ignore[attr-defined]
    for seed in range(200):
        session.run(RandomWalk(seed, p_model=0.3))
        assert tuple(sc.passes_seen(session.machine)) in r.finals  # type: ignore[attr-defined]


def test_bounds_are_reported_honestly() -> None:
    session, _ = small("nosync_stale")
    r = explore(session.machine, lambda m: 0, Bounds(max_states=50))
    assert not r.complete and "state bound" in r.reason
    r = explore(session.machine, lambda m: 0, Bounds(max_seconds=0.0))
    assert not r.complete and "time bound" in r.reason


def test_save_load_returns_to_the_same_state() -> None:
    session, _ = small("nosync_stale")
    m = session.machine
    m.reset()
    strategy = RandomWalk(4, p_model=0.3)
    strategy.begin(m)
    for i in range(6):
        d = strategy.choose(m)
        assert d is not None
        m.apply(d, i)
    saved, key = m.save(), m.state_key()
    rest = []
    while (d := strategy.choose(m)) is not None:
        rest.append(d)
        m.apply(d)
    end_key, trace = m.state_key(), m.trace_digest()
    assert end_key != key
    m.load(saved)
    assert m.state_key() == key
    for d in rest:
        m.apply(d)
    assert m.state_key() == end_key and m.trace_digest() == trace
