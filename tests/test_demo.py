"""`testbed demo`: each demo shows its race from a real, replayable schedule; the
timeline's text (golden files), the SVG and the HTML page (in headless Chromium).

Regenerate the golden files after an intended change of the rendering (or of the
kernels, the scheduler or the shrinker, which change the schedule behind them):

    TESTBED_UPDATE_GOLDEN=1 python -m pytest tests/test_demo.py
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.demo import DEMOS, step_through
from testbed.export import FINDING_BG, HEAD_BG, Page, svg
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk
from testbed.timeline import Fold, Kind, Row, build, fold_rows

GOLDEN = Path(__file__).parent / "data" / "golden"
UPDATE = os.environ.get("TESTBED_UPDATE_GOLDEN") == "1"
SVG_NS = "{http://www.w3.org/2000/svg}"


@dataclass
class DemoRun:
    out: str  # stdout, with the output folder replaced by OUT
    seconds: float
    folder: Path
    schedule: Path  # the saved schedule the demo says replays it
    svg: Path
    html: Path


def run_demo(name: str, folder: Path, *extra: str) -> DemoRun:
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(buf):
        rc = main(["demo", name, "--out", str(folder / "found"), *extra])
    seconds = time.perf_counter() - t0
    assert rc == 0
    text = buf.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    m = re.search(r"^Replay it: testbed replay (\S+) --timeline$", plain, re.M)
    assert m, text
    return DemoRun(text.replace(str(folder), "OUT"), seconds, folder, Path(m.group(1)),
                   folder / f"{name}.svg", folder / f"{name}.html")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{path} missing: run with TESTBED_UPDATE_GOLDEN=1 to create it"
    want = path.read_text(encoding="utf-8")
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            str(path), "now", n=2))
        pytest.fail(f"the output differs from {path} (if intended, regenerate with "
                    f"TESTBED_UPDATE_GOLDEN=1):\n{diff[:6000]}")


@pytest.fixture(scope="module")
def nosync(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    folder = tmp_path_factory.mktemp("nosync")
    return run_demo("nosync-stale", folder, "--svg", str(folder / "nosync-stale.svg"),
                    "--html", str(folder / "nosync-stale.html"))


# ------------------------------------------------------------------------ the demos

def test_demo_lists_every_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for name in ("nosync-stale", "pre-post-ambiguity", "brk-slot-reuse", "brk-fixed"):
        assert re.search(rf"^  {name} +\S", out, re.M), out
    assert "testbed demo nosync-stale" in out


# What each demo must show, besides its finding (or none): rows only its run has.
SHOWS = {
    "nosync-stale": [r"@  nop +patch_site  <== OLD, stale", r">> text store: b site_new",
                     r"~  IC IVAU broadcast: line of patch_site",
                     r"~  catch-up \(ISB\): I-view now b site_new"],
    "pre-post-ambiguity": [r"#  PRE text-poke record: jl_site_a", r"#  POST text-poke record",
                           r"catch-up \(model choice, no CSE\)", r"<== NEW"],
    "brk-slot-reuse": [r"\*  BRK #7 taken at jl_site_", r"=  handler emulated .*<== WRONG",
                       r"#  text-poke record: jl_site_a"],
    "brk-fixed": [r"\*  BRK #7 taken at jl_site_", r"=  handler emulated b jl_site_\w_yes",
                  r"-> IPI 1 sent to CPU1", r"<- IPI 1 acknowledged"],
    "call-ops-uaf": [r"ldur x11, \[x11, #-0x10\] +ftrace_caller\+0x8 +<- 0x\w+ from "
                     r"traced_func_dyn_literal", r">> text store: nop to ftrace_site_dyn",
                     r"kfree\+0x\w+ +-> 0x6b6b6b6b6b6b6b6b to dyn_ops",
                     r"Why: CPU1 entered ftrace_caller"],
}


@pytest.mark.parametrize("name", list(SHOWS))
def test_demo_shows_its_race_and_its_replay_reproduces_it(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_demo(name, tmp_path)
    # How long a demo takes is not asserted: a wall-clock bound in a test fails on a
    # busy machine (it did: 31.9 s under load, 2.9 s alone).
    demo = DEMOS[name]
    out = run.out
    assert "The schedule is a real one, not a script" in out
    for pattern in SHOWS[name]:
        assert re.search(pattern, out), f"{name}: no row matching {pattern!r}"
    timeline = out.split("step  CPU0", 1)[1].split("\nLegend:", 1)[0]
    doc = json.loads(run.schedule.read_text())
    assert doc["meta"]["demo"] == name and doc["config"]["ncpus"] == 2
    assert main(["replay", str(run.schedule)]) == (1 if demo.oracle else 0)
    replayed = capsys.readouterr().out
    assert "did NOT reproduce" not in replayed
    if demo.oracle is None:
        assert "<== FINDING" not in timeline and "No finding: every oracle passed" in out
        assert "[" not in replayed.split("\n", 1)[1]  # no finding line on replay
        return
    assert re.search(rf"!! {demo.oracle}  <== FINDING", timeline), timeline
    assert f"[{demo.oracle}]" in replayed  # the same finding, from the saved schedule
    assert doc["strategy"] == "shrunk" and len(doc["decisions"]) <= doc["meta"]["shrunk_from"]
    assert "Why: " in out


def test_long_runs_fold_their_quiet_stretches(tmp_path: Path) -> None:
    run = run_demo("brk-fixed", tmp_path)
    folds = [int(n) for n in re.findall(r"^ +\.\.\. (\d+) steps? \(CPU", run.out, re.M)]
    assert folds and sum(folds) > 50, run.out
    shown = {int(m) for m in re.findall(r"^ *(\d+)  ", run.out, re.M)}
    decisions = len(json.loads(run.schedule.read_text())["decisions"])
    # Every step is on a row or in a fold (a step may have rows in both).
    assert len(shown) + sum(folds) >= decisions
    assert len(shown) < decisions


def test_golden_demo_text(nosync: DemoRun) -> None:
    assert "\x1b[" not in nosync.out  # not a terminal: plain text
    check_golden("demo-nosync-stale.txt", nosync.out)


def test_golden_replay_timeline(nosync: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(nosync.schedule), "--timeline"]) == 1
    out = capsys.readouterr().out.replace(str(nosync.folder), "OUT")
    check_golden("replay-timeline-nosync-stale.txt", out)


def test_colour_only_on_request_and_the_markers_stay(tmp_path: Path) -> None:
    run = run_demo("nosync-stale", tmp_path, "--color", "always")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.out)
    assert "\x1b[" in run.out
    assert "!! stale-after-flush  <== FINDING" in plain and "<== OLD, stale" in plain


def test_bad_input_is_a_one_line_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(["demo", "no-such-demo"], "unknown demo 'no-such-demo'"),
             (["demo", "nosync-stale", "--seed", "-1"], "--seed must be 0 or more"),
             (["demo", "nosync-stale", "--width", "5"], "--width must be between"),
             (["demo", "nosync-stale", "--html", str(tmp_path / "nope" / "x.html")],
              "no such folder")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("testbed: error: ") and message in err, err


def test_step_needs_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-m", "testbed", "demo", "nosync-stale", "--step"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("testbed: error: --step waits for key presses")
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_step_in_a_terminal_shows_a_row_per_key_press(tmp_path: Path) -> None:
    import pty
    import select
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "demo", "nosync-stale", "--step",
                             "--out", str(tmp_path)], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def until(pattern: str) -> str:
        nonlocal seen
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
            if re.search(pattern, text, re.M):
                return text
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the other end closed
                    break
        pytest.fail(f"no {pattern!r} in the terminal:\n{seen.decode(errors='replace')}")

    try:
        until(r"Enter or space: next row")
        before = until(r"^-{20,}")  # the header is shown before any key
        assert not re.search(r"^ +1  ", before, re.M)
        for key, row in ((b"\n", 1), (b" ", 2)):
            os.write(master, key)
            until(rf"^ +{row}  ")
        os.write(master, b"q")
        text = until(r"^Replay it: ")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    timeline = text.split("next row; c: the rest; q: stop)", 1)[1].split("Legend:", 1)[0]
    assert re.findall(r"^ +(\d+)  ", timeline, re.M) == ["1", "2"]  # two keys, two rows
    assert "[stale-after-flush] step" in text  # the finding is still reported after q


def test_step_through_shows_one_row_per_key() -> None:
    lines = [f"row {i}" for i in range(6)]
    shown: list[str] = []
    assert step_through(lines, shown.append, iter(["\n", " ", "q", "\n"])) == 2
    assert shown == ["row 0", "row 1"]
    shown.clear()
    assert step_through(lines, shown.append, iter(["\n", "c"])) == 6  # c: the rest at once
    assert shown == lines
    shown.clear()
    assert step_through(lines, shown.append, iter(["\n"] * 3)) == 3  # keys ran out: stop


# ------------------------------------------------------------------------- timeline

def test_fold_only_runs_of_quiet_steps() -> None:
    def quiet(step: int) -> Row:
        return Row(step, 1, Kind.INSN, "ldar w9, [x7]", "site_loop+0xc", anchor=False)
    anchor = Row(10, 0, Kind.STORE, "text store")
    items = fold_rows([quiet(1), quiet(1), quiet(2), anchor, quiet(11), quiet(12),
                       quiet(13), quiet(14)], min_run=3)
    # Two quiet steps (three rows) stay; four quiet steps fold into one line.
    assert [type(i).__name__ for i in items] == ["Row", "Row", "Row", "Row", "Fold"]
    fold = items[-1]
    assert isinstance(fold, Fold)
    assert (fold.first, fold.last, fold.steps) == (11, 14, 4)
    assert fold.text() == "... 4 steps (CPU1: 4 in site_loop) ..."


# --------------------------------------------------------------------------- exports

def test_svg_parses_and_has_a_column_per_cpu(nosync: DemoRun) -> None:
    root = ET.parse(nosync.svg).getroot()
    assert root.tag == f"{SVG_NS}svg"
    groups = {g.get("id"): g for g in root.iter(f"{SVG_NS}g")}
    for cpu in (0, 1):
        texts = ["".join(t.itertext()) for t in groups[f"cpu{cpu}"].iter(f"{SVG_NS}text")]
        assert texts[0] == f"CPU{cpu}" and len(texts) > 5
    cpu1 = " ".join("".join(t.itertext()) for t in groups["cpu1"].iter(f"{SVG_NS}text"))
    assert "!! stale-after-flush  <== FINDING" in cpu1


def test_svg_of_a_three_cpu_run() -> None:
    session = Session(load_scenario("jump_label_nosync")())
    result = session.run(RandomWalk(1))
    tl = build(result, session.image, 3)
    page = Page("t", "s", "story", "prov", tl, session.image, [], None, [], "replay", "cmd")
    root = ET.fromstring(svg(page))
    ids = {g.get("id") for g in root.iter(f"{SVG_NS}g")}
    assert {"cpu0", "cpu1", "cpu2", "steps", "legend"} <= ids


def test_html_is_self_contained_with_source(nosync: DemoRun) -> None:
    page = nosync.html.read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # The kernel's source, linked from the timeline's rows.
    m = re.search(r'<a href="#(L-kernels-insn-S-\d+)">caches_clean_inval_pou\+0x24</a>', page)
    assert m, "the DC CVAU row does not link to its source line"
    line = re.search(rf'<span class="line ran" id="{m.group(1)}">.*</span>', page)
    assert line and "dc" in line.group(0) and "cvau" in line.group(0)
    assert re.search(r'<span class="line site" id="L-kernels-nosync-race-S-\d+">'
                     r'<span class="ln">\d+</span>\s*nop', page)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB pixels of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        rows.append(bytes(v for j in range(0, stride, channels) for v in line[j:j + 3]))
    return width, height, rows


def _rgb(css: str) -> bytes:
    return bytes.fromhex(css.lstrip("#"))


def _runs(row: bytes, colour: bytes, min_len: int) -> int:
    """How many stretches of at least ``min_len`` pixels of ``colour`` the row has."""
    count = length = 0
    for x in range(0, len(row), 3):
        if row[x:x + 3] == colour:
            length += 1
        else:
            count += length >= min_len
            length = 0
    return count + (length >= min_len)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = "headless Chromium not installed (Debian package chromium; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(msg + "; CI must install it")
    pytest.skip(msg)


def test_html_in_headless_chromium(nosync: DemoRun, tmp_path: Path) -> None:
    browser = _chromium()
    url = nosync.html.resolve().as_uri()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--force-device-scale-factor=1",
            f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "page.png"
    proc = subprocess.run([*base, "--window-size=1400,1400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), proc.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1400, 1400)
    # The CPU columns: one row of pixels crosses a header box per CPU, side by side.
    head = _rgb(HEAD_BG)
    crossings = [_runs(r, head, 100) for r in rows]
    assert max(crossings) == 2, "the page does not show two CPU column headers"
    # The finding: its banner is on screen (and painted, not just in the markup).
    banner = _rgb(FINDING_BG)
    assert sum(_runs(r, banner, 400) for r in rows[:height // 2]) > 20  # a wide box
    # And what the browser parsed holds the columns and the finding in words.
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=False).stdout
    assert re.search(r'<th class="cpu" id="cpu0">CPU0</th>\s*<th class="cpu" id="cpu1">CPU1',
                     dom)
    assert "stale-after-flush" in dom and "&lt;== FINDING" in dom
