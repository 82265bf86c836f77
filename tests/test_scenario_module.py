"""Module text (``scenarios/module.py``, ``kernels/module.S``): module foo unloaded, module
bar loaded into the memory foo's text held, ``flush_icache_range()`` with and without its
IPIs (commit 3b8c9f1cdfc5, v5.0) and its maintenance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from testbed.cli import main
from testbed.findings import EventKind, OracleName
from testbed.machine import Machine
from testbed.memory import CacheType
from testbed.scenario import Session, default_strategy, load_scenario
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import RandomWalk, RoundRobin

CMODX, STALE, DIE = (OracleName.CMODX_VIOLATION, OracleName.STALE_AFTER_FLUSH,
                     OracleName.KERNEL_DIE)
FOO_MOV, BAR_MOV, RET = 0x52800020, 0x52800040, 0xD65F03C0  # mov w0, #1 / #2; ret


def _session(name: str, memory: str = "sc", *, cmodx: bool = True,
             cache: CacheType | None = None, params: dict[str, int] | None = None) -> Session:
    """The scenario in its search scope (``params`` on top), the CMODX oracle on or off."""
    cls = load_scenario(name)
    oracles = None
    if not cmodx:
        oracles = [o.name for o in Session(cls()).oracles if o.name != CMODX]
    return Session(cls(), params={**cls.search_scope, **(params or {})}, memory=memory,
                   oracles=oracles, cache=cache)


def _search(session: Session) -> set[str]:
    res = search(session, SearchBounds(2, 1, max_seconds=300))
    assert res.covered and res.reason == "" and res.finals > 0
    for f, _ in res.findings.values():  # every race shows at bar's entry, or in die()
        where = session.image.symbolize(f.addr)
        assert where == ("module_text" if f.oracle != DIE else "die+0x4"), (f.oracle, where)
    return {f.oracle for f, _ in res.findings.values()}


def _words(m: Machine, where: str, n: int = 2) -> list[int]:
    raw = m.read(m.addr(where), 4 * n)
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]


def test_the_module_area_holds_foo_and_the_template_is_bar() -> None:
    m = Session(load_scenario("module_load")()).machine
    text = m.addr("module_text")
    assert text % 64 == 0  # one I-cache and D-cache line: one DC CVAU, one IC IVAU
    assert _words(m, "module_text") == [FOO_MOV, RET]
    assert _words(m, "bar_text") == [BAR_MOV, RET]
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    assert [(i.mnemonic, i.op_str) for i in cs.disasm(m.read(m.addr("bar_text"), 8), 0)] \
        == [("mov", "w0, #2"), ("ret", "")]
    # both modules' hooks point at the start of their text: the same address
    assert m.read_u64("foo_ops") == m.read_u64("bar_ops") == text
    assert m.read_u64("module_hook") == m.addr("foo_ops")  # foo registered, long ago
    assert m.read_u64(m.addr("foo_module") + 24) == m.addr("foo_exit")
    assert m.read_u64(m.addr("bar_module") + 16) == m.addr("bar_init")
    assert m.read_u64(m.addr("bar_module") + 8) == 8  # the size flush_module_icache flushes


@pytest.mark.parametrize(("name", "params", "dc", "ic", "ipis"), [
    ("module_load", {}, 1, 1, 1),  # flush_icache_range(): maintenance, then the IPIs
    ("module_load_no_kick", {}, 1, 1, 0),  # before 3b8c9f1cdfc5
    ("module_load_no_flush", {}, 0, 0, 0),
    ("module_load", {"flush_skip": 2}, 0, 0, 1),  # the IPIs alone
])
def test_the_loader_alone_zeroes_copies_flushes_and_registers(
        name: str, params: dict[str, int], dc: int, ic: int, ipis: int) -> None:
    s = Session(load_scenario(name)(), ncpus=1, params=params, memory="sc")
    r = s.run(RoundRobin())
    m = s.machine
    assert r.findings == [] and r.finished
    text = m.addr("module_text")
    stores = [(e.addr, e.value) for e in r.events if e.kind is EventKind.TEXT_STORE]
    # move_module(): memset(ptr, 0, size), then memcpy() of bar's text
    assert stores == [(text, 0), (text, RET << 32 | BAR_MOV)]
    kinds = Counter(e.kind for e in r.events)
    assert (kinds[EventKind.DC], kinds[EventKind.IC], kinds[EventKind.IPI_SEND]) == (dc, ic, ipis)
    assert all(e.addr == text for e in r.events if e.kind in (EventKind.DC, EventKind.IC))
    if dc:  # the maintenance comes after the copy, the hook after the maintenance
        steps = [e.step for e in r.events if e.kind is EventKind.DC]
        assert steps[0] > max(e.step for e in r.events if e.kind is EventKind.TEXT_STORE)
    assert _words(m, "module_text") == [BAR_MOV, RET]  # the D-side
    assert m.read_u64("module_hook") == m.addr("bar_ops")
    assert m.read_u64("bar_module") == text  # module_memory_alloc(): foo's old range
    assert m.read_u32("module_load_done") == 1


# -- the scenarios: verdicts within the search scope ------------------------------------

@pytest.mark.parametrize(("name", "memory", "found"), [
    ("module_load", "sc", set()),
    ("module_load", "arm", set()),
    ("module_load_no_kick", "sc", {CMODX}),
    ("module_load_no_kick", "arm", {CMODX}),
    ("module_load_no_flush", "sc", {CMODX}),
    ("module_load_no_flush", "arm", {CMODX}),
])
def test_verdicts_within_two_preemptions_and_one_model_event(
        name: str, memory: str, found: set[str]) -> None:
    """The kick makes every CPU that can read bar's hook take an IPI after the maintenance
    completed; without it (or without any flush) a CPU runs module_text with no context
    synchronization since CPU0 rewrote it: a CMODX violation, under either data model."""
    assert load_scenario(name).search_scope == {"calls": 2}
    assert _search(_session(name, memory)) == found


@pytest.mark.parametrize(("name", "memory"), [
    ("module_load_no_kick", "sc"), ("module_load_no_kick", "arm"),
    ("module_load_no_flush", "sc"),
])
def test_with_the_cmodx_oracle_off_the_check_sees_foos_instruction_in_bars_place(
        name: str, memory: str) -> None:
    assert _search(_session(name, memory, cmodx=False)) == {STALE}


@pytest.mark.parametrize(("name", "params", "cache", "found"), [
    # the IPIs alone: the CPU is synchronised but refetches foo's line from its I-cache
    # (stale), or a line filled between the memset and the copy (zeroes: UDF, die())
    ("module_load", {"flush_skip": 2}, CacheType.IDC0, {STALE, DIE}),
    ("module_load", {"flush_skip": 2}, CacheType.IDC1, {STALE, DIE}),  # IC IVAU needed
    ("module_load", {"flush_skip": 2}, CacheType.DIC1, set()),  # stores invalidate
    ("module_load", {}, CacheType.IDC1, set()),
    ("module_load", {}, CacheType.DIC1, set()),
    ("module_load_no_kick", {}, CacheType.DIC1, {CMODX}),  # DIC=1 needs the IPIs too
])
def test_each_half_of_flush_icache_range_is_needed_where_the_caches_need_it(
        name: str, params: dict[str, int], cache: CacheType, found: set[str]) -> None:
    assert _search(_session(name, cache=cache, params=params)) == found


def test_the_race_needs_one_preemption() -> None:
    """CPU1 held after its quiescent state while CPU0 loads bar, then its next call."""
    for name in ("module_load_no_kick", "module_load_no_flush"):
        none = search(_session(name), SearchBounds(0, 0))
        assert none.covered and none.findings == {}
        one = search(_session(name), SearchBounds(1, 0))
        assert {f.oracle for f, _ in one.findings.values()} == {CMODX}


@pytest.mark.parametrize("ncpus", [2, 3])
def test_the_correct_scenario_calls_foo_then_bar_and_bar_returns_two(ncpus: int) -> None:
    s = Session(load_scenario("module_load")(), ncpus=ncpus)
    foo, bar = s.machine.addr("foo_ops"), s.machine.addr("bar_ops")
    seen: Counter[str] = Counter()
    for seed in range(100):
        r = s.run(RandomWalk(seed))
        assert r.findings == [] and r.finished, r.findings
        m = s.machine
        for cpu in range(1, ncpus):
            records = s.scenario.records(m, cpu)  # type: ignore[attr-defined]
            kinds = [{0: "none", foo: "foo", bar: "bar"}[ops] for ops, _ in records]
            assert all({"foo": 1, "bar": 2, "none": 0}[k] == res
                       for k, (_, res) in zip(kinds, records, strict=True))
            # foo's hook is gone before bar's appears: the grace period orders them
            first_bar = kinds.index("bar") if "bar" in kinds else len(kinds)
            assert "foo" not in kinds[first_bar:]
            seen.update(set(kinds))
        assert _words(m, "module_text") == [BAR_MOV, RET]
        assert m.read_u64("module_hook") == bar
    assert seen["foo"] > 20 and seen["bar"] > 20 and seen["none"] > 20


@pytest.mark.parametrize(("name", "memory", "code"), [
    ("module_load", "arm", 0),
    ("module_load", "sc", 0),
    ("module_load_no_kick", "arm", 1),
    ("module_load_no_flush", "arm", 1),
])
def test_testbed_run_2000_schedules(tmp_path: Path, name: str, memory: str,
                                    code: int) -> None:
    """``testbed run NAME --schedules 2000`` with the scenario's own strategy (random)."""
    assert default_strategy(load_scenario(name)).name == "random"
    assert main(["run", name, "--schedules", "2000", "--seed", "0", "--memory", memory,
                 "--no-db", "--out", str(tmp_path)]) == code
    found = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(found) == code and all(f"{name}-{CMODX}-" in p for p in found)


