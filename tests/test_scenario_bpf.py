"""BPF trampolines on arm64 (``scenarios/bpf.py``, ``kernels/bpf_trampoline.S``): the plt
and ``bpf_arch_text_poke()``, the old image's lifetime, the new image's initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from unicorn import arm64_const as A

from testbed.cli import main
from testbed.findings import EventKind, OracleName
from testbed.isa import bl
from testbed.machine import Machine
from testbed.scenario import Session, default_strategy, load_scenario
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import PCT, RandomWalk, RoundRobin

UAF = OracleName.USE_AFTER_FREE
FAULT = OracleName.GUEST_FAULT
NOP = 0xD503201F
EFAULT = 14


def _poke(old: str | None, new: str | None) -> Session:
    """A session whose CPU0 runs bpf_arch_text_poke(bpf_prog, old, new) alone."""
    base = load_scenario("bpf_tramp_switch")

    class Poke(base):  # type: ignore[misc, valid-type]
        name = "bpf_poke"
        ncpus = 1

        def setup(self, m: Machine) -> None:
            m.start(0, "bpf_arch_text_poke", m.addr("bpf_prog"),
                    m.addr(old) if old else 0, m.addr(new) if new else 0)
            m.may_patch("bpf_prog_poke")
            m.may_patch("bpf_plt_target", 8)

    return Session(Poke(), memory="sc")


def _text(m: Machine, where: str, size: int = 4) -> int:
    return int.from_bytes(m.read(m.addr(where), size), "little")  # the D-side


def test_the_prog_and_its_plt_are_laid_out_as_the_jit_lays_them_out() -> None:
    m = Session(load_scenario("bpf_tramp_switch")()).machine
    prog = m.addr("bpf_prog")
    assert m.addr("bpf_prog_poke") == prog + 4  # POKE_OFFSET
    # plt = image + jited_len - PLT_TARGET_OFFSET, its target 8-byte aligned
    assert m.addr("bpf_plt") == prog + 32 - 12 and m.addr("bpf_plt_target") % 8 == 0
    assert m.addr("bpf_plt_target") == m.addr("bpf_plt") + 12
    assert _text(m, "bpf_prog_poke") == bl(prog + 4, m.addr("bpf_plt"))
    assert _text(m, "bpf_plt_target", 8) == m.addr("bpf_tramp_a")
    # BPF_TRAMP_SIZE: what arch_prepare_bpf_trampoline() flushes covers trampoline B
    assert m.addr("bpf_fentry_a") - m.addr("bpf_tramp_b") == 0x34


@pytest.mark.parametrize(("old", "new", "result", "site", "target"), [
    # modify_fentry(): both long jumps, only the target changes
    ("bpf_tramp_a", "bpf_tramp_b", 0, "bl plt", "bpf_tramp_b"),
    # unregister_fentry(): the target back to dummy_tramp first, then BL plt -> NOP
    ("bpf_tramp_a", None, 0, "nop", "dummy_tramp"),
    # register_fentry() on a site that is not a NOP: the target is written (before
    # text_mutex, as in the kernel), the instruction check fails, the BL stays
    (None, "bpf_tramp_b", -EFAULT, "bl plt", "bpf_tramp_b"),
])
def test_bpf_arch_text_poke_writes_the_target_and_patches_only_a_changed_insn(
        old: str | None, new: str | None, result: int, site: str, target: str) -> None:
    s = _poke(old, new)
    r = s.run(RoundRobin())
    m = s.machine
    assert r.findings == [] and r.finished
    assert m.cpus[0].uc.reg_read(A.UC_ARM64_REG_X0) & 0xFFFFFFFF == result & 0xFFFFFFFF
    poke = m.addr("bpf_prog_poke")
    assert _text(m, "bpf_prog_poke") == (NOP if site == "nop" else bl(poke, m.addr("bpf_plt")))
    assert _text(m, "bpf_plt_target", 8) == m.addr(target)
    stores = [e.addr for e in r.events if e.kind is EventKind.TEXT_STORE]
    target_store = m.addr("bpf_plt_target")
    assert stores == ([target_store, poke] if site == "nop" else [target_store])


# -- the scenarios: verdicts within the search scope ------------------------------------

@pytest.mark.parametrize(("name", "memory", "found"), [
    ("bpf_tramp_switch", "sc", set()),
    ("bpf_tramp_switch", "arm", set()),
    ("bpf_tramp_free_early", "sc", {UAF}),
    ("bpf_tramp_free_early", "arm", {UAF}),
    ("bpf_tramp_no_kick", "sc", set()),
    ("bpf_tramp_no_kick", "arm", {FAULT}),
])
def test_verdicts_within_two_preemptions_and_one_model_event(
        name: str, memory: str, found: set[str]) -> None:
    """The grace period keeps A alive for every CPU that can still reach it; without it a
    CPU runs A freed.  The kick makes every CPU that can read the new target read B's
    image as prepared; without it only the Arm model lets a CPU read B's image from
    before (a load after BR X10 is not ordered after the load that gave X10)."""
    cls = load_scenario(name)
    assert cls.search_scope == {"calls": 1}
    res = search(Session(cls(), params=cls.search_scope, memory=memory),
                 SearchBounds(2, 1, max_seconds=300))
    assert res.covered and res.finals > 0
    assert {f.oracle for f, _ in res.findings.values()} == found
    m = Session(cls(), params=cls.search_scope, memory=memory).machine
    for f, _ in res.findings.values():  # where each race shows
        where = m.image.symbolize(f.addr)
        assert where.startswith("bpf_tramp_a" if f.oracle == UAF else "bpf_tramp_b"), where


def test_the_correct_scenario_runs_both_trampolines_and_frees_a() -> None:
    s = Session(load_scenario("bpf_tramp_switch")())
    seen_a = seen_b = 0
    for seed in range(100):
        r = s.run(RandomWalk(seed))
        assert r.findings == [] and r.finished, r.findings
        obs = r.observations
        a_runs, b_runs = obs["a_runs"], obs["b_runs"]
        assert isinstance(a_runs, int) and isinstance(b_runs, int)
        assert obs["result"] == 0 and a_runs + b_runs == 4
        seen_a += a_runs > 0
        seen_b += b_runs > 0
        assert _text(s.machine, "bpf_plt_target", 8) == s.machine.addr("bpf_tramp_b")
        assert s.machine.read(s.machine.addr("bpf_tramp_im_a"), 2) == b"\x6b\x6b"  # freed
    assert seen_a > 10 and seen_b > 10  # runs before and after the switch, both


@pytest.mark.parametrize(("name", "memory", "code"), [
    ("bpf_tramp_switch", "arm", 0),
    ("bpf_tramp_free_early", "arm", 1),
    ("bpf_tramp_no_kick", "arm", 1),
    ("bpf_tramp_no_kick", "sc", 0),
])
def test_testbed_run_2000_schedules(tmp_path: Path, name: str, memory: str,
                                    code: int) -> None:
    """``testbed run NAME --schedules 2000`` with the scenario's own strategy."""
    assert main(["run", name, "--schedules", "2000", "--seed", "0", "--memory", memory,
                 "--no-db", "--out", str(tmp_path)]) == code
    assert len(list(tmp_path.glob("*.json"))) == code


