"""Barrier ablation (testbed/ablation.py): the points found in the kernels, their weakened
encodings checked against the toolchain's own plain forms, and ablated images that
schedules record and replay rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.ablate import Row, ablate, weaken_and_search
from testbed.ablation import AblationError, find_points, plain_form, to_config, weaken
from testbed.asm import Source, link
from testbed.cli import main
from testbed.scenario import Session, load_scenario, session_for
from testbed.schedule import Schedule, ScheduleMismatch
from testbed.search import SearchBounds
from testbed.strategies import RandomWalk

TEXT, DATA = 0x0800_0000, 0x2000_0000


def words(src: str) -> list[int]:
    image = link([Source("a.S", "\t.text\n" + src)], text_base=TEXT, data_base=DATA,
                 defines={}, file_align=0x100)
    return [line.word for line in image.listing if line.is_insn]


# (acquire/release form, its plain form): both assembled by testbed.asm, whose encodings
# tests/test_asm_gnu.py checks against GNU as
PAIRS = [
    ("ldar w1, [x2]", "ldr w1, [x2]"),
    ("ldar x1, [x2]", "ldr x1, [x2]"),
    ("ldarb w1, [x2]", "ldrb w1, [x2]"),
    ("stlr w3, [x4]", "str w3, [x4]"),
    ("stlr x3, [x4]", "str x3, [x4]"),
    ("stlrh w3, [x4]", "strh w3, [x4]"),
    ("ldapr w2, [x3]", "ldr w2, [x3]"),
    ("ldaxr w5, [x4]", "ldxr w5, [x4]"),
    ("stlxr w5, w6, [x4]", "stxr w5, w6, [x4]"),
    ("ldaxp x1, x2, [x3]", "ldxp x1, x2, [x3]"),
    ("stlxp w9, x1, x2, [x3]", "stxp w9, x1, x2, [x3]"),
    ("casal w0, w6, [x1]", "cas w0, w6, [x1]"),
    ("casa x0, x6, [x1]", "cas x0, x6, [x1]"),
    ("swpal w0, w1, [x2]", "swp w0, w1, [x2]"),
    ("ldaddal x0, x1, [x2]", "ldadd x0, x1, [x2]"),
    ("ldclrl w0, w1, [x2]", "ldclr w0, w1, [x2]"),
    ("stlurb w1, [x2, #3]", "sturb w1, [x2, #3]"),
]


@pytest.mark.parametrize(("strong", "plain"), PAIRS, ids=[p[0] for p in PAIRS])
def test_plain_forms_are_the_toolchains(strong: str, plain: str) -> None:
    [s], [p] = words(strong), words(plain)
    got = plain_form(s)
    assert got is not None and got[0] == p, (hex(s), got, hex(p))


def test_plain_accesses_have_no_plain_form() -> None:
    for src in ("ldr w1, [x2]", "str x1, [x2, #8]", "ldxr w1, [x2]", "cas w0, w1, [x2]",
                "ldadd w0, w1, [x2]", "nop", "add x0, x0, #1"):
        [w] = words(src)
        assert plain_form(w) is None, src


def test_points_of_the_nosync_patcher_follow_the_kernel_source() -> None:
    """caches_clean_inval_pou: DC CVAU, DSB ISH (IDC=0 path), DSB ISHST (IDC path), IC IVAU,
    DSB ISH, ISB (twice: DIC and not); aarch64_insn_write: its lock's acquire and release
    and its barriers; each named by function, offset and source line."""
    session = Session(load_scenario("nosync_isb")())
    points = find_points(session.image, ["caches_clean_inval_pou", "aarch64_insn_write"])
    by_fn: dict[str, list[str]] = {}
    for p in points:
        by_fn.setdefault(p.function, []).append(p.what.split(" ->")[0])
        assert p.file.endswith("kernels/insn.S") and p.line > 0 and p.source
        assert session.image.addr(p.function) + p.offset == p.addr
    assert by_fn["caches_clean_inval_pou"] == [
        "dsb ishst", "dc cvau, x2", "dsb ish", "isb", "ic ivau, x2", "dsb ish", "isb"]
    assert by_fn["aarch64_insn_write"] == [
        "ldaxr", "dsb ishst", "isb", "dsb ishst", "dsb ish", "isb", "stlr"]
    with pytest.raises(AblationError, match="no function 'nope'"):
        find_points(session.image, ["nope"])


def test_declared_calls_are_points() -> None:
    session = Session(load_scenario("jump_label_kick")())
    points = find_points(session.image, ["jump_label_update"], calls=["kick_all_cpus_sync"])
    assert [p.what for p in points if p.kind == "call"] == ["bl kick_all_cpus_sync -> nop"]
    # a declared helper this image does not link has no call to weaken
    assert find_points(session.image, ["jump_label_update"], calls=["not_linked"]) == [
        p for p in points if p.kind != "call"]


def test_an_ablated_image_is_recorded_and_rebuilt_on_replay() -> None:
    cls = load_scenario("nosync_isb")
    base = Session(cls())
    [isb] = [p for p in find_points(base.image, ["site_loop"]) if p.what.startswith("isb")]
    session = Session(cls(), ablate=to_config([isb]))
    assert session.image.digest != base.image.digest
    assert session.image.text[isb.addr - TEXT:][:4] == (0xD503201F).to_bytes(4, "little")
    assert weaken(base.image, [isb]).digest == session.image.digest
    for seed in range(200):
        r = session.run(RandomWalk(seed))
        if r.findings:
            break
    else:
        pytest.fail("nosync_isb without its ISB: no stale execution in 200 seeds")
    schedule = Schedule.from_json(r.schedule.to_json())
    assert schedule.config["ablate"] == to_config([isb])
    again = Session(cls(), ablate=schedule.config["ablate"]).replay(schedule)
    assert [f.signature() for f in again.findings] == [f.signature() for f in r.findings]
    with pytest.raises(ScheduleMismatch):
        base.replay(schedule)  # the unablated image is another image
    stale = [{**to_config([isb])[0], "from": 0xD503201F}]
    with pytest.raises(ScheduleMismatch, match=r"ablation: .*the kernel changed"):
        Session(cls(), ablate=stale)


def test_jump_label_kick_ablation_finds_what_the_kernel_relies_on() -> None:
    """Without DC CVAU (IDC=0), without IC IVAU, without the kick: each a race (the
    kick's is jump_label_nosync's static-key incoherence); every needed row's reproducer
    replays through the schedule alone (`session_for` rebuilds the ablated image)."""
    report = ablate(load_scenario("jump_label_kick"),
                    functions=["caches_clean_inval_pou", "jump_label_update"], memory="sc",
                    bounds=SearchBounds(1, 0, max_seconds=120), schedules=20)
    rows = {r.point.what: r for r in report.rows}
    for what in ("dc cvau, x2 -> nop", "ic ivau, x2 -> nop", "bl kick_all_cpus_sync -> nop"):
        row = rows[what]
        assert row.needed and row.oracle == "static-key-incoherence", (what, row)
        assert row.reproducer is not None and row.reproducer.config["ablate"]
        again = session_for(Schedule.from_json(row.reproducer.to_json())).replay(
            row.reproducer)
        assert any(f.oracle == row.oracle for f in again.findings)
    not_needed = [r for r in report.rows if not r.needed]
    assert not_needed and all("states" in r.how and "random schedules" in r.how
                              for r in not_needed)
    assert "no finding without ablation" in report.baseline
    assert any(p.what.startswith("dsb ishst") for p in report.not_executed)  # the IDC path


def test_the_cli_reports_each_point_and_exits_1_when_one_is_needed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ablate", "nosync_isb", "--functions", "site_loop", "--memory", "sc",
                 "--schedules", "10", "--out", str(tmp_path), "--json",
                 "--html", str(tmp_path / "html")])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    rows = {r["points"][0]["weakened"]: r for r in doc["rows"]}
    isb = rows["isb -> nop"]
    assert isb["verdict"] == "needed" and isb["oracle"] == "stale-after-flush"
    assert Path(isb["reproducer"]).is_file() and isb["points"][0]["source"].startswith("isb")
    assert doc["pairs"] == [] and all(len(r["points"]) == 1 for r in doc["rows"])
    assert main(["replay", isb["reproducer"]]) == 1
    index = (tmp_path / "html" / "index.html").read_text()
    assert '<a href="site_loop+0x18.html">needed</a>' in index and "not shown needed" in index
    page = (tmp_path / "html" / "site_loop+0x18.html").read_text()
    assert "stale-after-flush" in page and "site_loop+0x18 (isb -&gt; nop)" in page
    assert main(["ablate", "nosync_isb", "--functions", "nope"]) == 2


def test_points_in_file_local_functions_are_found_and_replayed() -> None:
    """el1_irq is a label local to boot.S: its points are named by it, and a schedule
    that records one rebuilds the same image."""
    session = Session(load_scenario("jump_label_kick")())
    points = find_points(session.image, ["el1_irq", "handle_ipi"])
    assert points and all(p.function in ("el1_irq", "handle_ipi") for p in points)
    again = Session(load_scenario("jump_label_kick")(), ablate=to_config(points[:1]))
    assert again.ablated == points[:1]


def test_a_scenario_of_ones_own_is_ablated_and_its_printed_replay_command_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reproducer of a search witness, shrunk, keeps the scenario file it came from
    (search and shrink both carried it), so the printed command names --scenario."""
    own = Path(__file__).parent / "data" / "own_scenario"
    for f in own.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["ablate", "ftrace_race.py", "--functions", "caches_clean_inval_pou",
                 "--memory", "sc", "--preemptions", "1", "--model-events", "0",
                 "--schedules", "5"]) == 1
    out = capsys.readouterr().out
    [first] = [line.split("reproduce: ")[1] for line in out.splitlines()
               if "reproduce: " in line][:1]
    words = first.split()
    assert words[:2] == ["testbed", "replay"] and words[3:] == ["--scenario", "ftrace_race.py"]
    assert main(words[1:]) == 1


