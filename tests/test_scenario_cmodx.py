"""CMODX and torn-word oracles on real patching code: they fire, and only when due."""

from __future__ import annotations

from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk

ADD_W5, SUB_W5 = 0x110004A5, 0x510004A5


def first_finding(session: Session, seeds: int) -> object:
    for seed in range(seeds):
        result = session.run(RandomWalk(seed))
        if result.findings:
            return result
    raise AssertionError(f"no finding in {seeds} schedules")


def test_cmodx_violation_fires_on_a_non_cmodx_pair() -> None:
    session = Session(load_scenario("cmodx_violation")())
    result = first_finding(session, 50)
    f = result.findings[0]  # type: ignore[attr-defined]
    assert (f.oracle, f.cpu, f.addr, f.words) == (
        "cmodx-violation", 1, session.image.addr("add_site"), (ADD_W5, SUB_W5))
    replayed = session.replay(result.schedule)  # type: ignore[attr-defined]
    assert [g.signature() for g in replayed.findings] == [f.signature()]


def test_cmodx_oracle_is_silent_for_an_allowed_pair() -> None:
    # nosync_stale races the same way, but NOP -> B is a CMODX pair: old or new only.
    session = Session(load_scenario("nosync_stale")())
    concurrent = 0
    for seed in range(300):
        result = session.run(RandomWalk(seed, p_model=0.2))
        assert all(f.oracle != "cmodx-violation" for f in result.findings)
        concurrent += any(f.oracle == "stale-after-flush" for f in result.findings)
    assert concurrent > 10  # the site really ran while it was being modified


def test_torn_write_executes_a_torn_word() -> None:
    session = Session(load_scenario("torn_write")())
    result = first_finding(session, 500)
    f = result.findings[0]  # type: ignore[attr-defined]
    assert (f.oracle, f.cpu, f.addr) == ("torn-word", 1, session.image.addr("torn_site"))
    assert f.words == (0xD5030003,)  # new low half (B), old high half (NOP)
