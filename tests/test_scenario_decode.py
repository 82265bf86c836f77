"""Which text-poke protocols a trace decoder can trust (the decoder issue's table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk
from testbed.textpoke import read_ring


@pytest.mark.parametrize("name", ["text_poke_pre_post", "brk_single_slot", "brk_no_sync"])
def test_untrustworthy_protocols_give_decode_findings(name: str) -> None:
    session = Session(load_scenario(name)())
    for seed in range(100):
        result = session.run(RandomWalk(seed))
        decode = [f for f in result.findings if f.oracle == "trace-decode"]
        if decode:
            f = decode[0]
            assert "the decoder assumed" in f.message or "decode error" in f.message
            assert "text-poke record" in f.message
            replayed = session.replay(result.schedule)
            assert [g.signature() for g in replayed.findings] == [
                g.signature() for g in result.findings]
            return
    raise AssertionError(f"{name}: no decode finding in 100 schedules")


@pytest.mark.parametrize("name", ["brk_refcount_sync", "stop_machine_patch"])
def test_trustworthy_protocols_decode_exactly(name: str) -> None:
    session = Session(load_scenario(name)())
    records = 0
    for seed in range(150):
        result = session.run(RandomWalk(seed))
        assert result.findings == [], result.findings
        records += len(read_ring(session.machine))
    assert records >= 150  # every run wrote records, and the decoder used them


def test_run_json_reports_the_decoders_verdict(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "text_poke_pre_post", "--schedules", "60", "--json",
                 "--out", str(tmp_path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["decoder"]["checked"] is True
    assert doc["decoder"]["schedules_not_decodable"] > 0
    assert doc["decoder"]["schedules_decoded"] + doc["decoder"][
        "schedules_not_decodable"] == 60