def _replays(row: Row) -> None:
    """A needed row's reproducer, through its JSON and the schedule alone."""
    assert row.reproducer is not None and row.reproducer.config["ablate"]
    schedule = Schedule.from_json(row.reproducer.to_json())
    again = session_for(schedule).replay(schedule)
    assert any(f.oracle == row.oracle for f in again.findings), row


def test_the_brk_sketch_needs_its_release_acquire_pair_under_arm_only() -> None:
    """The 2019 BRK sketch (brk_release: smp_store_release of the slot's address, the
    handler's smp_load_acquire).  Under arm, without promises, neither alone is shown
    needed (the patch lock's LDAXR after the release orders the BRK store after it,
    RCsc, and a CPU that executes the BRK reads after it, F1; a CPU's stores land in
    program order); without both, the handler reads the new address and then the old
    instruction and emulates it: a BRK-emulation finding (brk_plain's race), here from
    the random schedules (the search finds it at 1 preemption and 2 model events, as
    the README's table says).  Under sc the pair is not needed."""
    cls = load_scenario("brk_release")
    fns = ["text_poke_brk_single", "text_poke_single_handler"]
    arm = ablate(cls, functions=fns, memory="arm", bounds=SearchBounds(1, 1), schedules=10,
                 pairs=True)
    assert [(r.what, r.verdict) for r in arm.rows] == [
        ("stlr -> str", "not shown needed"), ("ldar -> ldr", "not shown needed")]
    assert all(r.covered and r.schedules == 10 for r in arm.rows)
    [pair] = arm.pairs
    assert pair.what == "stlr -> str + ldar -> ldr" and pair.verdict == "needed together"
    assert pair.oracle == "brk-emulation" and pair.how == "random seed 8"
    _replays(pair)
    sc = ablate(cls, functions=fns, memory="sc", bounds=SearchBounds(1, 1), schedules=20,
                pairs=True)
    assert [r.verdict for r in sc.rows + sc.pairs] == ["not shown needed"] * 3
    assert all(r.covered and r.schedules == 20 for r in sc.rows + sc.pairs)


