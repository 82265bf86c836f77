"""Data files cannot run code (issue 12).

A crafted search checkpoint, reproducer, campaign file or failure-database entry must not
make the tool run Python the user did not name on the command line.  Each case plants a
file that creates MARKER when run (a pickle whose unpickling opens MARKER for writing; a
scenario file that writes MARKER when imported and again in ``setup()``, whose scenario
even takes a built-in's name), points a data file at it, runs the command in a
subprocess and checks that MARKER never appears (so the file was neither unpickled nor
imported), the exit code (2: a one-line refusal; 0 for a run whose failure database holds
the crafted entry: it is skipped, at most one warning line) and that there is no
traceback.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import pickle
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_bad_input import run_testbed

CHECKPOINT_FORMAT = "cmodx-testbed/search-checkpoint"
SEARCH_FAST = ("--preemptions", "0", "--model-events", "0")

EVIL = '''\
from pathlib import Path

Path({marker!r}).write_text("imported")

from testbed.scenario import Scenario


class Evil(Scenario):
    name = "nosync_isb"  # a built-in's name
    description = "runs code when imported"
    kernels = ("boot.S", "insn.S", "nosync_race.S")

    def setup(self, m):
        Path({marker!r}).write_text("setup ran")
'''

MINE = '''\
from testbed.isa import b
from testbed.scenario import Scenario


class Mine(Scenario):
    name = "mine"
    kernels = ("boot.S", "insn.S", "nosync_race.S")
    ncpus = 2

    def setup(self, m):
        site = m.addr("patch_site")
        m.start(0, "patcher_main", site, b(site, m.addr("site_new")))
        m.start(1, "site_loop", 2, 1)
'''


class Templates:
    """A real reproducer of nosync_stale and a real campaign folder of nosync_isb."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._reproducer: dict[str, Any] | None = None
        self._campaign: Path | None = None

    def _run(self, argv: Sequence[str], want: int) -> None:
        p = run_testbed(argv, cwd=self.root, db=self.root / "db", timeout=60)
        assert p.code == want, f"making a template failed: {p}"

    @property
    def reproducer(self) -> dict[str, Any]:
        if self._reproducer is None:
            self._run(["run", "nosync_stale", "--schedules", "5", "--out", "found",
                       "--no-db"], 1)
            self._reproducer = json.loads(next((self.root / "found").glob("*.json"))
                                          .read_text())
        return copy.deepcopy(self._reproducer)

    @property
    def campaign(self) -> Path:
        if self._campaign is None:
            self._run(["fuzz", "nosync_isb", "--schedules", "2", "--batch", "2", "--workers",
                       "1", "--out", "camp"], 0)
            self._campaign = self.root / "camp"
        return self._campaign


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    return Templates(tmp_path_factory.mktemp("templates"))


class World:
    def __init__(self, root: Path, templates: Templates) -> None:
        self.root = root
        self.templates = templates
        self.cwd = root / "work"
        self.db = root / "db"
        self.inp = root / "in"
        for d in (self.cwd, self.db, self.inp):
            d.mkdir()
        self.marker = root / "MARKER"
        self.evil = self.plant(self.inp / "evil.py")

    def plant(self, path: Path) -> Path:
        path.write_text(EVIL.format(marker=str(self.marker)))
        return path

    @property
    def evil_source(self) -> dict[str, str]:
        return {"file": str(self.evil),
                "sha256": hashlib.sha256(self.evil.read_bytes()).hexdigest()}

    def reproducer(self, change: Callable[[dict[str, Any]], None]) -> Path:
        doc = self.templates.reproducer
        change(doc)
        path = self.inp / "R.json"
        path.write_text(json.dumps(doc))
        return path

    def campaign(self, change: Callable[[dict[str, Any]], None]) -> Path:
        camp = self.inp / "camp"
        shutil.copytree(self.templates.campaign, camp)
        doc = json.loads((camp / "campaign.json").read_text())
        change(doc)
        (camp / "campaign.json").write_text(json.dumps(doc))
        return camp

    def db_entry(self, scenario_dir: str, change: Callable[[dict[str, Any]], None]) -> Path:
        doc = self.templates.reproducer
        change(doc)
        path = self.db / "failures" / scenario_dir / "e0e0e0e0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(doc))
        return path


@dataclass
class Case:
    argv: list[str]
    code: int = 2
    needles: tuple[str, ...] = ()  # the refusal line says these


Builder = Callable[[World], Case]


