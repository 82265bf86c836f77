"""The litmus runner and `testbed litmus`: herd7-shaped output, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litmus_texts import sm_b_isb

from testbed.cli import main
from testbed.litmus import parse
from testbed.litmus_run import run_test
from testbed.memory import CacheType
from testbed.scheduler import run
from testbed.strategies import Replay

SM_B_ISB = sm_b_isb()

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
    assert main(["litmus", str(tmp_path), "--json", "--cache", "DIC1", "--memory", "sc"]) == 0
    # JSON Lines: one object per test, each line parses on its own.
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    results = {r["name"]: r for r in map(json.loads, lines)}
    assert set(results) == {"SM.B+isb", "fault-handler"}
    sm = results["SM.B+isb"]
    for key in ("name", "cache", "observation", "positive", "negative", "states",
                "complete", "witnessed"):
        assert key in sm
    # With DIC=1 under sc the store invalidated the I-cache and the ISB fetches the NOP.
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
    r = run_test(parse(src, "values.litmus"), CacheType.DIC1, memory="sc")
    prog = r.program
    assert prog.resolve(parse(src, "v").regs[0].value) == 0x14000002  # type: ignore[arg-type]
    # DIC=1 and an ISB under sc: the B .+8 always runs, skipping MOV W9, and x held the
    # label.
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


# --------------------------------------------------------------------------------------------
# --verdicts: herd's verdicts and the conformance summary

# The same test three ways: its proposition 0:X9=0 is reachable (Sometimes 1 1).
NOT_EXISTS = SM_B_ISB.replace("AArch64 SM.B+isb", "AArch64 SM.B+isb-not").replace(
    "exists 0:X9=0", "~exists 0:X9=0")
FORALL = SM_B_ISB.replace("AArch64 SM.B+isb", "AArch64 SM.B+isb-all").replace(
    "exists 0:X9=0", "forall (0:X9=0 \\/ 0:X9=1)")


def suite(tmp_path: Path, kinds: str) -> tuple[Path, Path]:
    d = tmp_path / "suite"
    d.mkdir()
    (d / "SM.B+isb.litmus").write_text(SM_B_ISB)
    (d / "not.litmus").write_text(NOT_EXISTS)
    (d / "all.litmus").write_text(FORALL)
    (d / "nameless.litmus").write_text(SM_B_ISB.replace("SM.B+isb", "no-verdict"))
    k = tmp_path / "kinds.txt"
    k.write_text(kinds)
    return d, k


def test_report_header_is_herds_kind_of_the_quantifier(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = suite(tmp_path, "x Allowed\n")
    assert main(["litmus", str(d / "not.litmus"), str(d / "all.litmus")]) == 0
    out = capsys.readouterr().out
    # lib/constrGen.ml: exists is Allowed, ~exists Forbidden, forall Required.
    assert "Test SM.B+isb-not Forbidden" in out and "Test SM.B+isb-all Required" in out


def test_a_sound_run_counts_and_lists_every_miss(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # herd's kinds.txt shape: padded names, trailing blanks, comments, herd's spellings.
    d, k = suite(tmp_path, "SM.B+isb        Allowed   \n# a comment\n\n"
                           "SM.B+isb-not    allow  % herd's short form\n"
                           "SM.B+isb-all    Required\n")
    # DIC=1 under sc: the NOP is always fetched, X9 is never 0
    cache_dic1 = ["--cache", "DIC1", "--memory", "sc"]
    assert main(["litmus", str(d), "--verdicts", str(k), *cache_dic1]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("Conformance with herd's verdicts"):].splitlines()
    assert summary == [
        f"Conformance with herd's verdicts ({k})",
        "Tests: 4 run, 0 could not be run, 1 without a verdict",
        "Forbidden: 0 tests, 0 observed (soundness failures), 0 never (complete), "
        "0 not decided",
        "Allowed: 2 tests, 0 observed (0.0%), 2 not observed",
        "Required: 1 test, 1 always (complete), 0 violated (soundness failures), "
        "0 not decided",
        "Explorations: 4 complete, 0 incomplete",
        "Allowed, not observed (2):",
        "  SM.B+isb: Never (complete)",
        "  SM.B+isb-not: Never (complete)",
        "Sound: 0 forbidden outcomes observed; 0 of 2 allowed outcomes observed (0.0%)",
    ]
    # The default cache (IDC0): both outcomes observed.  A bound hit is "not decided".
    assert main(["litmus", str(d), "--verdicts", str(k), "--max-states", "3"]) == 0
    out = capsys.readouterr().out
    assert "  SM.B+isb: not decided: state bound (3 states) reached" in out
    assert "Incomplete explorations (4):" in out


def test_a_forbidden_outcome_observed_is_exit_1_and_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, k = suite(tmp_path, "SM.B+isb Forbidden\nSM.B+isb-not Forbidden\n"
                           "SM.B+isb-all Required\n")
    (d / "broken.litmus").write_text("AArch64 SM.B+isb-all\n{\n")  # cannot run: 1 wins
    assert main(["litmus", str(d), "--verdicts", str(k)]) == 1
    captured = capsys.readouterr()
    lines = captured.out[captured.out.index("Conformance"):].splitlines()
    assert "Forbidden: 2 tests, 2 observed (soundness failures), 0 never (complete), " \
           "0 not decided" in lines
    i = lines.index("FORBIDDEN OUTCOME OBSERVED, the model is wrong (2):")
    assert lines[i + 1:i + 3] == ["  SM.B+isb: Sometimes 1 1 (complete)",
                                  "  SM.B+isb-not: Sometimes 1 1 (complete)"]
    # The one that could not run is found by the name in its header: Required, so listed
    # as not decided (the one that ran holds: Always).
    i = lines.index("Required, not decided (1):")
    assert lines[i + 1].startswith("  SM.B+isb-all: could not run: ")
    assert "Required: 2 tests, 1 always (complete), 0 violated (soundness failures), " \
           "1 not decided" in lines
    assert lines[-1].startswith("UNSOUND: 2 forbidden outcomes observed; ")
    assert captured.err.startswith(f"testbed: error: {d / 'broken.litmus'}:")


def test_json_ends_with_one_summary_object(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    d, k = suite(tmp_path, "SM.B+isb Allowed\nSM.B+isb-not Forbidden\n")
    k2 = tmp_path / "more.txt"
    k2.write_text("SM.B+isb Allowed\nSM.B+isb-all Allowed\n")  # the same verdict again
    assert main(["litmus", str(d), "--json", "--verdicts", str(k), "--verdicts",
                 str(k2)]) == 1
    *tests, summary = map(json.loads, capsys.readouterr().out.splitlines())
    assert len(tests) == 4 and all("verdict" in t for t in tests)
    assert summary["summary"] == "conformance"
    assert summary["verdict_files"] == [str(k), str(k2)]
    assert (summary["sound"], summary["exit"], summary["run"], summary["not_run"]) == \
        (False, 1, 4, 0)
    assert [t["name"] for t in summary["without_verdict"]] == ["no-verdict"]
    assert summary["allowed"] == {"tests": 2, "observed": 2, "ratio": 1.0, "missed": []}
    assert [t["name"] for t in summary["forbidden"]["observed"]] == ["SM.B+isb-not"]
    assert summary["incomplete"] == []


BAD_VERDICTS = [
    ("missing", None, ": cannot read: No such file or directory"),
    ("one-word", "SB Allowed\nMP\n", ":2: 'MP' has no verdict"),
    ("three-words", "SB Allowed extra\n", ":1: expected 'NAME Allowed|Forbidden|Required', "
     "found 3 words"),
    ("unknown", "\n\nSB Sometimes\n", ":3: unknown verdict 'Sometimes' for 'SB'"),
    ("twice", "SB Allowed\nSB Forbidden\n", ":2: 'SB' is Forbidden here but Allowed at "),
    ("empty", "# nothing\n\n", ": no verdicts in this file"),
    ("not-utf8", b"SB Allowed\nMP \xff\xfe\n", ":2: not UTF-8 text"),
    ("folder", "dir", ": cannot read: Is a directory"),
]


@pytest.mark.parametrize(("name", "content", "reason"), BAD_VERDICTS,
                         ids=[b[0] for b in BAD_VERDICTS])
def test_a_bad_verdict_file_is_one_line_and_exit_2_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
        content: str | bytes | None, reason: str) -> None:
    test = tmp_path / "SM.B+isb.litmus"
    test.write_text(SM_B_ISB)
    bad = tmp_path / f"{name}.txt"
    if content == "dir":
        bad.mkdir()
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    with pytest.raises(SystemExit) as info:
        main(["litmus", str(test), "--verdicts", str(bad)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    (line,) = captured.err.splitlines()
    assert line.startswith(f"testbed litmus: error: argument --verdicts: {bad}{reason}"), line


def test_two_verdict_files_that_disagree_are_refused(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("SB Allowed\nMP Forbidden\n")
    b.write_text("MP Forbidden\n\nSB Forbid\n")
    with pytest.raises(SystemExit) as info:
        main(["litmus", str(tmp_path), "--verdicts", str(a), "--verdicts", str(b)])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"testbed litmus: error: argument --verdicts: {b}:3: 'SB' is Forbidden here but "
        f"Allowed at {a}:1\n")
