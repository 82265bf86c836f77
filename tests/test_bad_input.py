"""Bad input (issue 12): every malformed file, option or environment variable.

Each case runs ``python -m testbed ...`` in a subprocess, in a fresh folder, with
``TESTBED_DB`` inside that folder, and asserts:

- exit 2 (bad input or usage), or 3 when the scenario's own code raised
  (``setup()``/``check()``/``observe()``), never 1 ("a finding") for either;
- exactly one line on stderr, naming the file (and line or field) or the option, and
  never a traceback;
- no hang (a timeout fails the case);
- nothing written where the command was not told to write (the whole folder is
  compared before and after; ``__pycache__`` beside a scenario file the user named is
  Python's, not the tool's).

A corrupt failure-database entry is the one exception to exit 2: it is skipped with one
warning line naming it and the run gives its normal exit code.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litmus_texts import sm_b_isb

TIMEOUT = 30.0  # seconds; every case here fails fast or runs a few schedules
BAD_UTF8 = b"\xff\xfe\x80 not utf-8 \xc3\x28\n"
CHECKPOINT_FORMAT = "cmodx-testbed/search-checkpoint"
SEARCH_FAST = ("--preemptions", "0", "--model-events", "0")


# -- running the command -------------------------------------------------------------------
@dataclass
class Proc:
    argv: list[str]
    code: int
    out: str
    err: str

    def describe(self) -> str:
        return (f"$ testbed {shlex.join(self.argv)}\n-> exit {self.code}\n"
                f"--- stderr ---\n{self.err[-3000:]}\n--- stdout ---\n{self.out[-1500:]}")


def run_testbed(argv: Sequence[str], *, cwd: Path, db: Path,
            env: Mapping[str, str] | None = None, timeout: float = TIMEOUT) -> Proc:
    """``python -m testbed ARGV`` in ``cwd``; a hang kills its process group and fails."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("TESTBED_")}
    full["TESTBED_DB"] = str(db)
    full.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "testbed", *argv], cwd=cwd, env=full,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        hung = True
    else:
        hung = False
    if hung:
        pytest.fail(f"HANG: testbed {shlex.join(argv)} still running after {timeout:.0f}s; "
                    f"stderr: {err.decode(errors='replace')[-500:]!r}", pytrace=False)
    return Proc(list(argv), proc.returncode, out.decode(errors="replace"),
                err.decode(errors="replace"))


def snapshot(root: Path) -> dict[str, object]:
    """Every file (size, digest) and folder under ``root``, except ``__pycache__``."""
    seen: dict[str, object] = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        if p.is_dir() and not p.is_symlink():
            seen[f"{rel}/"] = None
        else:
            data = p.read_bytes() if p.is_file() else b""
            seen[str(rel)] = (len(data), hashlib.sha256(data).hexdigest())
    return seen


# -- templates: real files made by the tool, then broken --------------------------------------
@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    return Templates(tmp_path_factory.mktemp("templates"))


class Templates:
    """A reproducer, a campaign folder and a search checkpoint, made on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._reproducer: dict[str, Any] | None = None
        self._campaign: Path | None = None
        self._checkpoint: bytes | None = None

    def _run(self, argv: Sequence[str], want: int) -> None:
        p = run_testbed(argv, cwd=self.root, db=self.root / "db", timeout=60)
        assert p.code == want, f"making a template failed:\n{p.describe()}"

    @property
    def reproducer(self) -> dict[str, Any]:
        """A real reproducer of nosync_stale (as ``testbed run`` writes it)."""
        if self._reproducer is None:
            self._run(["run", "nosync_stale", "--schedules", "5", "--out", "found",
                       "--no-db"], 1)
            files = sorted((self.root / "found").glob("*.json"))
            assert files, "testbed run nosync_stale --schedules 5 wrote no reproducer"
            self._reproducer = json.loads(files[0].read_text())
        return copy.deepcopy(self._reproducer)

    @property
    def campaign(self) -> Path:
        """A finished campaign folder of nosync_isb (2 schedules)."""
        if self._campaign is None:
            self._run(["fuzz", "nosync_isb", "--schedules", "2", "--batch", "2",
                       "--workers", "1", "--out", "camp"], 0)
            self._campaign = self.root / "camp"
        return self._campaign

    @property
    def checkpoint(self) -> bytes:
        """A search checkpoint of nosync_isb, bounds 0 preemptions 0 model events."""
        if self._checkpoint is None:
            self._run(["search", "nosync_isb", *SEARCH_FAST, "--checkpoint", "ck",
                       "--out", "search-found"], 0)
            self._checkpoint = (self.root / "ck").read_bytes()
        return self._checkpoint


def checkpoint_json(raw: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The checkpoint as JSON (plain or gzip-compressed), if it is JSON, and whether it was
    compressed; (None, False) for today's pickle."""
    for data, zipped in ((raw, False), (None, True)):
        try:
            if zipped:
                data = gzip.decompress(raw)
            doc = json.loads(data or b"")
        except (OSError, ValueError, EOFError):
            continue
        if isinstance(doc, dict):
            return doc, zipped
    return None, False


