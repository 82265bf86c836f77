"""Every optimisation leaves runs and searches exactly as they were (issue 15).

``tests/corpus.py`` recorded a fixed corpus: schedules of every scenario under both
memory models (random walks, PCT, promises), with digests of what each did, and small
searches with their findings and the set of their final states.  Here each schedule is
replayed and each search run again, and the digests must be the recorded ones.
"""

from __future__ import annotations

import shutil
from typing import Any

import corpus
import pytest
from unicorn import arm64_const as A

from testbed import fastpath
from testbed.search import SearchBounds, search
from testbed.snapshot import content_digest

DOC = corpus.load()


def _id(entry: dict[str, Any]) -> str:
    s = entry["schedule"]
    return f"{s['scenario']}-{s['config']['memory']}-{s['strategy']}-{s['seed']}"


@pytest.mark.parametrize("path", ["compiled", "python"])
@pytest.mark.parametrize("entry", DOC["runs"], ids=_id)
def test_a_recorded_schedule_replays_to_the_same_digests(
        entry: dict[str, Any], path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the compiled hooks (testbed/_fastpath.c) and the pure-Python ones alike."""
    if path == "python":
        monkeypatch.setenv("TESTBED_FASTPATH", "0")
    elif not fastpath.available():
        pytest.skip("the compiled fast path was not built here (no C compiler at install: "
                    "test_the_fast_path_is_built_where_there_is_a_compiler says if that "
                    "is wrong)")
    got, used = corpus.replay(entry)
    assert used == (path == "compiled")
    want = {k: entry[k] for k in got}
    assert got == want


def test_the_fast_path_is_built_where_there_is_a_compiler() -> None:
    """CI installs with a C compiler: the compiled variant above must not be skipped."""
    if shutil.which("cc") or shutil.which("gcc"):
        assert fastpath.available(), "a C compiler is here, yet testbed._fastpath was not built"


@pytest.mark.parametrize("entry", DOC["searches"], ids=lambda e: "-".join(
    str(e[k]) for k in ("scenario", "memory", "preemptions", "model_events"))
    + ("-fold" if e.get("fold") else ""))
def test_a_recorded_search_finds_the_same_and_ends_in_the_same_states(
        entry: dict[str, Any]) -> None:
    got = corpus.search_digests(entry["scenario"], entry["memory"], entry["promises"],
                                entry["preemptions"], entry["model_events"],
                                entry.get("fold", False))
    assert got["covered"] == entry["covered"]
    assert got["findings"] == entry["findings"]
    assert (got["distinct_finals"], got["finals"]) == (entry["distinct_finals"],
                                                       entry["finals"])
    # A reduction may merge states; it must never explore more of them.
    assert got["states"] <= entry["states"]


def test_the_corpus_covers_every_scenario_and_both_models() -> None:
    seen = {(e["schedule"]["scenario"], e["schedule"]["config"]["memory"])
            for e in DOC["runs"]}
    assert seen == {(n, mem) for n in corpus.SCENARIOS for mem in ("sc", "arm")}
    assert any(e["findings"] for e in DOC["runs"]) and any(
        not e["findings"] for e in DOC["runs"])
    assert any(e["promises"] for e in DOC["runs"])


def test_without_the_compiled_module_the_python_hooks_run_and_requiring_it_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where the extension was not built: the default falls back, and asking
    for the compiled path is bad input (one line), not a crash."""
    from testbed.machine import GuestError

    monkeypatch.setattr(fastpath, "_module", lambda: None)
    assert not fastpath.available() and not fastpath.wanted(None)
    s = corpus.session("torn_write", "sc", False)
    assert not s.machine.fastpath
    with pytest.raises(GuestError, match="fast path was not built"):
        type(s.machine)(s.image, 2, fastpath=True)


def _compiled_only() -> None:
    if not fastpath.available():
        pytest.skip("the compiled fast path was not built here")


def test_the_compiled_state_calls_read_and_restore_what_the_binding_does() -> None:
    """The key registers, SPSR_EL1 and the saved context through _fastpath.c equal the
    binding's (through ctypes), at a state in the middle of a run; a context saved in C
    and restored after the CPU ran on brings back every register the binding sees."""
    from testbed import emulator
    from testbed.cpu import KEY_REGS
    from testbed.strategies import RandomWalk

    _compiled_only()
    s = corpus.session("brk_refcount_sync", "sc", False)
    m = s.machine
    assert m.fastpath
    decisions = list(s.run(RandomWalk(3)).schedule.decisions)
    m.reset()
    for d in decisions[:len(decisions) // 2]:
        m.apply(d)
    for c in m.cpus:
        assert c.read_regs() == emulator.register_reader(c.uc, KEY_REGS)()
        assert c.read_spsr() == emulator.cp_reader(c.uc, 3, 0, 4, 0, 0)()
    saved = m.save()
    assert all(isinstance(ctx, bytes) for ctx in saved.core.contexts)
    before = [(c.read_regs(), c.read_spsr(), c.uc.reg_read(A.UC_ARM64_REG_PC)) for c in m.cpus]
    for d in decisions[len(decisions) // 2:]:
        m.apply(d)
    assert before != [(c.read_regs(), c.read_spsr(), c.uc.reg_read(A.UC_ARM64_REG_PC))
                      for c in m.cpus]
    m.load(saved)
    assert before == [(c.read_regs(), c.read_spsr(), c.uc.reg_read(A.UC_ARM64_REG_PC))
                      for c in m.cpus]
    with pytest.raises(ValueError, match="not a context"):
        m.cpus[0].restore(b"too short")


def test_a_search_through_the_compiled_state_calls_is_the_python_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same states, transitions, final states and findings, through both paths."""
    _compiled_only()
    got = {}
    for path in ("compiled", "python"):
        monkeypatch.setenv("TESTBED_FASTPATH", "1" if path == "compiled" else "0")
        s = corpus.session("nosync_isb", "arm", False, scope=True, fold=2)
        assert s.machine.fastpath == (path == "compiled")
        res = search(s, SearchBounds(1, 1), observe=content_digest)
        got[path] = (res.covered, res.states, res.transitions, res.finals,
                     sorted(map(str, res.observations)),
                     sorted(f.signature() for f, _ in res.findings.values()))
    assert got["compiled"] == got["python"]
    assert got["compiled"][0] and got["compiled"][1] > 1000
