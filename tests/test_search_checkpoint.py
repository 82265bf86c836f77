"""Search checkpoints are plain data (gzip-compressed JSON, validated field by field) and
searches are bounded in memory: a crafted checkpoint never runs code, a malformed one is
refused naming the file and the field, and a search stopped by its memory bound resumes
to exactly the uninterrupted result."""

from __future__ import annotations

import ast
import copy
import gzip
import itertools
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import testbed.search as search_module
from testbed.scenario import Session, load_scenario
from testbed.search import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    MIB,
    MIN_MEMORY,
    CheckpointError,
    SearchBounds,
    SearchResult,
    resident_memory,
    search,
    state_bytes,
)


def session(name: str, **params: int) -> Session:
    cls = load_scenario(name)
    return Session(cls(), params={**cls.search_scope, **params})


def read_doc(path: Path) -> dict[str, Any]:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    assert isinstance(doc, dict)
    return doc


def outcome(res: SearchResult) -> tuple[int, int, int, set[tuple[str, int, tuple[int, ...]]]]:
    return res.states, res.transitions, res.finals, set(res.findings)


# -- the format --------------------------------------------------------------------------

def test_a_checkpoint_is_versioned_gzip_json_with_every_part_of_the_search(
        tmp_path: Path) -> None:
    s = session("nosync_stale")
    ckpt = tmp_path / "c.ckpt"
    part = search(s, SearchBounds(2, 1, max_states=1500), checkpoint=ckpt)
    assert not part.covered and part.findings  # stopped midway, with findings
    doc = read_doc(ckpt)
    assert doc["format"] == CHECKPOINT_FORMAT and doc["version"] == CHECKPOINT_VERSION == 5
    assert doc["scenario"] == "nosync_stale" and doc["image"] == s.image.digest
    assert doc["space"] == {"preemptions": 2, "model_events": 1}
    assert doc["config"] == json.loads(json.dumps(s.config()))
    assert (doc["states"], doc["transitions"], doc["finals"]) == \
        (part.states, part.transitions, part.finals)
    assert doc["work"] and doc["nodes"]
    assert all(isinstance(k, str) and len(k) == 32 and isinstance(last, int)
               for k, last, _, _ in doc["visited"])
    assert len({(k, last) for k, last, _, _ in doc["visited"]}) <= doc["states"]
    assert len(doc["findings"]) == len(part.findings)
    assert {(f["oracle"], f["addr"], tuple(f["words"])) for f in doc["findings"]} == \
        set(part.findings)
    # No pickle anywhere: the module does not even import it.
    tree = ast.parse(Path(search_module.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "json" in imported and not {"pickle", "marshal", "shelve"} & imported


def test_a_memory_bound_of_a_resumed_search_gives_the_uninterrupted_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small ``max_memory`` reached midway (the resident set is simulated: it grows by
    1 MB a check from 32 MB) ends the search, not covered, with its findings so far and
    a checkpoint; resuming it twice gives exactly the uninterrupted result."""
    s = session("jump_label_nosync")
    whole = search(s, SearchBounds(2, 1))
    assert whole.covered and whole.findings
    checks = itertools.count()
    monkeypatch.setattr(search_module, "resident_memory",
                        lambda: 32 * MIB + next(checks) * MIB)
    ckpt = tmp_path / "mem.ckpt"
    part = search(s, SearchBounds(2, 1, max_memory=MIN_MEMORY), checkpoint=ckpt)
    assert not part.covered
    assert part.reason.startswith(f"memory bound ({MIN_MEMORY // MIB} MB) reached"), part.reason
    assert 0 < part.states < whole.states
    assert part.peak_memory >= MIN_MEMORY
    assert part.findings and set(part.findings) <= set(whole.findings)  # kept so far
    doc = read_doc(ckpt)
    assert doc["work"] and len(doc["findings"]) == len(part.findings)
    # Again, from there, with the same simulated growth: it stops again, further on.
    checks = itertools.count()
    more = search(s, SearchBounds(2, 1, max_memory=MIN_MEMORY), checkpoint=ckpt, resume=True)
    assert not more.covered and "memory bound" in more.reason
    assert part.states < more.states < whole.states
    monkeypatch.undo()
    rest = search(s, SearchBounds(2, 1), checkpoint=ckpt, resume=True)
    assert rest.resumed and rest.covered and rest.reason == ""
    assert outcome(rest) == outcome(whole)


def test_a_bound_below_what_the_process_holds_stops_at_once_and_resumes(
        tmp_path: Path) -> None:
    s = session("nosync_stale")
    assert resident_memory() > MIN_MEMORY  # Unicorn, Capstone, Keystone and a session
    ckpt = tmp_path / "now.ckpt"
    part = search(s, SearchBounds(1, 0, max_memory=MIN_MEMORY), checkpoint=ckpt)
    assert not part.covered and "memory bound (64 MB) reached" in part.reason
    assert part.states == 1 and part.transitions == 0
    whole = search(s, SearchBounds(1, 0))
    rest = search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)
    assert rest.covered and outcome(rest) == outcome(whole)


def test_sixty_four_cpus_stay_within_a_small_memory_bound() -> None:
    """``testbed search nosync_stale --cpus 64`` held 4.66 GB after 15 s when the cache
    kept 2000 states of ~2.2 MB each: with 256 MB left under the bound it keeps a few, the
    resident set (sampled every 20 ms) stays under the bound, and the search goes on."""
    s = session("nosync_stale", ncpus=64)
    s.machine.reset()
    unit = state_bytes(s.machine.save())
    assert 1.5 * MIB < unit < 4 * MIB
    start = resident_memory()
    bound = start + 256 * MIB
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_memory())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        res = search(s, SearchBounds(2, 1, max_seconds=5, max_memory=bound))
    finally:
        done.set()
        sampler.join()
    assert res.reason == "time bound (5 s) reached", res.reason
    assert res.states > 100
    assert peak < bound, (peak - start) // MIB


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preemptions": -1}, "--preemptions must be >= 0, not -1"),
    ({"model_events": -2}, "--model-events must be >= 0, not -2"),
    ({"preemptions": 10**9}, "--preemptions must be <= 10000, not 1000000000"),
    ({"max_states": 0}, "--max-states must be >= 1, not 0"),
    ({"max_seconds": 0}, "--max-seconds must be > 0, not 0"),
    ({"max_seconds": -5.0}, "--max-seconds must be > 0, not -5.0"),
    ({"max_seconds": float("nan")}, "--max-seconds must be > 0, not nan"),
    ({"max_memory": 1000}, "--max-memory must be at least 64 MB, not 1000 bytes"),
    ({"max_memory": 0}, "--max-memory must be at least 64 MB, not 0 MB"),
    ({"preemptions": 1.5}, "--preemptions must be an integer, not 1.5"),
    ({"max_states": True}, "--max-states must be an integer, not True"),
])
def test_nonsense_bounds_are_refused_naming_the_option(kwargs: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ValueError) as e:
        SearchBounds(**kwargs)
    assert str(e.value) == message


def test_sensible_bounds_are_accepted() -> None:
    b = SearchBounds(0, 0, max_states=1, max_seconds=0.5, max_memory=MIN_MEMORY)
    assert b.space() == {"preemptions": 0, "model_events": 0}
    assert SearchBounds().max_memory == 4 << 30


# -- crafted checkpoints run nothing -----------------------------------------------------

class _Touch:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_checkpoint_that_would_run_code_is_refused_unread(tmp_path: Path) -> None:
    payload = pickle.dumps({"format": CHECKPOINT_FORMAT, "version": 1,
                            "boom": _Touch(tmp_path / "MARKER")})
    # The payload is live: unpickled (in another process), it creates its marker.
    probe = tmp_path / "probe.pickle"
    probe.write_bytes(pickle.dumps(_Touch(tmp_path / "PROBE")))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(probe)!r}, "
                                          "'rb'))"], check=True)
    assert (tmp_path / "PROBE").exists()
    s = session("nosync_stale")
    for name, data in (("plain.ckpt", payload), ("gz.ckpt", gzip.compress(payload))):
        ckpt = tmp_path / name
        ckpt.write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"{name}: not a search checkpoint \(a "
                                                  "pickle"):
            search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)
        assert not (tmp_path / "MARKER").exists()


def test_a_json_checkpoint_carrying_code_runs_nothing(tmp_path: Path) -> None:
    s = session("nosync_stale")
    ckpt = tmp_path / "c.ckpt"
    search(s, SearchBounds(1, 0, max_states=50), checkpoint=ckpt)
    marker = tmp_path / "MARKER"
    code = f"__import__('os').system('touch {marker}')"
    reduce = {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [f"touch {marker}"]}]}
    good = read_doc(ckpt)
    crafted: list[tuple[str, dict[str, Any], str]] = [
        ("scenario", {**good, "scenario": code}, "written for scenario"),
        ("config", {**good, "config": {**good["config"], "cache": code}}, "for config"),
        ("work", {**good, "work": [reduce]}, r"field 'work\[0\]'"),
        ("nodes", {**good, "nodes": [[-1, [code, 0]]]}, r"field 'nodes\[0\]\[1\]'"),
        ("object", {**good, "__reduce__": code}, "field '__reduce__' is not a field"),
        ("findings", {**good, "findings": [{"oracle": code, "message": code, "cpu": 0,
                                            "addr": 0, "words": [], "step": 0,
                                            "path": [["eval", code]]}]},
         r"field 'findings\[0\]\.path\[0\]'"),
    ]
    for name, doc, error in crafted:
        ckpt.write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match=error):
            search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)
        assert not marker.exists(), name
    # A finding's text is data: a well-formed one carrying code resumes, and runs nothing.
    doc = {**good, "findings": [{"oracle": code, "message": code, "cpu": 0, "addr": 0,
                                 "words": [], "step": 0, "path": []}]}
    ckpt.write_text(json.dumps(doc))
    res = search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)
    assert res.covered and (code, 0, ()) in res.findings
    assert not marker.exists()


# -- malformed checkpoints: one line naming the file and the field ------------------------

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation setting the field at ``path`` ("a.b.0.1": keys and list indexes)."""
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        at: Any = doc
        for p in parents:
            at = at[int(p)] if isinstance(at, list) else at[p]
        if isinstance(at, list):
            at[int(last)] = value
        else:
            at[last] = value
    return mutate


def _drop(key: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del doc[key]
    return mutate


MALFORMED: list[tuple[str, Callable[[Doc], None], str]] = [
    ("no work list", _drop("work"), "field 'work' missing"),
    ("no visited set", _drop("visited"), "field 'visited' missing"),
    ("no node table", _drop("nodes"), "field 'nodes' missing"),
    ("no states", _drop("states"), "field 'states' missing"),
    ("work not a list", _set("work", {"0": []}), "field 'work' is not a list"),
    ("work entry a string", _set("work.0", "0,0,0,0"),
     r"field 'work\[0\]' is not a \[node, int, int, int\] entry"),
    ("work entry too short", _set("work.0", [0, 0, 0]), r"field 'work\[0\]' is not a"),
    ("work node out of the table", _set("work.0.0", 10**6), r"field 'work\[0\]' refers to node"),
    ("work last CPU too big", _set("work.0.1", 7), r"field 'work\[0\]' names last CPU 7"),
    ("work preemptions over the bound", _set("work.0.2", 2),
     r"field 'work\[0\]' has 2 preemptions, outside 0\.\.1"),
    ("work bool", _set("work.0.3", False), r"field 'work\[0\]' is not a"),
    ("visited entry an object", _set("visited.3", {"key": "00"}),
     r"field 'visited\[3\]' is not a \[hex, int, int, int\] entry"),
    ("visited key not hex", _set("visited.3.0", "zz" * 16),
     r"field 'visited\[3\]' has state key"),
    ("visited key too short", _set("visited.3.0", "abcd"), r"field 'visited\[3\]' has state"),
    ("visited key with spaces", _set("visited.3.0", "ab " * 10 + "ab"),
     r"field 'visited\[3\]' has state key"),
    ("visited model events negative", _set("visited.3.3", -1),
     r"field 'visited\[3\]' has -1 model events"),
    ("node parent later", _set("nodes.0.0", 5), r"field 'nodes\[0\]' has parent 5"),
    ("node not a pair", _set("nodes.0", ["step", 0]), r"field 'nodes\[0\]' is not a \[parent"),
    ("node decision unknown", _set("nodes.0.1", ["jump", 0]),
     r"field 'nodes\[0\]\[1\]' is not a decision: unknown decision kind 'jump'"),
    ("node decision CPU missing", _set("nodes.0.1", ["step"]),
     r"field 'nodes\[0\]\[1\]' is not a decision"),
    ("node decision CPU absent", _set("nodes.0.1", ["step", 9]),
     r"field 'nodes\[0\]\[1\]' names CPU9; the machine has 2 CPUs"),
    ("node decision beyond the text", _set("nodes.0.1", ["fill", 0, 1 << 30]),
     r"field 'nodes\[0\]\[1\]' names text offset"),
    ("states negative", _set("states", -1), "field 'states' is not a non-negative integer"),
    ("transitions a string", _set("transitions", "12"), "field 'transitions' is not a non-neg"),
    ("finals a float", _set("finals", 1.5), "field 'finals' is not a non-negative integer"),
    ("seconds a bool", _set("seconds", True), "field 'seconds' is not a non-negative number"),
    ("seconds negative", _set("seconds", -1.0), "field 'seconds' is not a non-negative"),
    ("findings an object", _set("findings", {}), "field 'findings' is not a list"),
    ("finding not an object", _set("findings.0", "x"), r"field 'findings\[0\]' is not an obj"),
    ("finding oracle missing", lambda d: d["findings"][0].pop("oracle"),
     r"field 'findings\[0\]\.oracle' missing"),
    ("finding word too big", _set("findings.0.words", [1 << 32]),
     r"field 'findings\[0\]\.words\[0\]' is not a 32-bit word"),
    ("finding address a string", _set("findings.0.addr", "0x10"),
     r"field 'findings\[0\]\.addr' is not an integer"),
    ("finding path bad", _set("findings.0.path", [["step", -1]]),
     r"field 'findings\[0\]\.path\[0\]' is not a decision"),
    ("finding extra field", _set("findings.0.exec", "x"),
     r"field 'findings\[0\]\.exec' is not a field of a finding"),
    ("scenario a number", _set("scenario", 5), "field 'scenario' is not a string"),
    ("image missing", _drop("image"), "field 'image' missing"),
    ("config a list", _set("config", []), "field 'config' is not an object"),
    ("params not integers", _set("config.params", {"passes": "1"}),
     r"field 'config\.params' does not map names to integers"),
    ("space incomplete", _set("space", {"preemptions": 1}), "field 'space' is not an object"),
    ("format wrong", _set("format", "cmodx-testbed/schedule"),
     r"not a search checkpoint \(field 'format'"),
    ("format missing", _drop("format"), r"not a search checkpoint \(field 'format'"),
    ("version 1", _set("version", 1), "checkpoint format version 1; this testbed reads "
                                      "version 5"),
    ("version 2 (blake2b keys)", _set("version", 2), "checkpoint format version 2; this "
                                                     "testbed reads version 5"),
    ("version 3 (history in keys)", _set("version", 3), "checkpoint format version 3; this "
                                                        "testbed reads version 5"),
    ("version 4 (keys of one digest)", _set("version", 4), "checkpoint format version 4; "
                                                           "this testbed reads version 5"),
    ("keyed_history not a boolean", _set("keyed_history", 1), "field 'keyed_history'"),
    ("keyed_history for another search", _set("keyed_history", True),
     "kept the history in its state keys, this one does not"),
    ("version a string", _set("version", "2"), "checkpoint format version '2'"),
    ("unknown field", _set("exec", "rm -rf /"), "field 'exec' is not a field of a search"),
]


@pytest.fixture(scope="module")
def good_doc(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    """A checkpoint stopped midway (work, nodes and visited states) with a finding."""
    s = session("nosync_stale")
    ckpt = tmp_path_factory.mktemp("good") / "good.ckpt"
    part = search(s, SearchBounds(1, 0, max_states=400), checkpoint=ckpt)
    assert not part.covered
    doc = read_doc(ckpt)
    assert len(doc["work"]) > 1 and len(doc["nodes"]) > 5 and len(doc["visited"]) > 5
    if not doc["findings"]:
        found = search(s, SearchBounds(1, 0))
        doc["findings"] = [{"oracle": f.oracle, "message": f.message, "cpu": f.cpu,
                            "addr": f.addr, "words": list(f.words), "step": f.step,
                            "path": [d.to_json() for d in p]}
                           for f, p in found.findings.values()]
    assert doc["findings"]
    return doc


def test_the_unmodified_checkpoint_resumes(tmp_path: Path, good_doc: Doc) -> None:
    """The base of the malformed cases below is a good checkpoint, plain or compressed."""
    s = session("nosync_stale")
    whole = search(s, SearchBounds(1, 0))
    for data in (json.dumps(good_doc).encode(), gzip.compress(json.dumps(good_doc).encode())):
        ckpt = tmp_path / "ok.ckpt"
        ckpt.write_bytes(data)
        rest = search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)
        assert rest.covered and outcome(rest) == outcome(whole)


@pytest.mark.parametrize(("case", "mutate", "error"), MALFORMED, ids=[c for c, _, _ in MALFORMED])
def test_a_malformed_checkpoint_is_refused_naming_the_field(
        tmp_path: Path, good_doc: Doc, case: str, mutate: Callable[[Doc], None],
        error: str) -> None:
    doc = copy.deepcopy(good_doc)
    mutate(doc)
    ckpt = tmp_path / "ck.json"
    ckpt.write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(CheckpointError) as e:
        search(session("nosync_stale"), SearchBounds(1, 0), checkpoint=ckpt, resume=True)
    text = str(e.value)
    assert text.startswith(f"{ckpt}: "), text
    assert "\n" not in text
    assert re.search(error, text), text


@pytest.mark.parametrize(("case", "data", "error"), [
    ("empty", b"", r"not JSON"),
    ("not UTF-8", b"\xff\xfe\x00garbage", r"not UTF-8 text"),
    ("not JSON", b"checkpoint = {}", r"not JSON"),
    ("truncated gzip", gzip.compress(json.dumps({"format": CHECKPOINT_FORMAT}).encode())[:-9],
     r"damaged or truncated gzip"),
    ("gzip of garbage", b"\x1f\x8b" + b"\x00" * 40, r"damaged or truncated gzip"),
    ("a list", b"[1, 2, 3]", r"a JSON list, not an object"),
    ("a string", b'"cmodx-testbed/search-checkpoint"', r"a JSON str, not an object"),
    ("NaN", b'{"format": NaN}', r"not JSON"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, r"not JSON"),
    ("huge number", b'{"states": ' + b"9" * 5000 + b"}", r"not JSON"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_a_file_that_is_no_checkpoint_is_refused(tmp_path: Path, case: str, data: bytes,
                                                 error: str) -> None:
    ckpt = tmp_path / "ck.json"
    ckpt.write_bytes(data)
    with pytest.raises(CheckpointError, match=error) as e:
        search(session("nosync_stale"), SearchBounds(1, 0), checkpoint=ckpt, resume=True)
    assert str(e.value).startswith(f"{ckpt}: not a search checkpoint (")
    assert "\n" not in str(e.value)


def test_a_missing_or_unreadable_checkpoint_is_refused(tmp_path: Path) -> None:
    s = session("nosync_stale")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        search(s, SearchBounds(1, 0), checkpoint=tmp_path / "none", resume=True)
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        search(s, SearchBounds(1, 0), checkpoint=tmp_path, resume=True)  # a folder
    with pytest.raises(CheckpointError, match="resume needs a checkpoint file"):
        search(s, SearchBounds(1, 0), resume=True)


def test_a_checkpoint_of_another_scenario_image_or_scope_is_refused(tmp_path: Path,
                                                                    good_doc: Doc) -> None:
    s = session("nosync_stale")
    ckpt = tmp_path / "ck.json"
    for key, value in (("scenario", "nosync_isb"), ("image", "0" * 64),
                       ("config", {**good_doc["config"], "ncpus": 3}),
                       ("config", {**good_doc["config"], "params": {"passes": 9}}),
                       ("space", {"preemptions": 2, "model_events": 0})):
        ckpt.write_text(json.dumps({**good_doc, key: value}))
        with pytest.raises(CheckpointError, match=f"written for {key} .*start a new search"):
            search(s, SearchBounds(1, 0), checkpoint=ckpt, resume=True)


def test_a_work_path_that_is_no_schedule_of_the_scenario_is_refused(
        tmp_path: Path, good_doc: Doc) -> None:
    """Well-formed, but not enabled when replayed: CPU0 has no IRQ to take at the start."""
    ckpt = tmp_path / "ck.json"
    ckpt.write_text(json.dumps({**good_doc, "nodes": [[-1, ["irq", 0]]],
                                "work": [[0, 0, 0, 0]]}))
    with pytest.raises(CheckpointError, match=r"ck\.json: field 'nodes': a path of the work "
                                              r"list is not a schedule of this scenario"):
        search(session("nosync_stale"), SearchBounds(1, 0), checkpoint=ckpt, resume=True)


def test_the_result_does_not_depend_on_the_memory_the_search_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the resident set (simulated) a byte under the bound, the search keeps no saved
    state in its work list and a minimal cache: every item is replayed from the baseline
    or a cached ancestor (its parent, for a free child), and the result is the same."""
    s = session("nosync_stale")
    roomy = search(s, SearchBounds(2, 1))
    monkeypatch.setattr(search_module, "resident_memory", lambda: MIN_MEMORY - 1)
    tight = search(s, SearchBounds(2, 1, max_memory=MIN_MEMORY))
    assert roomy.covered and tight.covered and tight.reason == ""
    assert outcome(tight) == outcome(roomy)
    assert tight.peak_memory == MIN_MEMORY - 1