# -- one case ------------------------------------------------------------------------------
@dataclass
class World:
    """A fresh folder: ``work/`` (the current folder), ``db/`` ($TESTBED_DB), ``in/``."""

    root: Path
    templates: Templates

    def __post_init__(self) -> None:
        for name in ("work", "db", "in"):
            (self.root / name).mkdir()

    @property
    def cwd(self) -> Path:
        return self.root / "work"

    @property
    def db(self) -> Path:
        return self.root / "db"

    def write(self, name: str, data: str | bytes | object, *, where: str = "in") -> Path:
        path = self.root / where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data)
        else:
            path.write_text(json.dumps(data))
        return path


@dataclass
class Call:
    argv: list[str]
    code: int = 2
    needles: tuple[str, ...] = ()  # substrings of the stderr line
    patterns: tuple[str, ...] = ()  # regular expressions searched in the stderr line
    env: dict[str, str] = field(default_factory=dict)
    may_change: tuple[Path, ...] = ()  # files or folders the command may write or delete
    out_needles: tuple[str, ...] = ()  # substrings of stdout
    no_finding: bool = False  # stdout reports no finding, no reproducer written


Builder = Callable[[World], Call]


def judge(world: World, call: Call) -> None:
    before = snapshot(world.root)
    p = run_testbed(call.argv, cwd=world.cwd, db=world.db, env=call.env)
    after = snapshot(world.root)
    lines = [line for line in p.err.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    problems = []
    if p.code != call.code:
        problems.append(f"exit {p.code}, not {call.code}")
    if "Traceback" in p.err:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, not 1")
    problems += [f"stderr does not name {n!r}" for n in call.needles if n not in first]
    problems += [f"stderr does not match /{r}/" for r in call.patterns
                 if not re.search(r, first)]
    problems += [f"stdout lacks {n!r}" for n in call.out_needles if n not in p.out]
    if call.no_finding and ("reproduce" in p.out or (world.cwd / "testbed-findings").exists()):
        problems.append("a finding was reported")
    allowed = [str(a.relative_to(world.root)) for a in call.may_change]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not any(k == a or k.startswith(a.rstrip("/") + "/")
                                 for a in allowed))
    if changed:
        problems.append(f"wrote where not asked: {', '.join(changed[:6])}")
    if problems:
        pytest.fail(f"{'; '.join(problems)} | first stderr line: {first[:200]!r}\n"
                    + p.describe(), pytrace=False)


def run_case(builder: Builder, tmp_path: Path, templates: Templates) -> None:
    world = World(tmp_path, templates)
    judge(world, builder(world))


# -- reproducers ---------------------------------------------------------------------------
Mutation = Callable[[dict[str, Any]], Any]


def drop(key: str) -> Mutation:
    return lambda d: d.pop(key)


def put(key: str, value: object) -> Mutation:
    return lambda d: d.__setitem__(key, value)


def put_in(outer: str, key: str, value: object) -> Mutation:
    return lambda d: d[outer].__setitem__(key, value)


def reproducer(w: World, mutate: Mutation | None = None, *, raw: bytes | None = None,
               name: str = "R.json") -> Path:
    if raw is not None:
        return w.write(name, raw)
    doc = w.templates.reproducer
    if mutate is not None:
        mutate(doc)
    return w.write(name, doc)


def replay(mutate: Mutation | None = None, *needles: str, raw: bytes | None = None,
           patterns: tuple[str, ...] = ()) -> Builder:
    def build(w: World) -> Call:
        r = reproducer(w, mutate, raw=raw)
        return Call(["replay", str(r)], needles=("R.json", *needles), patterns=patterns)
    return build


SCENARIO_OK = '''\
from testbed.isa import b
from testbed.scenario import Scenario


class Mine(Scenario):
    name = "mine"
    description = "an out-of-tree copy of nosync_isb"
    kernels = ("boot.S", "insn.S", "nosync_race.S")
    ncpus = 2

    def setup(self, m):
        site = m.addr("patch_site")
        m.start(0, "patcher_main", site, b(site, m.addr("site_new")))
        m.start(1, "site_loop", 2, 1)
'''


def mine(w: World) -> Path:
    return w.write("mine.py", SCENARIO_OK)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def replay_py_scenario(w: World) -> Call:
    path = mine(w)
    r = reproducer(w, put("scenario", f"{path}:mine"))
    return Call(["replay", str(r)], needles=("--scenario",),
                patterns=(r"testbed replay \S*R\.json --scenario \S*mine\.py",))


