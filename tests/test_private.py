"""Data private to one CPU (``Machine.set_private``, issue 15 item 3).

A plain access of the owner wholly inside its private data is no scheduling point: the
code hook (``cpu.own_private``, and ``own_private`` in ``_fastpath.c``) computes its
address from the registers (``isa.plain_address``) and lets it run.  Every other CPU's
access there is a guest-fault finding.  Checked here:

* the address decoding against Capstone's (``access.effective_address``), the C twin
  against the Python one, and the kernels' own plain accesses are all described;
* searches with and without private data end in the same outcomes with the same
  findings, under both memory models, and visit fewer states;
* the compiled and the pure-Python hooks take the same decisions;
* a spin that changes only private data is not parked; a wrong declaration is a
  finding; a schedule records it; the Arm model's views pass through the spill view.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from keystone_word import word as ks_word

from testbed import access, deps, fastpath, isa
from testbed.findings import OracleName
from testbed.machine import GuestError
from testbed.scenario import Session, load_scenario, session_for
from testbed.schedule import Schedule, ScheduleError, ScheduleMismatch, step
from testbed.search import SearchBounds, search
from testbed.snapshot import outcome_digest
from testbed.strategies import RandomWalk, Replay

SPIN = str(Path(__file__).parent / "data" / "private" / "private_spin.py")
_LOAD_STORE = (0b0100, 0b0110, 0b1100, 0b1110)  # bits 28:25 of the load/store classes


def _words(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [(rng.getrandbits(32) & ~(0xF << 25)) | (rng.choice(_LOAD_STORE) << 25)
            for _ in range(n)]


def test_plain_addresses_are_capstones() -> None:
    """Every word ``plain_address`` describes is a load or store Capstone decodes, to
    the same address, size and direction, for random register values."""
    rng = random.Random(7)
    seen: set[str] = set()
    for word in _words(120_000, 1):
        plan = isa.plain_address(word)
        if plan is None:
            continue
        cs = access.decode_access(word)
        assert cs is not None, hex(word)
        regs = [rng.getrandbits(64) for _ in range(32)]
        want, _ = access.effective_address(cs, regs)
        rn, rm = plan[0], plan[1]
        got = isa.plain_ea(plan, regs[rn], regs[rm] if 0 <= rm < 31 else 0)
        assert (got, plan[5], plan[6]) == (
            want, cs.size * cs.elements, cs.kind is access.AccessKind.STORE), hex(word)
        assert not (cs.acquire or cs.release or cs.exclusive), hex(word)
        seen.add(cs.mnemonic)
    assert {"ldr", "str", "ldp", "stp", "ldur", "stur", "ldrb", "strh", "ldrsw", "ldpsw",
            "ldnp", "stnp"} <= seen


def test_acquire_release_exclusive_and_atomic_forms_stay_visible() -> None:
    for text in ("ldar w0, [x1]", "stlr x0, [x1]", "ldxr x0, [x1]", "stxr w2, x0, [x1]",
                 "ldtr x0, [x1]", "prfm pldl1keep, [x1]", "ldr x0, [sp, #8]", "ldr q0, [x1]"):
        word = ks_word(text, 0)
        assert isa.plain_address(word) is None, text
    # (Keystone 0.9.2 knows no LSE: LDADD X0, X2, [X1]; CAS X0, X2, [X1]; LDAPR X0, [X1])
    for word in (0xF8200022, 0xC8A07C22, 0xF8BFC020):
        assert access.decode_access(word) is not None
        assert isa.plain_address(word) is None, hex(word)
    # and the CONSTRAINED UNPREDICTABLE LDR X1, [X1], #8 and LDP X0, X0, [X1]
    for word in (0xF8408421, 0xA9400020):
        assert isa.plain_address(word) is None, hex(word)


def test_the_kernels_plain_accesses_are_all_described() -> None:
    """Every plain load or store through a base register in the linked kernels (the
    code private data serves) is one ``plain_address`` describes."""
    s = Session(load_scenario("jump_label_nosync")(), memory="sc")
    text = s.image.text
    plain = 0
    for off in range(0, len(text) - 3, 4):
        word = int.from_bytes(text[off:off + 4], "little")
        mem = isa.decode_mem(word) if isa.classify(word).kind is isa.OpKind.MEMORY else None
        if mem is None or mem.simd or mem.rn == 31 or mem.acquire or mem.acquire_pc \
                or mem.release or mem.exclusive \
                or mem.kind not in (isa.MemKind.LOAD, isa.MemKind.STORE):
            continue
        plain += 1
        assert isa.plain_address(word) is not None, f"{s.image.symbolize(s.image.text_base + off)}"
    assert plain > 50


@pytest.mark.skipif(not fastpath.available(), reason="the compiled fast path was not built")
def test_the_compiled_decoding_is_the_pythons() -> None:
    from testbed import _fastpath  # type: ignore[attr-defined]
    rng = random.Random(3)
    described = 0
    for word in _words(200_000, 2):
        base, index = rng.getrandbits(64), rng.getrandbits(64)
        plan = isa.plain_address(word)
        want = None if plan is None else (
            isa.plain_ea(plan, base, index if plan[1] != 31 else 0), plan[5])
        assert _fastpath.plain_ea(word, base, index) == want, hex(word)
        described += plan is not None
    assert described > 10_000


# -- searches: the same outcomes, fewer states ---------------------------------------
def _search(name: str, memory: str, private: bool, bounds: SearchBounds
            ) -> tuple[int, set[object], set[tuple[str, str]]]:
    cls = load_scenario(name)
    s = Session(cls(), params=dict(cls.search_scope), memory=memory, private=private)
    assert s.machine.config_dict().get("private") is (True if private else None)
    res = search(s, bounds, observe=outcome_digest)
    assert res.covered
    return res.states, set(res.observations), {
        (str(f.oracle), f.message) for f, _ in res.findings.values()}


@pytest.mark.parametrize(("name", "memory", "bounds"), [
    ("jump_label_nosync", "sc", SearchBounds(2, 1)),
    ("jump_label_kick", "sc", SearchBounds(2, 1)),
    ("jump_label_nosync", "arm", SearchBounds(1, 1)),
    ("jump_label_kick", "arm", SearchBounds(1, 1)),
])
def test_a_search_with_private_logs_ends_in_the_same_outcomes(
        name: str, memory: str, bounds: SearchBounds) -> None:
    """The workers' logs private (their search scope) or not: the same final outcomes
    (``outcome_digest``: memory, CPU states, findings) and the same findings, in fewer
    states."""
    without = _search(name, memory, False, bounds)
    with_ = _search(name, memory, True, bounds)
    assert with_[1] == without[1]
    assert with_[2] == without[2]
    assert with_[0] < without[0]
    if name == "jump_label_nosync":
        assert with_[2], "the race is found either way"


# -- random walks: both hook paths alike ----------------------------------------------
@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_the_compiled_and_python_hooks_take_the_same_decisions(
        memory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fastpath.available():
        pytest.skip("the compiled fast path was not built")
    runs = {}
    for path in ("1", "0"):
        monkeypatch.setenv("TESTBED_FASTPATH", path)
        s = Session(load_scenario("jump_label_nosync")(), ncpus=3, memory=memory,
                    params={"private_logs": 1})
        assert s.machine.fastpath is (path == "1")
        runs[path] = [(r.schedule.decisions, r.trace_digest(), r.findings,
                       outcome_digest(s.machine))
                      for r in (s.run(RandomWalk(seed)) for seed in range(12))]
    assert runs["1"] == runs["0"]
    assert any(findings for _, _, findings, _ in runs["1"])


def test_private_stores_are_not_scheduling_points() -> None:
    """The worker alone, until it spins: one decision fewer per iteration (its log
    store), none fewer else."""
    def decisions(private: int) -> int:
        s = Session(load_scenario("jump_label_nosync")(), ncpus=2, memory="sc",
                    params={"private_logs": private})
        m = s.machine
        m.reset()
        n = 0
        while 1 in m.steppable() and n < 1000:
            m.apply(step(1), n)
            n += 1
        assert m.cpus[1].parked  # (spinning on the patcher's flag)
        return n
    assert decisions(0) - decisions(1) == load_scenario("jump_label_nosync").iterations


# -- the own scenario: a spin over private data, a wrong declaration ------------------
@pytest.mark.parametrize("memory", ["sc", "arm"])
@pytest.mark.parametrize("path", ["1", "0"])
def test_a_spin_that_changes_only_private_data_is_not_parked(
        memory: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU1 has the same registers and stack at every YIELD; only its private count
    moves.  Stepped alone it goes on counting: taken for a spin that changes nothing, it
    would be parked at its second iteration (not steppable: InvalidDecision)."""
    monkeypatch.setenv("TESTBED_FASTPATH", path)
    s = Session(load_scenario(SPIN)(), memory=memory)
    r = s.run(Replay([step(1)] * 6 + [step(0)] * 3 + [step(1)] * 5))
    assert r.decisions == 14
    m = s.machine
    assert int.from_bytes(m.read(m.addr("priv_count"), 8), "little") == 6
    # its load-acquire of the count (a visible operation) reads its own last store,
    # and its store-release of the copy lands
    assert r.observations == {"count": 6, "seen": 6, "copy": 6}
    assert not r.findings
    if m.arm is not None:  # and no access to the count is the model's, visible or not
        count = m.addr("priv_count")
        assert not [loc for loc in m.arm.by_loc if count <= loc < count + 16]
        assert [loc for loc in m.arm.by_loc if loc == m.addr("priv_flag") & ~7]


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_each_seed_ends_with_the_count_the_cpu_stored(memory: str) -> None:
    s = Session(load_scenario(SPIN)(), memory=memory)
    counts = set()
    for seed in range(40):
        r = s.run(RandomWalk(seed))
        assert not r.findings
        assert r.observations["seen"] == r.observations["copy"] == r.observations["count"] >= 1
        counts.add(r.observations["count"])
    assert len(counts) > 2


