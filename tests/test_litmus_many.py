"""`run_many` (what `testbed litmus` runs): folders, one line per test that cannot run,
results as they come, JSON Lines; herd's CacheType spellings; tests of Arm's catalogue."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from litmus_texts import sm_b_isb

import testbed.litmus_run as litmus_run
from testbed.exploration import Bounds
from testbed.litmus import LitmusError, LitmusTest, parse, parse_file
from testbed.litmus_run import LitmusPathError, build, litmus_files, run_many, run_test
from testbed.memory import CacheType

DATA = Path(__file__).resolve().parent / "data" / "litmus" / "aarch64-ifetch"

GOOD = sm_b_isb()


def sm(cache: str) -> str:
    return sm_b_isb(cache=cache)


# --------------------------------------------------------------------------------------------
# CacheType


# herd7 (lib/cacheType.mll): blank-separated IDC/DIC words, any order, any case; DIC
# implies IDC; no word is neither.  Also quotes, commas, and this project's names.
SPELLINGS = {
    "IDC DIC": CacheType.DIC1,
    "DIC IDC": CacheType.DIC1,
    "IDC": CacheType.IDC1,
    "DIC": CacheType.DIC1,
    "idc dic": CacheType.DIC1,
    "Dic": CacheType.DIC1,
    "iDC": CacheType.IDC1,
    "IDC\tDIC": CacheType.DIC1,
    "IDC  IDC": CacheType.IDC1,
    '"IDC DIC"': CacheType.DIC1,
    "'IDC'": CacheType.IDC1,
    '"DIC" "IDC"': CacheType.DIC1,
    "IDC,DIC": CacheType.DIC1,
    "DIC, IDC": CacheType.DIC1,
    '"IDC, DIC"': CacheType.DIC1,
    "": CacheType.IDC0,
    "IDC0": CacheType.IDC0,
    "IDC1": CacheType.IDC1,
    "DIC1": CacheType.DIC1,
    "dic1": CacheType.DIC1,
    "DIC0": CacheType.IDC0,
    "none": CacheType.IDC0,
    "DIC1-IDC1": CacheType.DIC1,
    "DIC0-IDC1": CacheType.IDC1,
    "DIC0-IDC0": CacheType.IDC0,
}
BAD_SPELLINGS = ["PIPT", "IDC DIC2", "IDC;DIC", "IDC0 DIC", "DIC0 DIC", "IDC0 IDC", "DIC=1",
                 "IDC/DIC"]


@pytest.mark.parametrize("text", SPELLINGS, ids=lambda t: repr(t))
def test_cache_type_spellings(text: str) -> None:
    assert CacheType.parse(text) is SPELLINGS[text]
    test = parse(sm(text), "s.litmus")
    assert test.cache_type == text.strip()
    assert test.cache is SPELLINGS[text]
    # The file's configuration is what the machine runs (unless overridden).
    assert build(test).cache is SPELLINGS[text]
    assert build(test, CacheType.IDC0).cache is CacheType.IDC0


@pytest.mark.parametrize("key", ["CacheType", "cachetype", "CACHETYPE", "cacheType"])
def test_cache_type_key_in_any_case(key: str) -> None:
    # herd matches info keys in any case (MiscParser.key_match).
    test = parse(sm("IDC DIC").replace("CacheType=", f"{key} = "), "k.litmus")
    assert test.cache_type == "IDC DIC" and test.cache is CacheType.DIC1
    assert test.meta == {key: "IDC DIC"}


def test_no_cache_type_is_herds_default() -> None:
    test = parse(GOOD, "g.litmus")
    assert test.cache_type is None and test.cache is None
    assert build(test).cache is CacheType.IDC0


@pytest.mark.parametrize("text", BAD_SPELLINGS)
def test_unknown_cache_type_is_a_one_line_error_at_its_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        CacheType.parse(text)
    assert "\n" not in str(info.value)
    with pytest.raises(LitmusError) as err:
        parse(sm(text), "bad.litmus")
    assert (err.value.file, err.value.line) == ("bad.litmus", 2)
    assert str(err.value).startswith("bad.litmus:2: CacheType: ")
    assert repr(text) in str(err.value) and "\n" not in str(err.value)


def test_cache_type_given_twice_in_two_cases() -> None:
    src = sm("IDC").replace("CacheType=IDC\n", "CacheType=IDC\ncachetype=DIC\n")
    with pytest.raises(LitmusError) as err:
        parse(src, "twice.litmus")
    assert (err.value.line, err.value.reason) == (3, "'cachetype' given twice (first on line 2)")


def test_cache_type_of_a_hand_made_test_is_checked_by_build() -> None:
    good = parse(sm("IDC"), "h.litmus")
    fields = {f: getattr(good, f) for f in LitmusTest.__dataclass_fields__}
    bad = LitmusTest(**{**fields, "meta": {"CacheType": "L2"}})
    with pytest.raises(LitmusError, match=r"^h\.litmus:0: CacheType: unknown cache type 'L2'"):
        build(bad)


# --------------------------------------------------------------------------------------------
# run_many: a folder with tests that cannot be run


def bad_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder with one good test and one of each kind of test that cannot run.

    Returns the folder and, for each bad file, what its error line must contain.
    """
    d = tmp_path / "suite"
    (d / "sub").mkdir(parents=True)
    (d / "a-good.litmus").write_text(GOOD)
    (d / "b-unparseable.litmus").write_text(GOOD.replace("    ISB         ;\n", "    ISB\n"))
    (d / "c-latin1.litmus").write_bytes(GOOD.replace("SM.B+isb", "SM.B+isb-é").encode("latin-1"))
    (d / "d-unsupported.litmus").write_text(GOOD.replace("ISB ", "FOO "))
    (d / "sub" / "e-cachetype.litmus").write_text(sm("IDC L2"))
    (d / "f-folder.litmus").mkdir()  # a folder named like a test
    (d / "notes.txt").write_text("not a test")
    return d, {
        "b-unparseable.litmus": ":5: expected '|' or ';' at end of thread row",
        "c-latin1.litmus": ":1: not UTF-8 text",
        "d-unsupported.litmus": ":5: thread code does not assemble",
        "e-cachetype.litmus": ":2: CacheType: unknown cache type 'IDC L2'",
        "f-folder.litmus": ": cannot read: ",
    }