def replay_source_outside(w: World) -> Call:
    path = mine(w)

    def mutate(d: dict[str, Any]) -> None:
        d["scenario"] = "mine"
        d["source"] = {"file": str(path), "sha256": sha256(path)}
    r = reproducer(w, mutate)
    return Call(["replay", str(r)], needles=("--scenario",),
                patterns=(r"testbed replay \S*R\.json --scenario \S*mine\.py",))


def replay_source_digest_differs(w: World) -> Call:
    path = mine(w)

    def mutate(d: dict[str, Any]) -> None:
        d["scenario"] = "mine"
        d["source"] = {"file": str(path), "sha256": "0" * 64}
    r = reproducer(w, mutate)
    return Call(["replay", str(r), "--scenario", str(path)], needles=("mine.py",))


def replay_image_differs(w: World) -> Call:
    doc = w.templates.reproducer
    real = doc["image"]
    # The same first 12 hex digits: a 12-digit message would print the two the same.
    fake = real[:12] + ("1" if real[12] == "0" else "0") * (len(real) - 12)
    doc["image"] = fake
    r = w.write("R.json", doc)
    return Call(["replay", str(r)], needles=(real, fake))


def replay_truncated(w: World) -> Call:
    r = reproducer(w, lambda d: d.__setitem__("decisions", d["decisions"][:5]))
    # The recorded finding did not reproduce because the schedule ended before it.
    return Call(["replay", str(r)], needles=("R.json",), patterns=(r"(?i)\bend",))


def replay_missing_file(w: World) -> Call:
    return Call(["replay", str(w.root / "in" / "nope.json")], needles=("nope.json",))


def replay_folder(w: World) -> Call:
    (w.root / "in" / "R.json").mkdir()
    return Call(["replay", str(w.root / "in" / "R.json")], needles=("R.json",))


def shrink_output_is_folder(w: World) -> Call:
    r = reproducer(w)
    out = w.root / "in" / "shrunk"
    out.mkdir()
    return Call(["shrink", str(r), "-o", str(out)], needles=("shrunk",))


def shrink_not_json(w: World) -> Call:
    r = reproducer(w, raw=b"{ nope")
    return Call(["shrink", str(r), "-o", str(w.cwd / "small.json")], needles=("R.json",))


def shrink_scenario_missing(w: World) -> Call:
    r = reproducer(w, put("scenario", "no_such_scenario"))
    return Call(["shrink", str(r), "-o", str(w.cwd / "small.json")],
                needles=("no_such_scenario",))


REQUIRED = ("format", "version", "scenario", "image", "config", "decisions")

REPRODUCERS = [
    pytest.param(replay(raw=BAD_UTF8), id="not-utf8"),
    pytest.param(replay(raw=b'{\n  "format": nope\n}\n', patterns=(r"R\.json:2",)),
                 id="not-json"),
    pytest.param(replay(raw=b""), id="empty-file"),
    pytest.param(replay(raw=b"[1, 2, 3]\n"), id="json-list"),
    pytest.param(replay(raw=b'"a string"\n'), id="json-string"),
    *[pytest.param(replay(drop(k), k), id=f"missing-{k}") for k in REQUIRED],
    pytest.param(replay(put("format", "something-else"), "format"), id="format-wrong"),
    pytest.param(replay(put("version", 99), "version"), id="version-99"),
    pytest.param(replay(put("version", "1"), "version"), id="version-str"),
    pytest.param(replay(put("scenario", 5), "scenario"), id="scenario-int"),
    pytest.param(replay(put("image", ["x"]), "image"), id="image-list"),
    pytest.param(replay(put("config", [2]), "config"), id="config-list"),
    pytest.param(replay(put("decisions", {"0": "step"}), "decisions"), id="decisions-dict"),
    pytest.param(replay(put("seed", "abc"), "seed"), id="seed-str"),
    pytest.param(replay(put("meta", [1]), "meta"), id="meta-list"),
    pytest.param(replay(put("strategy", 7), "strategy"), id="strategy-int"),
    pytest.param(replay(put("decisions", [["jump", 0]]), "jump"), id="decision-unknown-kind"),
    pytest.param(replay(put("decisions", [["step", "0"]]), "decision"), id="decision-cpu-str"),
    pytest.param(replay(put("decisions", [["step", -1]]), "decision"), id="decision-cpu-neg"),
    pytest.param(replay(put("decisions", ["step"]), "decision"), id="decision-not-list"),
    pytest.param(replay(put("decisions", [["step", 7]]), "decision"),
                 id="decision-cpu-out-of-range"),
    pytest.param(replay_truncated, id="decisions-truncated"),
    pytest.param(replay(put_in("meta", "findings", "x"), "findings"), id="meta-findings-str"),
    pytest.param(replay(put_in("meta", "findings", [7]), "findings"), id="meta-findings-int"),
    pytest.param(replay(put_in("meta", "findings", [{"oracle": 5, "address": 1}]),
                        "findings"), id="meta-findings-oracle-int"),
    pytest.param(replay(put_in("meta", "findings",
                               [{"oracle": "stale-after-flush", "address": "zz"}]),
                        "findings"), id="meta-findings-address-str"),
    pytest.param(replay(put("scenario", "no_such_scenario"), "no_such_scenario"),
                 id="unknown-scenario"),
    pytest.param(replay_image_differs, id="image-digest-differs-full-digests"),
    pytest.param(replay(put_in("config", "ncpus", "2"), "ncpus"), id="config-ncpus-str"),
    pytest.param(replay(put_in("config", "ncpus", 0), "ncpus"), id="config-ncpus-0"),
    pytest.param(replay(put_in("config", "cache", 5), "cache"), id="config-cache-int"),
    pytest.param(replay(put_in("config", "cache", "FOO"), "cache"), id="config-cache-unknown"),
    pytest.param(replay(put_in("config", "params", "x"), "params"), id="config-params-str"),
    pytest.param(replay(put_in("config", "params", {"passes": "a"}), "params"),
                 id="config-params-value-str"),
    pytest.param(replay_py_scenario, id="scenario-py-path-refused-with-command"),
    pytest.param(replay_source_outside, id="source-outside-package-refused-with-command"),
    pytest.param(replay_source_digest_differs, id="source-sha256-differs-from-scenario-option"),
    pytest.param(replay_missing_file, id="no-such-file"),
    pytest.param(replay_folder, id="a-folder"),
    pytest.param(shrink_output_is_folder, id="shrink-output-is-a-folder"),
    pytest.param(shrink_not_json, id="shrink-not-json"),
    pytest.param(shrink_scenario_missing, id="shrink-unknown-scenario"),
]


