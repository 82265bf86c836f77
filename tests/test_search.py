"""Preemption-bounded exhaustive search: finds every race of the scenario table within 2
preemptions, covers the correct scenarios within stated bounds, resumes from checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.exploration import explore
from testbed.scenario import Session, list_scenarios, load_scenario
from testbed.schedule import step
from testbed.search import CheckpointError, SearchBounds, preemptions, search

SCENARIOS = list_scenarios()
RACES = sorted(n for n, c in SCENARIOS.items() if c.expect)
CORRECT = sorted(n for n, c in SCENARIOS.items() if not c.expect)
# The bounds each correct scenario is covered within, in its search scope (CI-sized;
# `testbed search brk_refcount_sync` covers 2 preemptions and 1 model event in ~150 s).
COVER = {"brk_refcount_sync": (2, 0), "call_ops": (2, 2)}
# The bounds each race is found within, where 2 preemptions and 1 model event are not
# enough: brk_plain needs its handler to read an older message (a READ decision) besides
# the catch-up that shows it the BRK.
FIND = {"brk_plain": (2, 2)}


# Scenarios whose verdict depends on the data-memory model are searched under the Arm
# model (and brk_release under both); the others' races are about instruction fetch, and
# are searched under sc, which explores the same interleavings 2-7 times faster (the
# pytest plugin's test runs every scenario under arm; `python -m bench --only models`
# searches each under both).
ARM = {"brk_plain", "brk_release", "stop_machine_nodsb", "call_ops", "call_ops_plain",
       "call_ops_free", "call_ops_free_qs_no_mb", "bpf_tramp_no_kick", "bpf_tramp_switch"}


def session(name: str, memory: str | None = None) -> Session:
    cls = load_scenario(name)
    return Session(cls(), params=cls.search_scope,
                   memory=memory or ("arm" if name in ARM else "sc"))


def first_oracle(name: str) -> str:
    expect = SCENARIOS[name].expect
    assert expect
    return expect if isinstance(expect, str) else expect[0]


def test_the_scenario_table_is_what_these_tests_cover() -> None:
    assert len(RACES) >= 8 and len(CORRECT) >= 5
    assert set(COVER) <= set(CORRECT)


@pytest.mark.parametrize("name", RACES)
def test_every_race_is_found_within_two_preemptions(name: str) -> None:
    s = session(name)
    oracle = first_oracle(name)
    pre, model = FIND.get(name, (2, 1))
    res = search(s, SearchBounds(preemptions=pre, model_events=model, max_seconds=300),
                 stop_on=oracle)
    hits = [(f, p) for f, p in res.findings.values() if f.oracle == oracle]
    assert hits, f"{name}: no {oracle} within 2 preemptions ({res.reason or 'covered'})"
    finding, path = hits[0]
    assert preemptions(s.machine, path) <= 2
    # The witness replays strictly and gives the same finding (oracle and address).
    replayed = s.replay(res.witness(s, finding.signature()))
    assert any(f.oracle == oracle and f.addr == finding.addr for f in replayed.findings)


@pytest.mark.parametrize(("name", "memory"), [(n, None) for n in CORRECT]
                         + [("brk_release", "sc"), ("call_ops", "sc")])
def test_correct_scenarios_are_covered_without_findings(name: str, memory: str | None) -> None:
    pre, model = COVER.get(name, (2, 1))
    res = search(session(name, memory), SearchBounds(pre, model, max_seconds=300))
    assert res.covered and res.reason == ""
    assert res.findings == {}, [f for f, _ in res.findings.values()]
    assert res.finals > 0


@pytest.mark.parametrize(("name", "needs"), [("missing_dc", (1, 0)), ("torn_write", (1, 0)),
                                             ("text_poke_pre_post", (0, 1))])
def test_a_race_is_missed_below_its_bound_and_found_at_it(name: str,
                                                           needs: tuple[int, int]) -> None:
    s = session(name)
    oracle = first_oracle(name)
    none = search(s, SearchBounds(0, 0))
    assert none.covered and not any(f.oracle == oracle for f, _ in none.findings.values())
    some = search(s, SearchBounds(*needs), stop_on=oracle)
    assert any(f.oracle == oracle for f, _ in some.findings.values())
    assert some.states > none.states


def test_unbounded_search_reaches_what_exhaustive_exploration_reaches() -> None:
    cls = load_scenario("nosync_stale")
    s = Session(cls(), params={"passes": 2})
    sc = s.scenario

    def observe(m: object) -> tuple[tuple[int, int], ...]:
        return tuple(sc.passes_seen(m))  # type: ignore[attr-defined]

    full = explore(s.machine, observe)
    assert full.complete
    res = search(s, SearchBounds(preemptions=99, model_events=99), observe=observe)
    assert res.covered and res.observations == set(full.finals)
    bounded = search(s, SearchBounds(preemptions=1, model_events=0), observe=observe)
    assert bounded.observations < res.observations


def test_preemptions_are_counted_as_chess_counts_them() -> None:
    s = session("nosync_stale")
    m = s.machine
    # CPU0 runs, CPU1 takes over while CPU0 could go on (1), back to CPU0 (2).
    assert preemptions(m, (step(0), step(0), step(1), step(0))) == 2
    assert preemptions(m, (step(0),) * 3) == 0
    # A model choice is not a preemption and does not change who ran last.
    m.reset()
    n = 0
    while not m.model_choices() and n < 40:  # CPU0 on until its patch gives a choice
        m.apply(step(0))
        n += 1
    model = m.model_choices()
    assert model
    assert preemptions(m, (step(0),) * n + (model[0], step(0))) == 0
    assert preemptions(m, (step(0),) * n + (model[0], step(1), step(0))) == 2


def test_checkpoint_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    s = session("jump_label_nosync")
    bounds = SearchBounds(2, 1)
    whole = search(s, bounds)
    ckpt = tmp_path / "search.ckpt"
    part = search(s, SearchBounds(2, 1, max_states=3000), checkpoint=ckpt)
    assert not part.covered and "state bound" in part.reason and ckpt.exists()
    rest = search(s, bounds, checkpoint=ckpt, resume=True)
    assert rest.resumed and rest.covered
    assert (rest.states, rest.transitions, rest.finals) == \
        (whole.states, whole.transitions, whole.finals)
    assert set(rest.findings) == set(whole.findings)
    again = search(s, bounds, checkpoint=ckpt, resume=True)  # a covered checkpoint
    assert again.covered and again.states == whole.states


def test_a_checkpoint_from_other_bounds_or_not_a_checkpoint_is_refused(
        tmp_path: Path) -> None:
    s = session("nosync_stale")
    ckpt = tmp_path / "c.ckpt"
    search(s, SearchBounds(1, 0, max_states=50), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="space"):
        search(s, SearchBounds(2, 0), checkpoint=ckpt, resume=True)
    bad = tmp_path / "bad.ckpt"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match=r"bad\.ckpt"):
        search(s, SearchBounds(1, 0), checkpoint=bad, resume=True)


def test_search_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "found"
    assert main(["search", "nosync_stale", "--out", str(out), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["covered"] and doc["preemptions"] == 2
    repro = doc["findings"][0]["reproducer"]
    assert main(["replay", repro]) == 1  # the recorded finding reproduces
    assert main(["search", "nosync_isb", "--preemptions", "1"]) == 0
    assert "covered" in capsys.readouterr().out
    ckpt = tmp_path / "x.ckpt"
    assert main(["search", "nosync_isb", "--max-states", "20", "--checkpoint",
                 str(ckpt)]) == 0
    assert "NOT covered" in capsys.readouterr().out
    assert main(["search", "nosync_isb", "--checkpoint", str(ckpt), "--resume"]) == 0
    assert "covered: every schedule" in capsys.readouterr().out
    assert main(["search", "nosync_isb", "--set", "passes"]) == 2
    assert main(["search", "nosync_isb", "--set", "nope=1"]) == 2
    assert "no integer parameter" in capsys.readouterr().err