class _Open:
    """Unpickles as ``open(path, "w")``: a pickle that runs code when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def evil_pickle(w: World) -> bytes:
    return pickle.dumps({"format": CHECKPOINT_FORMAT, "version": 1, "scenario": "nosync_isb",
                         "work": [_Open(w.marker)]})


def checkpoint(data: Callable[[World], bytes]) -> Builder:
    def build(w: World) -> Case:
        ck = w.inp / "search.ckpt"
        ck.write_bytes(data(w))
        return Case(["search", "nosync_isb", *SEARCH_FAST, "--checkpoint", str(ck),
                     "--resume", "--out", str(w.cwd / "so")])
    return build


def json_checkpoint(w: World) -> bytes:
    return json.dumps({"format": CHECKPOINT_FORMAT, "version": 1, "scenario": str(w.evil),
                       "source": w.evil_source, "work": []}).encode()


def set_scenario(value: Callable[[World], str]) -> Callable[[World], Callable[..., None]]:
    return lambda w: lambda d: d.__setitem__("scenario", value(w))


def set_source(w: World) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__("source", w.evil_source)


def replay(change: Callable[[World], Callable[[dict[str, Any]], None]],
           command: str = "replay") -> Builder:
    def build(w: World) -> Case:
        r = w.reproducer(change(w))
        argv = [command, str(r)] + (["-o", str(w.cwd / "small.json")]
                                    if command == "shrink" else [])
        return Case(argv, needles=("--scenario",))
    return build


def replay_relative(w: World) -> Case:
    w.plant(w.cwd / "evil.py")
    r = w.reproducer(lambda d: d.__setitem__("scenario", "evil.py"))
    return Case(["replay", str(r)], needles=("--scenario",))


def replay_digest_differs(w: World) -> Case:
    def change(d: dict[str, Any]) -> None:
        d["scenario"] = "nosync_isb"
        d["source"] = {"file": str(w.evil), "sha256": "0" * 64}
    r = w.reproducer(change)
    return Case(["replay", str(r), "--scenario", str(w.evil)])


def campaign(change: Callable[[World], Callable[[dict[str, Any]], None]]) -> Builder:
    def build(w: World) -> Case:
        camp = w.campaign(change(w))
        return Case(["fuzz", "nosync_isb", "--out", str(camp), "--resume", "--schedules",
                     "4", "--workers", "1"])
    return build


def db_entry(change: Callable[[World], Callable[[dict[str, Any]], None]]) -> Builder:
    def build(w: World) -> Case:
        w.db_entry("nosync_isb", change(w))
        return Case(["run", "nosync_isb", "--schedules", "3"], code=0)
    return build


def db_entry_for_own_scenario(w: World) -> Case:
    """The user runs their own mine.py; a crafted entry of "mine" names evil.py."""
    mine = w.inp / "mine.py"
    mine.write_text(MINE)

    def change(d: dict[str, Any]) -> None:
        d["scenario"] = "mine"
        d["source"] = w.evil_source
    w.db_entry("mine", change)
    return Case(["run", str(mine), "--schedules", "2"], code=0)


def with_name(w: World) -> str:
    return f"{w.evil}:nosync_isb"


CASES = [
    pytest.param(checkpoint(evil_pickle), id="checkpoint-pickle"),
    pytest.param(checkpoint(lambda w: gzip.compress(evil_pickle(w))),
                 id="checkpoint-gzip-pickle"),
    pytest.param(checkpoint(json_checkpoint), id="checkpoint-json-naming-scenario-file"),
    pytest.param(replay(set_scenario(lambda w: str(w.evil))), id="replay-scenario-path"),
    pytest.param(replay(set_scenario(with_name)), id="replay-scenario-path-with-name"),
    pytest.param(replay_relative, id="replay-scenario-relative-path"),
    pytest.param(replay(set_source), id="replay-source"),
    pytest.param(replay(set_scenario(lambda w: str(w.evil)), "shrink"),
                 id="shrink-scenario-path"),
    pytest.param(replay(set_source, "shrink"), id="shrink-source"),
    pytest.param(replay_digest_differs, id="replay-scenario-option-digest-differs"),
    pytest.param(campaign(set_scenario(lambda w: str(w.evil))), id="campaign-scenario-path"),
    pytest.param(campaign(set_source), id="campaign-source"),
    pytest.param(db_entry(set_scenario(lambda w: str(w.evil))), id="faildb-scenario-path"),
    pytest.param(db_entry(set_scenario(with_name)), id="faildb-scenario-path-with-name"),
    pytest.param(db_entry(set_source), id="faildb-source"),
    pytest.param(db_entry_for_own_scenario, id="faildb-source-of-own-scenario"),
]


@pytest.mark.parametrize("build", CASES)
def test_data_file_cannot_run_code(build: Builder, tmp_path: Path,
                                   templates: Templates) -> None:
    w = World(tmp_path, templates)
    case = build(w)
    p = run_testbed(case.argv, cwd=w.cwd, db=w.db)
    lines = [line for line in p.err.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    problems = []
    if w.marker.exists():
        problems.append(f"CODE RAN: MARKER says {w.marker.read_text()!r}")
    if p.code != case.code:
        problems.append(f"exit {p.code}, not {case.code}")
    if "Traceback" in p.err:
        problems.append("a traceback")
    if case.code == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, not 1")
    if case.code == 0 and len(lines) > 1:
        problems.append(f"{len(lines)} stderr lines, not at most 1")
    problems += [f"stderr does not name {n!r}" for n in case.needles if n not in first]
    if problems:
        pytest.fail(f"{'; '.join(problems)} | first stderr line: {first[:200]!r}\n"
                    f"$ testbed {shlex.join(p.argv)}\n-> exit {p.code}\n--- stderr ---\n"
                    f"{p.err[-3000:]}\n--- stdout ---\n{p.out[-1500:]}", pytrace=False)