def run(paths: list[str | Path], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run_many([str(p) for p in paths], out=out, err=err, **kw)  # type: ignore[arg-type]
    return rc, out.getvalue(), err.getvalue()


def test_a_folder_with_bad_tests_reports_each_in_one_line_and_runs_the_rest(
        tmp_path: Path) -> None:
    d, bad = bad_folder(tmp_path)
    rc, out, err = run([d])
    assert rc == 2
    assert out.splitlines()[-1] == "1 test run, 5 could not be run"  # the summary: stdout
    errors = err.splitlines()
    assert len(errors) == len(bad)
    # In the order of the (sorted, recursive) folder, one line each, naming the file.
    names = sorted(bad, key=lambda n: str(next(d.rglob(n))))
    for line, name in zip(errors, names, strict=True):
        path = next(d.rglob(name))
        assert line.startswith(f"testbed: error: {path}"), line
        assert bad[name] in line, line
    # The good test's herd7-shaped report is there, in full.
    report = out.splitlines()
    assert report[:9] == ["Test SM.B+isb Allowed", "States 2", "0:X9=0;", "0:X9=1;", "Ok",
                          "Witnesses", "Positive: 1 Negative: 1", "Condition exists (0:X9=0)",
                          "Observation SM.B+isb Sometimes 1 1"]
    assert report[9].startswith("Exploration complete: ")
    assert "Traceback" not in out + err


def test_json_lines_hold_every_test_and_every_failure(tmp_path: Path) -> None:
    d, bad = bad_folder(tmp_path)
    rc, out, err = run([d], as_json=True, cache=CacheType.DIC1, memory="sc")
    assert rc == 2
    records = [json.loads(line) for line in out.splitlines()]  # each line parses alone
    assert len(records) == 1 + len(bad)
    [good] = [r for r in records if "verdict" in r]
    assert good["name"] == "SM.B+isb" and good["path"] == str(d / "a-good.litmus")
    # --cache DIC1 under sc: the store invalidated the I-cache, the ISB fetches the NOP
    # (under arm the store's own invalidation completes only at a DSB: both outcomes).
    assert (good["cache"], good["observation"], good["states"]) == ("DIC1", "Never", 1)
    failures = {Path(r["path"]).name: r for r in records if "error" in r}
    assert set(failures) == set(bad)
    assert failures["e-cachetype.litmus"]["line"] == 2
    assert failures["f-folder.litmus"]["line"] is None
    assert failures["c-latin1.litmus"]["error"] == "not UTF-8 text"
    # stderr: one line per test that could not run (no summary: the stream says it all).
    assert len(err.splitlines()) == len(bad)


def test_every_test_ran_is_exit_0(tmp_path: Path) -> None:
    (tmp_path / "x.litmus").write_text(GOOD)
    (tmp_path / "y.litmus").write_text(sm("IDC DIC"))
    rc, out, err = run([tmp_path])
    assert rc == 0
    assert err == "" and out.endswith("2 tests run, 0 could not be run\n")
    assert out.count("Test SM.B+isb Allowed") == 2
    assert "cache DIC1" in out and "cache IDC0" in out


def test_results_are_printed_as_each_test_ends(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("1.litmus", "2.litmus", "3.litmus"):
        (tmp_path / name).write_text(GOOD)
    real = litmus_run.parse_file
    for as_json in (False, True):
        out, err = io.StringIO(), io.StringIO()
        printed: list[int] = []  # how many results were out when each test started

        def spy(path: Path, out: io.StringIO = out, printed: list[int] = printed,
                as_json: bool = as_json) -> LitmusTest:
            text = out.getvalue()
            printed.append(len(text.splitlines()) if as_json else text.count("Observation "))
            return real(path)

        monkeypatch.setattr(litmus_run, "parse_file", spy)
        assert run_many([str(tmp_path)], as_json=as_json, out=out, err=err) == 0
        assert printed == [0, 1, 2]


KILLED = """
import sys, time
import testbed.litmus_run as lr
real = lr.explore
def explore(m, observe, bounds):
    if observe.__self__.test.name == "slow":
        time.sleep(600)
    return real(m, observe, bounds)
lr.explore = explore
lr.run_many([sys.argv[1]], as_json=True)
"""


def test_json_lines_of_a_run_killed_late_are_not_lost(tmp_path: Path) -> None:
    """stdout is a pipe (block-buffered): each line must be flushed when its test ends."""
    import selectors
    import subprocess
    import sys
    for name in ("1.litmus", "2.litmus"):
        (tmp_path / name).write_text(GOOD)
    (tmp_path / "3.litmus").write_text(GOOD.replace("SM.B+isb", "slow"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while len(lines) < 2 and sel.select(timeout=60):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
    finally:
        proc.kill()
        proc.wait()
    assert [json.loads(line)["name"] for line in lines] == ["SM.B+isb", "SM.B+isb"]


def test_an_exception_from_the_machine_is_one_line_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.litmus").write_text(GOOD)
    (tmp_path / "b.litmus").write_text(GOOD.replace("SM.B+isb", "boom"))
    (tmp_path / "c.litmus").write_text(GOOD)
    real = litmus_run.explore

    def explore(m, observe, bounds):  # type: ignore[no-untyped-def]
        if observe.__self__.test.name == "boom":
            raise RuntimeError("unicorn said no\nsecond line")
        return real(m, observe, bounds)

    monkeypatch.setattr(litmus_run, "explore", explore)
    rc, out, err = run([tmp_path])
    assert rc == 2
    assert out.count("Test SM.B+isb Allowed") == 2
    (first,) = err.splitlines()
    assert first.startswith(f"testbed: error: {tmp_path / 'b.litmus'}: internal error at ")
    assert first.endswith("RuntimeError: unicorn said no / second line")
    assert out.splitlines()[-1] == "2 tests run, 1 could not be run"


def test_paths_that_name_no_test_are_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "good.litmus").write_text(GOOD)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no tests here")
    missing = tmp_path / "nope.litmus"
    for paths, bad, reason in (
            ([tmp_path / "good.litmus", missing], missing, "no such file or folder"),
            ([tmp_path, tmp_path / "empty"], tmp_path / "empty", "no .litmus files in this folder"),
            ([Path("/dev/null")], Path("/dev/null"), "not a regular file or a folder")):
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(LitmusPathError) as info:
            run_many([str(p) for p in paths], out=out, err=err)
        assert str(info.value) == f"{bad}: {reason}"
        assert isinstance(info.value, LitmusError)  # what the CLI turns into exit 2
        assert out.getvalue() == err.getvalue() == ""  # nothing ran


def test_folders_are_searched_recursively_and_sorted(tmp_path: Path) -> None:
    for rel in ("b/2.litmus", "a/9.litmus", "a/1.litmus", "z.litmus", "a/x.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(GOOD)
    files = litmus_files([str(tmp_path), str(tmp_path / "z.litmus")])
    assert [str(f.relative_to(tmp_path)) for f in files] == [
        "a/1.litmus", "a/9.litmus", "b/2.litmus", "z.litmus", "z.litmus"]


# --------------------------------------------------------------------------------------------
# Tests of Arm's aarch64-ifetch catalogue that the shared sample does not have


def test_catalogue_tests_run_and_the_one_unsupported_is_one_line() -> None:
    rc, out, err = run([DATA], bounds=Bounds(max_seconds=60))
    assert rc == 2
    assert err.splitlines() == [
        f"testbed: error: {DATA / 'SM.udf+dc.cvau+dsb.ish-ic.vau-dsb.ish-isb.litmus'}:15: "
        "unsupported: 'fault(...)' atoms in conditions",
    ]
    assert out.splitlines()[-1] == "11 tests run, 1 could not be run"
    assert out.count("Exploration complete") == 11


@pytest.mark.parametrize("name", ["DIC1.MP.RF+dmb.st+addr-rfiINSTRISB",
                                  "DIC1.MP.RF+dmb.st+addr-rfiINSTRNOP"])
def test_idc_dic_spelling_of_the_catalogue(name: str) -> None:
    test = parse_file(DATA / f"{name}.litmus")
    assert test.cache_type == "IDC DIC" and test.cache is CacheType.DIC1
    r = run_test(test, bounds=Bounds(max_seconds=60))
    assert r.complete and r.cache is CacheType.DIC1
    # Both forbidden under IDC=1, DIC=1 (the files' comment): with DIC=1 the NOP stored to
    # m2 before the flag is seen, so MOV W0,#1 is skipped.
    assert r.observation == "Never"


def test_udf_assembles_and_a_handler_can_patch_it() -> None:
    r = run_test(parse_file(DATA / "UDF+2FH.litmus"), bounds=Bounds(max_seconds=60))
    word = r.program.image.addr("P0_L0")
    assert int.from_bytes(r.program.image.text[word - r.program.image.text_base:][:4],
                          "little") == 0  # UDF #0
    # forall (0:X2=1): the handler runs once, patches the UDF into a NOP, returns to it.
    assert r.complete and r.ok and r.observation == "Always"


@pytest.mark.parametrize(("name", "observation"), [
    # herd's verdicts (catalogue/aarch64-ifetch/kinds.txt): both Forbidden.
    ("DIC1.MP+dmb.st+addrisb-Imp_Instr_R", "Never"),
    ("MP.RF+dc.cvau-dmb.ish+pickctrl-ic.ivau-isb", "Never"),
    # Allowed (herd7 -variant ifetch: Sometimes 1 of 4): a data read of the text, with no
    # dependency on the flag (BLR writes X30 = PC + 4, which depends on no register),
    # may read the text's older message under the Arm model.
    ("MP+rel+blr", "Sometimes"),
])
def test_catalogue_verdicts_that_herd_gives(name: str, observation: str) -> None:
    r = run_test(parse_file(DATA / f"{name}.litmus"), bounds=Bounds(max_seconds=60))
    assert r.complete and r.observation == observation


def test_catalogue_spellings_are_read() -> None:
    jit = parse_file(DATA / "MP.FF+dc.cvau-dmb.ish+dsb.ish-ic.ivau-dsb.ish-rfiINSTNOP.litmus")
    assert jit.meta == {"Hash": "58da9b974ae2e2e32ccbed9878bf3693"}
    assert any(r.thread == 0 and r.reg == "X10" for r in jit.regs)  # written 0:x10
    rel = parse_file(DATA / "MP+rel+blr.litmus")
    assert rel.meta == {"Stable": "X30"}
    isb = parse_file(DATA / "DIC1.MP.RF+dmb.st+addr-rfiINSTRISB.litmus")
    assert isb.meta == {"variant": "ifetch", "CacheType": "IDC DIC"}
