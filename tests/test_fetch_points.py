"""Fetches that can race with a later store are schedule points from the start of a run
(issue 13, item 3): the sites a scenario declares it patches (``Machine.may_patch``)
and the words earlier runs of the session stored to; schedules record the set they ran
with, and a search that stores to a word it did not stop before says it is not covered.

``tests/data/late_fetch`` is the case: the victim's last visible operation comes before
a call into code that the patcher patches afterwards, with no visible operation in
between.  Before this, the victim fetched the site in the same stretch of code as its
last visible operation, so the patch always came too late: 0 findings in 2,000
schedules."""

from __future__ import annotations

from pathlib import Path

from testbed import layout
from testbed.scenario import Session, load_scenario
from testbed.search import SearchBounds, search
from testbed.strategies import PCT, RandomWalk

FILE = Path(__file__).parent / "data" / "late_fetch" / "late_fetch.py"


def session(name: str) -> Session:
    return Session(load_scenario(f"{FILE}:{name}")())


def test_a_declared_site_is_a_fetch_point_from_the_start() -> None:
    s = session("late_fetch")
    m = s.machine
    site = m.addr("lf_site")
    assert site in m.declared and all(c.kind_at.get(site) for c in m.cpus)
    found = [seed for seed in range(3000) if s.run(PCT(seed, depth=3, k=40)).findings]
    assert found, "the late fetch race is not found"
    r = s.run(PCT(found[0], depth=3, k=40))
    assert r.findings[0].oracle == "uninitialised-read"
    # Replayed exactly in a fresh session.
    again = session("late_fetch").replay(r.schedule)
    assert [f.signature() for f in again.findings] == [f.signature() for f in r.findings]


def test_the_bounded_search_finds_it_and_is_otherwise_covered() -> None:
    res = search(session("late_fetch"), SearchBounds(2, 1))
    assert "uninitialised-read" in {sig[0] for sig in res.findings}


def test_an_undeclared_site_is_learned_from_earlier_runs() -> None:
    s = session("late_fetch_learned")
    m = s.machine
    site = m.addr("lf_site")
    assert site not in m.declared
    first = s.run(RandomWalk(0))
    assert "patched" not in first.schedule.config  # nothing learned before it
    assert site in m.declared and s.patched == {site}  # the run stored to it
    found = None
    for seed in range(3000):
        r = s.run(PCT(seed, depth=3, k=40))
        if r.findings:
            found = r
            break
    assert found is not None, "the race is not found once the site is learned"
    assert found.schedule.config["patched"] == [site - layout.TEXT_BASE]
    # A fresh session replays it: the schedule brings the learned fetch point along.
    fresh = session("late_fetch_learned")
    assert fresh.replay(found.schedule).findings
    assert fresh.patched == {site}


def test_a_search_that_stores_to_an_undeclared_word_is_not_covered() -> None:
    s = session("late_fetch_learned")
    s.learning = True
    res = search(s, SearchBounds(0, 0))
    assert not res.covered and "may_patch" in res.reason
    assert s.machine.image.symbolize(s.machine.addr("lf_site")) in res.reason
    assert s.patched == {s.machine.addr("lf_site")}  # searching again explores it
    assert s.learning  # the search gave it back


def test_campaign_and_demo_sessions_do_not_learn() -> None:
    from testbed.campaign import CampaignSpec, _session
    from testbed.demo import DEMOS
    from testbed.demo import _session as demo_session
    spec = CampaignSpec("nosync_stale")
    assert not _session(spec).learning
    assert not demo_session(DEMOS["nosync-stale"]).learning