@pytest.mark.parametrize(("name", "oracle"), [
    ("module_load_no_kick", CMODX), ("module_load_no_flush", CMODX),
    ("module_load_no_kick", STALE),  # the scenario's own check, with CMODX off
])
def test_the_broken_twins_findings_replay_and_shrink(tmp_path: Path, name: str,
                                                     oracle: str) -> None:
    cls = load_scenario(name)
    others = [o.name for o in Session(cls()).oracles if o.name != CMODX]
    session = Session(cls(), oracles=None if oracle == CMODX else others)
    hit = next(r for r in (session.run(RandomWalk(seed)) for seed in range(300))
               if any(f.oracle == oracle for f in r.findings))
    target = next(f for f in hit.findings if f.oracle == oracle)
    assert session.image.symbolize(target.addr) == "module_text"
    assert target.words == ((0, BAR_MOV) if oracle == CMODX else (FOO_MOV, BAR_MOV))
    res = shrink(session, hit.schedule, oracle=oracle, addr=target.addr, max_runs=400)
    assert len(res.shrunk.decisions) <= len(hit.schedule.decisions)
    again = session.replay(res.shrunk)  # strict
    hits = [f for f in again.findings if f.oracle == oracle and f.addr == target.addr]
    assert hits
    m = session.machine
    # what the shrunk run shows: CPU1 read bar's hook, then ran foo's MOV at bar's
    # entry with no exception since CPU0's copy (an IPI would have been one)
    copy = max(e.step for e in again.events if e.kind is EventKind.TEXT_STORE)
    assert not [e for e in again.events if e.cpu == 1 and e.step > copy
                and e.kind in (EventKind.EXCEPTION, EventKind.IRQ)]
    assert hits[0].step > copy and m.read_u64("module_hook") == m.addr("bar_ops")
    if oracle == CMODX:  # the machine stops CPU1 at the fetch, its I-view foo's MOV
        assert f"CPU1 executes {FOO_MOV:#010x} at module_text" in hits[0].message
        path = tmp_path / "small.json"  # the CLI replays it too (its default oracles)
        path.write_text(res.shrunk.to_json())
        assert main(["replay", str(path)]) == 1
    else:  # CPU1 ran foo's MOV, through bar's hook
        runs = [(step, word) for step, addr, word in m.ground_truth()[1]
                if addr == m.addr("module_text")]
        assert (hits[0].step, FOO_MOV) in runs
        records = session.scenario.records(m, 1)  # type: ignore[attr-defined]
        assert (m.addr("bar_ops"), 1) in records
