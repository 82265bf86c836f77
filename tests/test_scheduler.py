"""Determinism, replay, schedule files and their refusal of foreign images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.memory import CacheType
from testbed.scenario import Session, load_scenario
from testbed.schedule import (
    Decision,
    DecisionKind,
    InvalidDecision,
    Schedule,
    ScheduleError,
    ScheduleMismatch,
)
from testbed.strategies import RandomWalk, Replay, RoundRobin


@pytest.fixture(scope="module")
def session() -> Session:
    return Session(load_scenario("nosync_stale")())


def test_same_seed_same_schedule_same_trace(session: Session) -> None:
    a = session.run(RandomWalk(11, p_model=0.2))
    digest_a, decisions_a = a.trace_digest(), a.schedule.decisions
    b = session.run(RandomWalk(11, p_model=0.2))
    assert b.schedule.decisions == decisions_a
    assert b.trace_digest() == digest_a
    c = session.run(RandomWalk(12, p_model=0.2))
    assert c.schedule.decisions != decisions_a  # another seed, another interleaving


def test_100_random_seeds_replay_to_the_same_trace(session: Session, tmp_path: Path) -> None:
    digests = set()
    for seed in range(100):
        original = session.run(RandomWalk(seed, p_model=0.1))
        digest = original.trace_digest()
        findings = [f.signature() for f in original.findings]
        path = tmp_path / f"s{seed}.json"
        original.schedule.save(path)
        replayed = session.replay(Schedule.load(path))  # through the JSON file
        assert replayed.trace_digest() == digest, f"seed {seed} replays differently"
        assert [f.signature() for f in replayed.findings] == findings
        assert replayed.decisions == original.decisions
        digests.add(digest)
    assert len(digests) > 20  # the seeds really explore different interleavings


def test_model_choices_are_recorded_and_replayed(session: Session) -> None:
    result = session.run(RandomWalk(3, p_model=0.5))
    kinds = {d.kind for d in result.schedule.decisions}
    assert DecisionKind.STEP in kinds and kinds - {DecisionKind.STEP}
    assert session.replay(result.schedule).trace_digest() == result.trace_digest()


def test_round_robin_alternates_cpus(session: Session) -> None:
    result = session.run(RoundRobin())
    cpus = [d.cpu for d in result.schedule.decisions[:6]]
    assert cpus == [0, 1, 0, 1, 0, 1]


def test_foreign_schedule_is_refused(session: Session) -> None:
    result = session.run(RandomWalk(5))
    doc = json.loads(result.schedule.to_json())
    doc["image"] = "0" * 64
    foreign = Schedule.from_json(json.dumps(doc))
    with pytest.raises(ScheduleMismatch, match="kernel code changed"):
        session.replay(foreign)
    doc = json.loads(result.schedule.to_json())
    doc["scenario"] = "nosync_isb"
    with pytest.raises(ScheduleMismatch, match="scenario"):
        session.replay(Schedule.from_json(json.dumps(doc)))
    doc = json.loads(result.schedule.to_json())
    doc["config"]["cache"] = CacheType.DIC1.value
    with pytest.raises(ScheduleMismatch, match="cache"):
        session.replay(Schedule.from_json(json.dumps(doc)))


def test_bad_schedule_files_name_the_file_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "cmodx-testbed/schedule",\n "version": 1,\n oops}')
    with pytest.raises(ScheduleError, match=r"bad.json:3: not JSON"):
        Schedule.load(bad)
    bad.write_text('{"format": "cmodx-testbed/schedule", "version": 99}')
    with pytest.raises(ScheduleError, match="version 99"):
        Schedule.load(bad)
    bad.write_text(json.dumps({"format": "cmodx-testbed/schedule", "version": 1,
                               "scenario": "x", "image": "y", "config": {},
                               "decisions": [["jump", 1]]}))
    with pytest.raises(ScheduleError, match="decision 0: unknown decision kind 'jump'"):
        Schedule.load(bad)
    with pytest.raises(ScheduleError, match="cannot read"):
        Schedule.load(tmp_path / "missing.json")
    for fold in (3, False, "2", 2.0):  # fold levels: true (1) or 2 (Machine.fold)
        bad.write_text(json.dumps({"format": "cmodx-testbed/schedule", "version": 1,
                                   "scenario": "x", "image": "y", "config": {"fold": fold},
                                   "decisions": []}))
        with pytest.raises(ScheduleError, match=r"config\.fold' must be true or 2"):
            Schedule.load(bad)


def test_an_impossible_decision_is_refused(session: Session) -> None:
    with pytest.raises(InvalidDecision, match="decision 0"):
        session.run(Replay([Decision(DecisionKind.IRQ, 1)]))
    with pytest.raises(InvalidDecision, match="no CPU7"):
        session.run(Replay([Decision(DecisionKind.STEP, 7)]))
    with pytest.raises(InvalidDecision, match="catch-up would change nothing"):
        session.run(Replay([Decision(DecisionKind.CATCH_UP, 1)]))


def test_decision_json_round_trip() -> None:
    for d in (Decision(DecisionKind.STEP, 3), Decision(DecisionKind.FILL_DSIDE, 1, 0x40),
              Decision(DecisionKind.WRITE_BACK, -1, 0x80), Decision(DecisionKind.IRQ, 0)):
        assert Decision.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_random_walk_model_probability(session: Session) -> None:
    none = session.run(RandomWalk(8, p_model=0.0))
    assert all(d.kind is DecisionKind.STEP for d in none.schedule.decisions)
    many = session.run(RandomWalk(8, p_model=0.9, p_irq=0.0))
    model = [d for d in many.schedule.decisions if d.is_model]
    assert len(model) >= 3  # each chosen whenever one could change an outcome
    with pytest.raises(ValueError):
        RandomWalk(1, p_model=0.8, p_irq=0.5)


def test_runs_reuse_the_unicorn_instances(session: Session) -> None:
    ucs = [id(c.uc) for c in session.machine.cpus]
    for seed in range(5):
        session.run(RandomWalk(seed))
    assert [id(c.uc) for c in session.machine.cpus] == ucs
