"""The pytest plugin: scenario files collected as tests, expectations, reproducers."""

from __future__ import annotations

import pytest

from testbed.scenario import list_scenarios

pytest_plugins = ["pytester"]

WRONG = '''
from testbed.scenario import load_scenario

Stale = load_scenario("nosync_stale")
Isb = load_scenario("nosync_isb")


class ClaimsNoRace(Stale):
    name = "claims_no_race"
    expect = None


class ClaimsARace(Isb):
    name = "claims_a_race"
    expect = "stale-after-flush"


class Right(Stale):
    name = "right"
'''


def test_scenarios_are_collected_and_judged(pytester: pytest.Pytester) -> None:
    pytester.mkdir("scenarios")
    (pytester.path / "scenarios" / "mine.py").write_text(WRONG)
    out = pytester.path / "found"
    result = pytester.runpytest("scenarios", "--testbed-schedules", "60",
                                "--testbed-out", str(out), "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "unexpected finding" in text and "[stale-after-flush]" in text
    assert "replay: testbed replay" in text and list(out.glob("claims_no_race-*.json"))
    assert "expected a 'stale-after-flush' finding in 60 schedules" in text


def test_project_scenarios_meet_their_expectations(pytester: pytest.Pytester) -> None:
    from testbed.resources import scenarios_dir
    result = pytester.runpytest(str(scenarios_dir()), "--testbed-schedules", "300",
                                "-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(list_scenarios()))