def test_the_kicks_dsb_and_the_flushs_last_dsb_are_needed_together_under_arm() -> None:
    """jump_label_kick: the DSB ISH that ends caches_clean_inval_pou and the one
    kick_all_cpus_sync() executes before its IPI each complete the IC IVAU (fetch rule
    9); without both, a worker takes the IPI, and still runs the old NOP after the
    static key's enable returned."""
    cls = load_scenario("jump_label_kick")
    points = find_points(Session(cls()).image, ["caches_clean_inval_pou",
                                                "kick_all_cpus_sync"])
    last = [p for p in points if p.function == "caches_clean_inval_pou"
            and p.what == "dsb ish -> nop"][-1]
    [kick] = [p for p in points if p.function == "kick_all_cpus_sync"
              and p.what == "dsb ish -> nop"]
    row = weaken_and_search(cls, (last, kick), memory="arm", bounds=SearchBounds(1, 1),
                            schedules=0)
    assert row.verdict == "needed together" and row.oracle == "static-key-incoherence"
    _replays(row)
    for alone in (last, kick):
        row = weaken_and_search(cls, (alone,), memory="arm", bounds=SearchBounds(1, 1),
                                schedules=0)
        assert not row.needed and row.covered, alone


def test_without_promises_the_cli_says_writer_side_points_cannot_be_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ablate", "brk_release", "--functions", "text_poke_brk_single", "--memory",
            "arm", "--preemptions", "0", "--model-events", "0", "--schedules", "0",
            "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cannot be shown needed: text_poke_brk_single+0x28" in out
    assert main([*args, "--promises"]) == 0
    out = capsys.readouterr().out
    assert "with promises" in out and "cannot be shown needed" not in out


def test_the_brk_protocols_kicks_are_points_and_the_first_is_needed() -> None:
    """brk_refcount_sync declares its file-local text_poke_kick ablatable: the kick
    after the BRK and the one after the final instruction are points.  Without the
    first, a CPU can start running the final instruction with no traced event after the
    record (brk_no_sync's trace-decode finding).  The second is not shown needed: a CPU
    that still fetches the BRK traps, finds no descriptor or the old one, and returns
    to the same PC through the ERET, which synchronises it (x86's text_poke_bp_batch()
    syncs after removing the int3 so that no CPU hits it once the descriptor is gone:
    a handler that claims no int3 is not an option there)."""
    cls = load_scenario("brk_refcount_sync")
    points = find_points(Session(cls()).image, ["text_poke_brk_sync"], cls.ablatable)
    kicks = [p for p in points if p.kind == "call"]
    assert [p.what for p in kicks] == ["bl text_poke_kick -> nop"] * 2
    first = weaken_and_search(cls, kicks[:1], memory="sc", bounds=SearchBounds(1, 0),
                              schedules=0)
    assert first.needed and first.oracle == "trace-decode", first
    _replays(first)
    second = weaken_and_search(cls, kicks[1:], memory="sc", bounds=SearchBounds(1, 0),
                               schedules=0)
    assert not second.needed and second.covered