@pytest.mark.parametrize("build", REPRODUCERS)
def test_reproducer(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- campaign folders (fuzz --resume) -----------------------------------------------------
def campaign(mutate: Mutation | None = None, *needles: str, raw: bytes | None = None,
             scenario: str = "nosync_isb") -> Builder:
    def build(w: World) -> Call:
        camp = w.root / "in" / "camp"
        shutil.copytree(w.templates.campaign, camp)
        spec = camp / "campaign.json"
        if raw is not None:
            spec.write_bytes(raw)
        elif mutate is not None:
            doc = json.loads(spec.read_text())
            mutate(doc)
            spec.write_text(json.dumps(doc, indent=2))
        return Call(["fuzz", scenario, "--out", str(camp), "--resume", "--schedules", "4",
                     "--workers", "1"], needles=("campaign.json", *needles))
    return build


def campaign_py_scenario(w: World) -> Call:
    path = mine(w)
    build = campaign(put("scenario", str(path)))
    call = build(w)
    call.needles = ("mine.py",)
    return call


def campaign_missing(w: World) -> Call:
    camp = w.root / "in" / "camp"
    camp.mkdir()
    return Call(["fuzz", "nosync_isb", "--out", str(camp), "--resume", "--schedules", "4",
                 "--workers", "1"], needles=("camp",))


def campaign_image_differs(w: World) -> Call:
    camp = w.root / "in" / "camp"
    shutil.copytree(w.templates.campaign, camp)
    doc = json.loads((camp / "campaign.json").read_text())
    real = doc["image"]
    fake = real[:12] + ("1" if real[12] == "0" else "0") * (len(real) - 12)
    doc["image"] = fake
    (camp / "campaign.json").write_text(json.dumps(doc))
    return Call(["fuzz", "nosync_isb", "--out", str(camp), "--resume", "--schedules", "4",
                 "--workers", "1"], needles=(real, fake))


def campaign_other_scenario(w: World) -> Call:
    call = campaign()(w)
    call.argv[1] = "nosync_stale"
    call.needles = ("nosync_isb",)
    return call


CAMPAIGNS = [
    pytest.param(campaign(raw=BAD_UTF8), id="not-utf8"),
    pytest.param(campaign(raw=b"{\n  nope\n"), id="not-json"),
    pytest.param(campaign(raw=b"[]\n"), id="json-list"),
    pytest.param(campaign(put("format", "cmodx-testbed/other"), "format"), id="format-wrong"),
    pytest.param(campaign(put("version", 99), "version"), id="version-99"),
    pytest.param(campaign(put("strategy", "foo"), "strategy"), id="strategy-foo"),
    pytest.param(campaign(put("batch", "x"), "batch"), id="batch-str"),
    pytest.param(campaign(put("batch", 0), "batch"), id="batch-0"),
    pytest.param(campaign(put("seed", 1.5), "seed"), id="seed-float"),
    pytest.param(campaign(put("ncpus", "2"), "ncpus"), id="ncpus-str"),
    pytest.param(campaign(put("p_model", "x"), "p_model"), id="p_model-str"),
    pytest.param(campaign(put("cache", "FOO"), "cache"), id="cache-unknown"),
    pytest.param(campaign(put("promises", "yes"), "promises"), id="promises-str"),
    pytest.param(campaign(put("promises", 1), "promises"), id="promises-int"),
    pytest.param(campaign_py_scenario, id="scenario-py-path"),
    pytest.param(campaign_missing, id="no-campaign-json"),
    pytest.param(campaign_other_scenario, id="another-scenario"),
    pytest.param(campaign_image_differs, id="image-digest-differs-full-digests"),
]


@pytest.mark.parametrize("build", CAMPAIGNS)
def test_campaign_folder(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- search checkpoints (search --checkpoint F --resume) ----------------------------------
def checkpoint(data: Callable[[World], bytes], *needles: str,
               extra: Sequence[str] = ()) -> Builder:
    def build(w: World) -> Call:
        ck = w.write("search.ckpt", data(w))
        return Call(["search", "nosync_isb", *SEARCH_FAST, *extra, "--checkpoint", str(ck),
                     "--resume", "--out", str(w.cwd / "so")],
                    needles=("search.ckpt", *needles))
    return build


def benign_doc(w: World) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "version": 1, "scenario": "nosync_isb",
            "image": w.templates.reproducer["image"], "states": 0, "work": []}


WORK_KEYS = ("work", "worklist", "work_list", "frontier", "queue", "stack", "buckets")


def json_checkpoint(w: World, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc, zipped = checkpoint_json(w.templates.checkpoint)
    if doc is None:  # today's checkpoint is a pickle: a JSON one made by hand
        doc, zipped = benign_doc(w), False
    change(doc)
    data = json.dumps(doc).encode()
    return gzip.compress(data) if zipped else data


def without_work(doc: dict[str, Any]) -> None:
    gone = [k for k in WORK_KEYS if k in doc]
    assert gone, f"no work list among the checkpoint's keys {sorted(doc)}; update this test"
    for k in gone:
        del doc[k]


def work_str(doc: dict[str, Any]) -> None:
    key = next((k for k in WORK_KEYS if k in doc), "work")
    doc[key] = "x"


def checkpoint_missing(w: World) -> Call:
    return Call(["search", "nosync_isb", *SEARCH_FAST, "--checkpoint",
                 str(w.root / "in" / "nope.ckpt"), "--resume", "--out", str(w.cwd / "so")],
                needles=("nope.ckpt",))


def checkpoint_resume_alone(w: World) -> Call:
    return Call(["search", "nosync_isb", *SEARCH_FAST, "--resume", "--out",
                 str(w.cwd / "so")], patterns=(r"--checkpoint|--resume",))


CHECKPOINTS = [
    pytest.param(checkpoint(lambda w: os.urandom(64) + BAD_UTF8), id="garbage"),
    pytest.param(checkpoint(lambda w: b""), id="empty"),
    pytest.param(checkpoint(lambda w: pickle.dumps(benign_doc(w))), id="a-pickle"),
    pytest.param(checkpoint(lambda w: gzip.compress(pickle.dumps(benign_doc(w)))),
                 id="a-gzip-pickle"),
    pytest.param(checkpoint(lambda w: json_checkpoint(w, without_work)), id="json-no-work"),
    pytest.param(checkpoint(lambda w: json_checkpoint(w, work_str)), id="json-work-str"),
    pytest.param(checkpoint(lambda w: b"[1, 2]\n"), id="json-list"),
    pytest.param(checkpoint(lambda w: w.templates.checkpoint, extra=("--preemptions", "1")),
                 id="other-bounds"),
    pytest.param(checkpoint_missing, id="no-such-file"),
    pytest.param(checkpoint_resume_alone, id="resume-without-checkpoint"),
]


@pytest.mark.parametrize("build", CHECKPOINTS)
def test_search_checkpoint(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- failure-database entries: skipped with one warning, the run goes on ---------------------
ENTRY = "c0ffee.json"


def db_entry(mutate: Mutation | None = None, *, raw: bytes | None = None) -> Builder:
    def build(w: World) -> Call:
        where = f"db/failures/nosync_isb/{ENTRY}"
        if raw is not None:
            path = w.write(where, raw, where=".")
        else:
            doc = w.templates.reproducer
            doc["scenario"] = "nosync_isb"
            doc.pop("source", None)
            if mutate is not None:
                mutate(doc)
            path = w.write(where, doc, where=".")
        return Call(["run", "nosync_isb", "--schedules", "3"], code=0, needles=(ENTRY,),
                    may_change=(path,))
    return build


FAILDB = [
    pytest.param(db_entry(raw=BAD_UTF8), id="not-utf8"),
    pytest.param(db_entry(raw=b"{ nope"), id="not-json"),
    pytest.param(db_entry(raw=b""), id="empty"),
    pytest.param(db_entry(raw=b"[1]"), id="json-list"),
    pytest.param(db_entry(drop("decisions")), id="missing-decisions"),
    pytest.param(db_entry(put("version", 99)), id="version-99"),
    pytest.param(db_entry(put("decisions", [["jump", 0]])), id="decision-unknown-kind"),
    pytest.param(db_entry(put("decisions", [["step", 9]])), id="decision-cpu-out-of-range"),
    pytest.param(db_entry(put_in("config", "ncpus", "x")), id="config-ncpus-str"),
]


@pytest.mark.parametrize("build", FAILDB)
def test_failure_db_entry(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- litmus files --------------------------------------------------------------------------
GOOD_LITMUS = sm_b_isb("GOOD.SM.B+isb", cache="DIC")


def litmus(data: str | bytes, *needles: str, patterns: tuple[str, ...] = ()) -> Builder:
    def build(w: World) -> Call:
        path = w.write("bad.litmus", data)
        return Call(["litmus", str(path)], needles=("bad.litmus", *needles), patterns=patterns)
    return build


def litmus_missing(w: World) -> Call:
    return Call(["litmus", str(w.root / "in" / "nope.litmus")], needles=("nope.litmus",))


def litmus_empty_folder(w: World) -> Call:
    (w.root / "in" / "empty").mkdir()
    return Call(["litmus", str(w.root / "in" / "empty")], needles=("empty",))


def litmus_folder_one_bad(w: World) -> Call:
    w.write("suite/good.litmus", GOOD_LITMUS)
    w.write("suite/bad.litmus", GOOD_LITMUS.replace("CacheType=DIC", "CacheType=FOO"))
    return Call(["litmus", str(w.root / "in" / "suite")], needles=("bad.litmus",),
                out_needles=("GOOD.SM.B+isb",))


LITMUS = [
    pytest.param(litmus("AArch64 T\n{ 0:X0=1; }\n P0 ;\n MOV X0,#1 ;\nexists (0:X0=\n",
                        patterns=(r"bad\.litmus:5",)), id="unparseable"),
    pytest.param(litmus(BAD_UTF8), id="not-utf8"),
    pytest.param(litmus(b""), id="empty-file"),
    pytest.param(litmus(GOOD_LITMUS.replace("CacheType=DIC", "CacheType=FOO"), "FOO"),
                 id="cachetype-unknown"),
    pytest.param(litmus("X86 T\n{ }\n P0 ;\n MOV EAX,1 ;\nexists (0:EAX=1)\n"),
                 id="not-aarch64"),
    pytest.param(litmus_missing, id="no-such-path"),
    pytest.param(litmus_empty_folder, id="empty-folder"),
    pytest.param(litmus_folder_one_bad, id="folder-with-one-bad-test-goes-on"),
]


@pytest.mark.parametrize("build", LITMUS)
def test_litmus_file(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- scenario and kernel files (run path/x.py) -----------------------------------------------
def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def scenario(text: str | bytes, *needles: str, code: int = 2, target: str = "x.py",
             patterns: tuple[str, ...] = (), files: Mapping[str, str] | None = None,
             ) -> Builder:
    def build(w: World) -> Call:
        for name, body in (files or {}).items():
            w.write(name, body)
        body = text.replace("@IN@", str(w.root / "in")) if isinstance(text, str) else text
        w.write("x.py", body)
        return Call(["run", str(w.root / "in" / target), "--schedules", "2"], code=code,
                    needles=needles, patterns=patterns, no_finding=True)
    return build


SYNTAX = "from testbed.scenario import Scenario\n\nclass X(Scenario)\n    name = 'x'\n"
AT_IMPORT = ("from testbed.scenario import Scenario\n\n"
             "raise LookupError('no configuration here')\n")
TWO = (SCENARIO_OK + "\n\nclass Other(Mine):\n    name = 'other'\n")
MISSING_S = SCENARIO_OK.replace('"nosync_race.S")', '"nosync_race.S", "no_such_kernel.S")')
BAD_S = "\t.text\n\t.globl bad_fn\nbad_fn:\n\tnop\n\tfrobnicate x0, x1\n\tret\n"
ASM_BESIDE = SCENARIO_OK.replace('"nosync_race.S")', '"nosync_race.S", "bad.S")')
ASM_ABS = SCENARIO_OK.replace('"nosync_race.S")', '"nosync_race.S", "@IN@/bad.S")')
NCPUS_0 = SCENARIO_OK.replace("ncpus = 2", "ncpus = 0")
STRATEGY_DEPTH_0 = SCENARIO_OK.replace("ncpus = 2", "ncpus = 2\n    strategy = {'name': 'pct', "
                                       "'depth': 0}")
STRATEGY_FIELD = SCENARIO_OK.replace("ncpus = 2", "ncpus = 2\n    strategy = {'nme': 'pct'}")
SETUP_RAISES = SCENARIO_OK.replace('        site = m.addr("patch_site")\n',
                                   '        raise RuntimeError("setup went wrong")\n', 1)
CHECK_RAISES = SCENARIO_OK + ('\n    def check(self, m):\n'
                              '        raise ValueError("check went wrong")\n')
OBSERVE_RAISES = SCENARIO_OK + ('\n    def observe(self, m):\n'
                                '        raise KeyError("observe went wrong")\n')


def raising(text: str, exc: str, message: str) -> Builder:
    line = line_of(text, message)
    return scenario(text, f"x.py:{line}", exc, message, code=3)


SCENARIOS = [
    pytest.param(scenario(SYNTAX, "x.py", patterns=(r"x\.py:3|line 3",)), id="syntax-error"),
    pytest.param(scenario(b"from testbed.scenario import Scenario\nX = '\xff\xfe'\n", "x.py",
                          patterns=(r"(?i)utf-?8",)), id="not-utf8"),
    pytest.param(scenario(AT_IMPORT, "x.py", "LookupError", "no configuration here",
                          patterns=(r"x\.py:3|line 3",)), id="raises-at-import"),
    pytest.param(scenario("X = 1\n", "x.py"), id="no-scenario-class"),
    pytest.param(scenario(TWO, "x.py", ":NAME"), id="two-classes-no-name"),
    pytest.param(scenario(SCENARIO_OK, "nope", target="x.py:nope"), id="name-not-found"),
    pytest.param(scenario(MISSING_S, "no_such_kernel.S"), id="kernel-file-missing"),
    pytest.param(scenario(ASM_BESIDE, "bad.S:5", files={"bad.S": BAD_S}),
                 id="kernel-asm-error-beside-scenario"),
    pytest.param(scenario(ASM_ABS, "bad.S:5", files={"bad.S": BAD_S}),
                 id="kernel-asm-error-absolute-path"),
    pytest.param(scenario(NCPUS_0, "x.py", "ncpus"), id="ncpus-0"),
    pytest.param(scenario(STRATEGY_DEPTH_0, "strategy", "--depth"), id="strategy-depth-0"),
    pytest.param(scenario(STRATEGY_FIELD, "strategy", "'nme'"), id="strategy-unknown-field"),
    pytest.param(scenario(SCENARIO_OK, "nope.py", target="nope.py"), id="no-such-file"),
    pytest.param(raising(SETUP_RAISES, "RuntimeError", "setup went wrong"),
                 id="setup-raises-exit-3"),
    pytest.param(raising(CHECK_RAISES, "ValueError", "check went wrong"),
                 id="check-raises-exit-3-not-1"),
    pytest.param(raising(OBSERVE_RAISES, "KeyError", "observe went wrong"),
                 id="observe-raises-exit-3"),
]


@pytest.mark.parametrize("build", SCENARIOS)
def test_scenario_file(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


# -- command-line options and environment variables ----------------------------------------
def cli(*argv: str, needles: tuple[str, ...] = (), env: Mapping[str, str] | None = None,
        patterns: tuple[str, ...] = ()) -> Builder:
    """``argv`` with ``@IN@`` for the input folder, ``@CWD@`` for the current folder."""
    def build(w: World) -> Call:
        args = [a.replace("@IN@", str(w.root / "in")).replace("@CWD@", str(w.cwd))
                for a in argv]
        if any("@GOOD@" in a for a in args):
            good = w.write("good.litmus", GOOD_LITMUS)
            args = [a.replace("@GOOD@", str(good)) for a in args]
        if any("@R@" in a for a in args):
            r = reproducer(w)
            args = [a.replace("@R@", str(r)) for a in args]
        if any("@FILE@" in a for a in args):
            f = w.write("file.txt", "not a folder\n")
            args = [a.replace("@FILE@", str(f)) for a in args]
        return Call(args, needles=needles, patterns=patterns, env=dict(env or {}))
    return build


RUN = ("run", "nosync_isb")
FUZZ = ("fuzz", "nosync_isb", "--out", "@CWD@/camp", "--workers", "1")
SEARCH = ("search", "nosync_isb")
OUT_OR_FILE = (r"--out|file\.txt",)


def opt(option: str, value: str, *base: str, extra: tuple[str, ...] = ()) -> pytest.ParameterSet:
    return pytest.param(cli(*base, *extra, option, value, needles=(option,)),
                        id=f"{base[0]}{option}={value}")


OPTIONS = [
    opt("--schedules", "0", *RUN, extra=("--no-db",)),
    opt("--schedules", "-1", *RUN),
    opt("--cpus", "0", *RUN, extra=("--schedules", "3")),
    opt("--cpus", "-1", *RUN, extra=("--schedules", "3")),
    opt("--cpus", "9999", *RUN, extra=("--schedules", "3")),
    opt("--depth", "0", *RUN, extra=("--strategy", "pct", "--schedules", "3")),
    opt("--k", "-1", *RUN, extra=("--strategy", "pct", "--schedules", "3")),
    opt("--p-model", "5", *RUN, extra=("--schedules", "3")),
    opt("--p-model", "-0.1", *RUN, extra=("--schedules", "3")),
    opt("--p-model", "nan", *RUN, extra=("--schedules", "3")),
    opt("--seed", "abc", *RUN, extra=("--schedules", "3")),
    opt("--strategy", "foo", *RUN, extra=("--schedules", "3")),
    opt("--cache", "FOO", *RUN, extra=("--schedules", "3")),
    opt("--set", "nope=1", *RUN, extra=("--schedules", "3")),
    opt("--set", "passes", *RUN, extra=("--schedules", "3")),
    opt("--set", "passes=-1", *RUN, extra=("--schedules", "3")),
    pytest.param(cli(*RUN, "--bogus", needles=("--bogus",)), id="run--bogus-option"),
    pytest.param(cli("run", needles=("scenario",)), id="run-no-scenario"),
    pytest.param(cli("run", "nosync_stale", "--schedules", "5", "--out", "@FILE@",
                     patterns=OUT_OR_FILE), id="run--out-is-a-file"),
    opt("--batch", "0", *FUZZ, extra=("--schedules", "4")),
    opt("--time", "-5", *FUZZ),
    opt("--time", "0", *FUZZ),
    opt("--time", "nan", *FUZZ),
    opt("--workers", "0", *FUZZ, extra=("--schedules", "4")),
    opt("--schedules", "0", *FUZZ),
    opt("--depth", "0", *FUZZ, extra=("--strategy", "pct", "--schedules", "4")),
    pytest.param(cli("fuzz", "nosync_isb", "--out", "@FILE@", "--schedules", "2",
                     "--workers", "1", patterns=OUT_OR_FILE), id="fuzz--out-is-a-file"),
    opt("--preemptions", "-1", *SEARCH),
    opt("--model-events", "-1", *SEARCH),
    opt("--max-states", "0", *SEARCH),
    opt("--max-seconds", "-1", *SEARCH),
    opt("--max-memory", "0", *SEARCH),
    opt("--max-memory", "12Q", *SEARCH),
    opt("--cpus", "0", *SEARCH),
    pytest.param(cli(*SEARCH, "--set", "passes=-1", needles=("passes",)),
                 id="search--set-passes=-1"),
    pytest.param(cli(*SEARCH, "--set", "nosuch=1", needles=("nosuch",)),
                 id="search--set-nosuch=1"),
    pytest.param(cli(*SEARCH, "--set", "passes=abc", needles=("passes",)),
                 id="search--set-passes=abc"),
    pytest.param(cli("search", "nosync_stale", *SEARCH_FAST, "--out", "@FILE@",
                     patterns=OUT_OR_FILE), id="search--out-is-a-file"),
    opt("--max-runs", "0", "shrink", "@R@", extra=("-o", "@CWD@/small.json")),
    opt("--max-states", "0", "litmus", "@GOOD@"),
    opt("--random", "-1", "litmus", "@GOOD@"),
    opt("--max-seconds", "-1", "litmus", "@GOOD@"),
    pytest.param(cli("frobnicate", needles=("frobnicate",)), id="unknown-command"),
    pytest.param(cli("replay", needles=("file",)), id="replay-no-file"),
    pytest.param(cli(*RUN, "--schedules", "3", env={"TESTBED_SEED": "abc"},
                     needles=("TESTBED_SEED",)), id="env-TESTBED_SEED=abc"),
    pytest.param(cli(*RUN, "--schedules", "3", env={"TESTBED_SEED": "-1"},
                     needles=("TESTBED_SEED",)), id="env-TESTBED_SEED=-1"),
]


@pytest.mark.parametrize("build", OPTIONS)
def test_option(build: Builder, tmp_path: Path, templates: Templates) -> None:
    run_case(build, tmp_path, templates)


def test_enough_cases() -> None:
    """Issue 12 asks for at least 60 malformed inputs across these kinds."""
    counts = {"reproducers": len(REPRODUCERS), "campaigns": len(CAMPAIGNS),
              "checkpoints": len(CHECKPOINTS), "failure db": len(FAILDB),
              "litmus": len(LITMUS), "scenario and kernel files": len(SCENARIOS),
              "options and environment": len(OPTIONS)}
    assert all(counts.values()) and sum(counts.values()) >= 60, counts
