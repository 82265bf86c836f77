"""PCT (Burckhardt et al., ASPLOS 2010): priorities, change points, spin demotion."""

from __future__ import annotations

from itertools import pairwise

import pytest

from testbed.scenario import Session, load_scenario
from testbed.strategies import PCT


@pytest.fixture(scope="module")
def stale() -> Session:
    return Session(load_scenario("nosync_stale")())


def switches(cpus: list[int]) -> int:
    return sum(1 for a, b in pairwise(cpus) if a != b)


def test_deterministic_per_seed(stale: Session) -> None:
    a = stale.run(PCT(5)).schedule.decisions
    assert stale.run(PCT(5)).schedule.decisions == a
    assert any(stale.run(PCT(s)).schedule.decisions != a for s in range(6, 12))


def test_depth_one_runs_the_highest_priority_cpu_to_the_end(stale: Session) -> None:
    for seed in range(10):
        result = stale.run(PCT(seed, depth=1, p_model=0.0, p_irq=0.0))
        cpus = [d.cpu for d in result.schedule.decisions]
        assert switches(cpus) == 1, cpus  # one CPU runs until it is done, then the other


def test_change_points_are_depth_minus_one_within_k(stale: Session) -> None:
    pct = PCT(3, depth=4, k=20)
    stale.run(pct)
    assert len(pct.change_points) == 3 and pct.change_points <= set(range(1, 21))
    result = stale.run(PCT(3, depth=3, k=20, p_model=0.0, p_irq=0.0))
    # d-1 = 2 priority drops: at most 3 stretches of one CPU... plus the end of a CPU.
    assert switches([d.cpu for d in result.schedule.decisions]) <= 3


def test_spinning_cpus_are_demoted_so_kicks_complete() -> None:
    session = Session(load_scenario("jump_label_kick")())
    for seed in range(30):
        result = session.run(PCT(seed, depth=1, p_model=0.0))
        assert result.finished and result.findings == [], result.findings


@pytest.mark.parametrize(("name", "oracle"), [("nosync_stale", "stale-after-flush"),
                                              ("jump_label_nosync", "static-key-incoherence")])
def test_pct_finds_the_races(name: str, oracle: str) -> None:
    session = Session(load_scenario(name)())
    k = 200
    for seed in range(300):
        result = session.run(PCT(seed, k=k))
        k = max(k, result.decisions)
        if any(f.oracle == oracle for f in result.findings):
            return
    raise AssertionError(f"PCT found no {oracle} in 300 runs")