@pytest.mark.parametrize(("name", "oracle", "where"), [
    ("bpf_tramp_free_early", UAF, "bpf_tramp_a+0x14"),  # LDR X0, [X10, #8]: im->prog
    ("bpf_tramp_no_kick", FAULT, "bpf_tramp_b+0x18"),  # LDR X11, [X0]: NULL->bpf_func
])
def test_the_broken_twins_findings_replay_and_shrink(tmp_path: Path, name: str,
                                                     oracle: str, where: str) -> None:
    cls = load_scenario(name)
    spec = default_strategy(cls)
    assert (spec.name, spec.depth) == ("pct", 2)
    session = Session(cls())
    hit = next(r for r in (session.run(PCT(seed, depth=2)) for seed in range(300))
               if any(f.oracle == oracle for f in r.findings))
    target = next(f for f in hit.findings if f.oracle == oracle)
    assert session.image.symbolize(target.addr) == where
    res = shrink(session, hit.schedule, oracle=oracle, addr=target.addr, max_runs=400)
    assert len(res.shrunk.decisions) <= len(hit.schedule.decisions)
    again = session.replay(res.shrunk)  # strict
    assert any(f.oracle == oracle and f.addr == target.addr for f in again.findings)
    path = tmp_path / "small.json"
    path.write_text(res.shrunk.to_json())
    assert main(["replay", str(path)]) == 1


def test_without_the_kick_the_reader_reads_the_new_target_and_the_old_image() -> None:
    """The no-kick race as the search finds it: CPU1 loads the plt target, B, then B's
    prog from before arch_prepare_bpf_trampoline() wrote it (an older message: a READ
    decision, the only model event of the run)."""
    cls = load_scenario("bpf_tramp_no_kick")
    s = Session(cls(), params=cls.search_scope)
    res = search(s, SearchBounds(2, 1), stop_on=FAULT)
    finding = next(f for f, _ in res.findings.values() if f.oracle == FAULT)
    r = s.replay(res.witness(s, finding.signature()))
    m = s.machine
    reads = [e for e in r.events if e.kind is EventKind.READ]
    assert [(e.cpu, e.addr) for e in reads] == [(1, m.addr("bpf_tramp_im_b") + 8)]
    assert _text(m, "bpf_plt_target", 8) == m.addr("bpf_tramp_b")
    assert m.read_u64(m.addr("bpf_tramp_im_b") + 8) == m.addr("bpf_fentry_prog_b")


@pytest.mark.parametrize("fastpath", ["1", "0"])
def test_a_redone_load_of_the_plt_target_logs_what_ran(
        fastpath: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plt's ``LDR X10, [X10]`` reads the target a store changed (a data access to
    the text, redone in text mode by a single step: textside.redo_text_access): its
    ``BR X10`` runs once after it, and the block the step would branch to is not in the
    log (Unicorn's block hook logs it before its count stops the step)."""
    monkeypatch.setenv("TESTBED_FASTPATH", fastpath)
    s = Session(load_scenario("bpf_tramp_switch")(), memory="sc")
    m = s.machine
    ldr, br = m.addr("bpf_plt") + 4, m.addr("bpf_plt") + 8
    loads = 0
    for seed in range(6):
        r = s.run(RandomWalk(seed))
        for trace in r.ground_truth():
            addrs = [addr for _, addr, _ in trace]
            assert addrs.count(ldr) == addrs.count(br)
            loads += addrs.count(ldr)
    assert loads
