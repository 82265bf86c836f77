"""The litmus runner and `testbed litmus`: herd7-shaped output, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.litmus import parse
from testbed.litmus_run import run_test
from testbed.memory import CacheType
from testbed.scheduler import run
from testbed.strategies import Replay

# herd-ifetch's SM.B+isb (Arm's catalogue), inline so these tests stand alone.
SM_B_ISB = """AArch64 SM.B+isb
{ 0:X0=NOP; 0:X1=P0:L0; 0:X9=0; }
P0              ;
    STR W0,[X1] ;
    ISB         ;
L0: B L1        ;
    MOV W9,#1   ;
L1:             ;
exists 0:X9=0
"""

FAULT = """AArch64 fault-handler
{ 0:X0=0; 0:X1=P0:m0; 0:X3=x; }
P0              | P0.F           ;
    STR W0,[X1] | MOV W4,#2      ;
    DC CVAU,X1  | STR W4,[X3]    ;
    DSB ISH     | ADR X9,l0      ;
    IC IVAU,X1  | MSR ELR_EL1,X9 ;
    DSB ISH     | ERET           ;
    ISB         |                ;
m0: B l0        |                ;
l0:             |                ;
exists (x=2)
"""


def test_herd_shaped_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "SM.B+isb.litmus"
    f.write_text(SM_B_ISB)
    assert main(["litmus", str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:9] == ["Test SM.B+isb Allowed", "States 2", "0:X9=0;", "0:X9=1;", "Ok",
                       "Witnesses", "Positive: 1 Negative: 1", "Condition exists (0:X9=0)",
                       "Observation SM.B+isb Sometimes 1 1"]
    assert out[9].startswith("Exploration complete: ")


def test_json_cache_override_and_folders(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "SM.B+isb.litmus").write_text(SM_B_ISB)
    (tmp_path / "a" / "fault.litmus").write_text(FAULT)
    assert main(["litmus", str(tmp_path), "--json", "--cache", "DIC1"]) == 0
    # JSON Lines: one object per test, each line parses on its own.
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    results = {r["name"]: r for r in map(json.loads, lines)}
    assert set(results) == {"SM.B+isb", "fault-handler"}
    sm = results["SM.B+isb"]
    for key in ("name", "cache", "observation", "positive", "negative", "states",
                "complete", "witnessed"):
        assert key in sm
    # With DIC=1 the store invalidated the I-cache and the ISB fetches the NOP.
    assert (sm["cache"], sm["observation"], sm["witnessed"]) == ("DIC1", "Never", False)
    assert sm["complete"] is True and sm["states"] == 1


def test_fault_handler_is_entered_and_left_with_eret() -> None:
    r = run_test(parse(FAULT, "fault.litmus"))
    assert r.complete
    # The full maintenance sequence and ISB: the invalid word always faults.
    assert [dict(s) for s in r.finals] == [{"x": 2}]
    assert r.ok and r.observation == "Always"


def test_every_outcome_has_a_witness_schedule_that_replays() -> None:
    r = run_test(parse(SM_B_ISB, "SM.B+isb.litmus"), CacheType.IDC0)
    prog = r.program
    assert set(r.witnesses) == set(r.finals)
    for state, path in r.witnesses.items():
        run(prog.machine, Replay(path), scenario="t")
        assert prog.observe(prog.machine) == state


def test_random_sampling_is_reported_as_incomplete() -> None:
    r = run_test(parse(SM_B_ISB, "SM.B+isb.litmus"), random_runs=50)
    assert not r.complete and "random sampling" in r.reason
    assert set(r.finals) <= {(("0:X9", 0),), (("0:X9", 1),)}


def test_bad_litmus_files_are_one_line_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.litmus"
    bad.write_text(SM_B_ISB.replace("    ISB         ;\n", "    ISB         \n"))
    good = tmp_path / "good.litmus"
    good.write_text(SM_B_ISB)
    assert main(["litmus", str(bad), str(good)]) == 2  # the good one still runs
    captured = capsys.readouterr()
    assert captured.err.startswith(f"testbed: error: {bad}:")
    assert len(captured.err.splitlines()) == 1  # one line per test that could not run
    assert captured.out.splitlines()[-1] == "1 test run, 1 could not be run"
    assert "Test SM.B+isb Allowed" in captured.out
    weird = tmp_path / "weird.litmus"
    weird.write_text(SM_B_ISB.replace("ISB ", "FOO "))
    assert main(["litmus", str(weird)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"testbed: error: {weird}:5: thread code does not assemble")
    # A path that names no test: one line, exit 2, nothing run.
    assert main(["litmus", str(good), str(tmp_path / "missing.litmus")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    missing = tmp_path / "missing.litmus"
    assert captured.err == f"testbed: error: {missing}: no such file or folder\n"


def test_instr_and_label_values_are_resolved() -> None:
    src = """AArch64 values
{ 0:X0=instr:"B .+8"; 0:X1=label:"P0:L0"; [x]=P0:L0; 0:X3=x; }
P0              ;
    STR W0,[X1] ;
    LDR X4,[X3] ;
    ISB         ;
L0: NOP         ;
    MOV W9,#1   ;
    MOV W8,#2   ;
exists (0:X9=0 /\\ 0:X4=P0:L0)
"""
    r = run_test(parse(src, "values.litmus"), CacheType.DIC1)
    prog = r.program
    assert prog.resolve(parse(src, "v").regs[0].value) == 0x14000002  # type: ignore[arg-type]
    # DIC=1 and an ISB: the B .+8 always runs, skipping MOV W9, and x held the label.
    assert [dict(s) for s in r.finals] == [{"0:X9": 0, "0:X4": prog.label(0, "L0")}]
    assert r.witnessed


LSE = """AArch64 LSE
{
0:X1=x; 0:X2=y;
}
 P0                 ;
 MOV W0,#2          ;
 LDADD W0,W3,[X1]   ;
 MOV W4,#5          ;
 SWP W4,W5,[X2]     ;
 LDAPR W6,[X1]      ;
 CAS W5,W4,[X2]     ;
exists (0:X3=0 /\\ 0:X5=5 /\\ 0:X6=2 /\\ x=2 /\\ y=5)
"""


def test_the_emulated_cpus_execute_lse_atomics_and_ldapr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Unicorn's default CPU takes an exception on these: the machine uses the "max" CPU.
    path = tmp_path / "lse.litmus"
    path.write_text(LSE)
    assert main(["litmus", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Observation LSE Always 1 0" in out and "0:X5=5;" in out