@pytest.mark.parametrize("memory", ["sc", "arm"])
@pytest.mark.parametrize("path", ["1", "0"])
@pytest.mark.parametrize(("params", "verb"), [({"peek": 1}, "reads"), ({"owner": 0}, "reads"),
                                             ({"owner": 0, "offset": 8}, "writes")])
def test_another_cpus_access_to_private_data_is_a_finding(
        memory: str, path: str, params: dict[str, int], verb: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU0 reads CPU1's count (peek); or the count is declared CPU0's while CPU1 uses
    it (owner=0), or only its second word, which CPU1 first touches with a store: every
    run ends in a guest-fault finding that names the access and the declaration."""
    monkeypatch.setenv("TESTBED_FASTPATH", path)
    s = Session(load_scenario(SPIN)(), memory=memory, params=params)
    owner = params.get("owner", 1)
    for seed in range(6):
        r = s.run(RandomWalk(seed))
        assert [f.oracle for f in r.findings] == [OracleName.GUEST_FAULT]
        assert f"CPU{1 - owner} {verb} " in r.findings[0].message
        assert f"declared private to CPU{owner}" in r.findings[0].message
        assert r.findings[0].cpu == 1 - owner


def test_declarations_are_checked() -> None:
    s = Session(load_scenario(SPIN)(), memory="sc", params={"private": 0})
    m = s.machine
    with pytest.raises(GuestError, match="after seal"):
        m.set_private(1, "priv_count", 8)
    m.baseline = None  # (as in setup)
    with pytest.raises(GuestError, match="no CPU 5"):
        m.set_private(5, "priv_count", 8)
    with pytest.raises(GuestError, match="not in shared data"):
        m.set_private(1, 0x4000_0000, 8)
    with pytest.raises(GuestError, match="not in shared data"):
        m.set_private(1, "priv_count", 0)
    m.set_private(1, "priv_count", 8)
    with pytest.raises(GuestError, match="overlaps priv_count, private to CPU1"):
        m.set_private(0, m.addr("priv_count") + 4, 8)


# -- schedules --------------------------------------------------------------------------
def test_a_schedule_records_private_data_and_replays_with_it() -> None:
    s = Session(load_scenario(SPIN)(), memory="sc")
    r = s.run(RandomWalk(4))
    assert r.schedule.config.get("private") is True
    sched = Schedule.from_json(r.schedule.to_json())
    again = session_for(sched, SPIN)
    assert again.machine.private
    assert again.replay(sched).trace_digest() == r.trace_digest()
    off = Session(load_scenario(SPIN)(), memory="sc", private=False)
    assert "private" not in off.machine.config_dict()
    with pytest.raises(ScheduleMismatch, match="recorded with private data, this session "
                                               "runs without it"):
        off.replay(sched)
    text = r.schedule.to_json().replace('"private":true', '"private":1')
    assert '"private":1' in text
    with pytest.raises(ScheduleError, match=r"'config\.private' must be true"):
        Schedule.from_json(text)


def test_an_old_schedule_replays_without_private_data() -> None:
    """A schedule recorded before private data existed (no "private") replays through
    ``session_for`` with it off, taking the same decisions."""
    off = Session(load_scenario(SPIN)(), memory="sc", private=False)
    r = off.run(RandomWalk(9))
    sched = Schedule.from_json(r.schedule.to_json())
    again = session_for(sched, SPIN)
    assert not again.machine.private
    assert again.replay(sched).trace_digest() == r.trace_digest()


# -- the Arm model's views ---------------------------------------------------------------
def test_a_private_load_takes_the_spill_view_and_a_store_spills() -> None:
    """``deps.apply(..., own=True)``: as for the CPU's stack (a load takes the join of
    everything stored there, and of its address registers)."""
    store = ks_word("str x3, [x1, x2, lsl #3]", 0)
    load = ks_word("ldr x4, [x1, #8]", 0)
    views = [0] * 33
    views[3], views[1], views[2] = 7, 2, 9
    ctrl, spill = deps.apply(views, store, 0, own=True)
    assert (ctrl, spill) == (0, 7)
    ctrl, spill = deps.apply(views, load, spill, own=True)
    assert views[4] == 7 and spill == 7
    views[1] = 11
    deps.apply(views, load, spill, own=True)
    assert views[4] == 11
    views[4] = 0
    deps.apply(views, load, spill, own=False)  # without private data: a visible access,
    assert views[4] == 0  # whose views the data side sets
