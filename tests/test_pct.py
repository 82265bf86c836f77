"""PCT (Burckhardt et al., ASPLOS 2010): priorities, change points, spin demotion."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import pytest
from conftest import MachineFactory

from testbed.scenario import Session, load_scenario
from testbed.scheduler import run
from testbed.strategies import PCT, RandomWalk, Strategy


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


# A depth-2 bug (Burckhardt et al.'s definition: two ordering constraints): CPU1 sees
# flag == 1 only if its load falls between CPU0's two stores (A < C and C < B).
TOY = """
	.text
	.global t_writer
t_writer:
	ldr	x1, =flag
	ldr	x4, =pad
	str	wzr, [x4]
	str	wzr, [x4, #4]
	mov	w2, #1
	str	w2, [x1]			// A: flag = 1
	str	wzr, [x1]			// B: flag = 0
	str	wzr, [x4, #8]
	ret
	.global t_reader
t_reader:
	ldr	x1, =flag
	ldr	x4, =seen_one
	str	wzr, [x4, #4]
	ldr	w3, [x1]			// C: read the flag
	str	w3, [x4]
	ret
	.data
	.align	3
	.global flag
flag:	.word	0
	.global pad
pad:	.word	0, 0, 0
	.global seen_one
seen_one:	.word	0, 0
"""


def toy_hits(make_machine: MachineFactory, make: Callable[[int], Strategy],
             runs: int) -> tuple[list[int], int]:
    m = make_machine(TOY, 2, starts=[(0, "t_writer", ()), (1, "t_reader", ())])
    hits = []
    steps = 0
    for seed in range(runs):
        result = run(m, make(seed), scenario="toy")
        assert result.finished and not result.findings
        steps = max(steps, result.decisions)
        if m.read_u32("seen_one") == 1:
            hits.append(seed)
    return hits, steps


def test_pct_finds_a_depth_2_bug_within_the_bound_of_the_theory(
        make_machine: MachineFactory) -> None:
    # Depth 1 (no change point): one CPU runs to its end before the other starts, so
    # the load is never between the stores.
    hits, k = toy_hits(make_machine, lambda s: PCT(s, depth=1, p_model=0, p_irq=0), 200)
    assert hits == [] and 6 <= k <= 20
    # Depth 2: one change point among k steps.  Theorem: each run finds a depth-2 bug
    # with probability p >= 1/(n k) for n CPUs and k steps.
    runs = 2000
    hits, _ = toy_hits(make_machine, lambda s: PCT(s, depth=2, k=k, p_model=0, p_irq=0),
                       runs)
    p = 1 / (2 * k)
    # The first hit comes within the runs after which missing has probability < 1e-6,
    # and the rate is at least the bound (less a wide margin for sampling: at 2000
    # runs, half the bound is over 7 standard deviations below it).
    assert hits and hits[0] < math.log(1e-6) / math.log(1 - p)
    assert len(hits) / runs >= p / 2, (len(hits), runs, k)


def test_random_walk_also_finds_the_toy_bug(
        make_machine: MachineFactory) -> None:
    hits, _ = toy_hits(make_machine, lambda s: RandomWalk(s, p_model=0, p_irq=0), 300)
    assert hits
