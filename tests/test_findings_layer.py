"""The findings layer: strategies by name, oracles chosen per session, the run loop,
reproducers written and read, the failure database's corrupt entries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from testbed.faildb import FailureDB
from testbed.findings import Finding, OracleName, finding_text, signature_key
from testbed.oracles import MACHINE_ORACLES, oracle_names
from testbed.runs import FindingsLog, read_reproducer, replay_command, run_schedules
from testbed.scenario import Session, load_scenario
from testbed.schedule import ScenarioSource, ScheduleError
from testbed.strategies import PCT, RandomWalk, RoundRobin, StrategySpec


def session(name: str, **kw: object) -> Session:
    return Session(load_scenario(name)(), **kw)  # type: ignore[arg-type]


# -- strategies -----------------------------------------------------------------------

def test_a_strategy_is_built_from_its_name_in_one_place() -> None:
    assert isinstance(StrategySpec("random").make(7), RandomWalk)
    pct = StrategySpec("pct", depth=2, k=50).make(7)
    assert isinstance(pct, PCT) and (pct.seed, pct.depth, pct.k) == (7, 2, 50)
    assert isinstance(StrategySpec("rr").make(0), RoundRobin)
    assert StrategySpec("rr").name == "round-robin"
    rw = StrategySpec("random", p_model=0.2).make(3)
    assert isinstance(rw, RandomWalk) and rw.p_model == 0.2 and rw.seed == 3


@pytest.mark.parametrize("kw, option", [
    ({"name": "foo"}, "--strategy"), ({"depth": 0}, "--depth"), ({"k": -1}, "--k"),
    ({"p_model": 5.0}, "--p-model"), ({"p_model": math.nan}, "--p-model"),
    ({"p_model": -0.1}, "--p-model"), ({"depth": True}, "--depth"),
])
def test_a_bad_strategy_option_is_refused_naming_it(kw: dict[str, object],
                                                    option: str) -> None:
    with pytest.raises(ValueError, match=option):
        StrategySpec(**kw)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_schedule_through_the_run_loop() -> None:
    s = session("jump_label_nosync")
    a = [r.result.schedule.decisions for r in run_schedules(s, StrategySpec("pct", k=80),
                                                            [5, 6])]
    b = [s.run(PCT(seed, k=80)).schedule.decisions for seed in (5, 6)]
    assert a == b and a[0] != a[1]


# -- oracles --------------------------------------------------------------------------

def test_a_session_runs_the_oracles_it_names() -> None:
    every = oracle_names(load_scenario("cmodx_violation")())
    assert OracleName.CMODX_VIOLATION in every and "scenario-check" in every
    full = session("cmodx_violation")
    without = session("cmodx_violation",
                      oracles=[n for n in every if n != OracleName.CMODX_VIOLATION])
    found = {f.oracle for r in run_schedules(full, StrategySpec(), range(20))
             for f in r.result.findings}
    assert OracleName.CMODX_VIOLATION in found
    assert not any(f.oracle == OracleName.CMODX_VIOLATION
                   for r in run_schedules(without, StrategySpec(), range(20))
                   for f in r.result.findings)
    assert not without.machine.cmodx_oracle and full.machine.cmodx_oracle


def test_the_scenario_check_is_an_oracle_too() -> None:
    stale = session("nosync_stale", oracles=[o.name for o in MACHINE_ORACLES])
    assert not any(r.result.findings for r in run_schedules(stale, StrategySpec(), range(10)))
    assert any(r.result.findings for r in run_schedules(session("nosync_stale"),
                                                        StrategySpec(), range(10)))


def test_an_unknown_oracle_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown oracle 'nope'"):
        session("nosync_stale", oracles=["nope"])


def test_trace_decode_runs_only_where_the_scenario_asks() -> None:
    assert OracleName.TRACE_DECODE in oracle_names(load_scenario("brk_no_sync")())
    assert OracleName.TRACE_DECODE not in oracle_names(load_scenario("nosync_stale")())


# -- reproducers ----------------------------------------------------------------------

def test_a_reproducer_records_its_findings_and_reads_back(tmp_path: Path) -> None:
    s = session("nosync_stale")
    log = FindingsLog(s, tmp_path)
    recs = [rec for r in run_schedules(s, StrategySpec(), range(20))
            for rec in log.add(r, str(r.seed))]
    assert recs and recs[0].reproducer is not None
    schedule, wanted = read_reproducer(recs[0].reproducer)
    assert (str(OracleName.STALE_AFTER_FLUSH), recs[0].finding.addr) in wanted
    assert schedule.source is None  # a built-in scenario: found again by name
    assert s.replay(schedule).findings[0].signature() == recs[0].finding.signature()
    assert replay_command(recs[0].reproducer, None).startswith("testbed replay ")
    src = ScenarioSource("/x/my file.py", "0" * 64)
    assert replay_command(Path("r.json"), src).endswith("--scenario '/x/my file.py'")


def test_malformed_recorded_findings_name_the_field(tmp_path: Path) -> None:
    s = session("nosync_stale")
    r = next(r for r in run_schedules(s, StrategySpec(), range(20)) if r.result.findings)
    doc = json.loads(r.result.schedule.to_json())
    doc["meta"]["findings"] = [{"oracle": 3}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError, match=r"meta\.findings\[0\]"):
        read_reproducer(path)


def test_finding_text_and_signature() -> None:
    f = Finding(OracleName.TORN_WORD, "m", cpu=1, addr=0x40, words=(0xD503201F,), step=3)
    assert finding_text(f) == "[torn-word] step 3: m; words: 0xd503201f (nop)"
    assert signature_key(f.signature()) == "torn-word@0x40:d503201f"


# -- the failure database --------------------------------------------------------------

def test_a_corrupt_database_entry_is_skipped_with_a_warning(tmp_path: Path) -> None:
    db = FailureDB(tmp_path)
    s = session("nosync_stale")
    good = next(r for r in run_schedules(s, StrategySpec(), range(20)) if r.result.findings)
    db.save(good.result.schedule)
    folder = db.folder("nosync_stale", None)
    (folder / "bad.json").write_bytes(b"\xff\xfe not json")
    (folder / "other.json").write_text(good.result.schedule.to_json().replace(
        '"scenario":"nosync_stale"', '"scenario":"nosync_isb"'))
    warnings: list[str] = []
    known = list(run_schedules(s, StrategySpec(), [], db=db, warn=warnings.append))
    assert len(known) == 1 and known[0].known is not None and known[0].result.findings
    assert len(warnings) == 2 and any("bad.json" in w for w in warnings)
    assert any("other.json" in w and "nosync_isb" in w for w in warnings)
    assert (folder / "bad.json").exists()  # left for the user to look at


def test_make_event_makes_the_event_the_dataclass_makes() -> None:
    """``make_event`` (Machine.add_event's cheaper constructor) gives an ``Event`` equal
    to, hashed and shown as the one its ``__init__`` makes, as frozen, for every field;
    and the events of a real run are Events of every field set."""
    import dataclasses

    from testbed.findings import Event, EventKind, make_event

    for kind in EventKind:
        args = (7, 1, kind, 0x1000, 0xD503201F, f"detail {kind.value}")
        made, built = make_event(*args), Event(*args)
        assert type(made) is Event
        assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
        assert [getattr(made, f.name) for f in dataclasses.fields(Event)] == list(args)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.step = 8  # type: ignore[misc]
    s = Session(load_scenario("jump_label_nosync")(), memory="sc")
    r = s.run(RandomWalk(3, p_model=0.3))
    assert r.events and all(type(e) is Event and e == Event(e.step, e.cpu, e.kind, e.addr,
                                                            e.value, e.detail)
                            for e in r.events)
