"""Rule 11 of the fetch model: CPUs whose caches differ (``FetchConfig.cpus``), erratum
profiles, ``CTR_EL0`` per CPU and system-wide, herd's per-thread ``CacheType=``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.litmus import parse as parse_litmus
from testbed.memory import (
    ERRATA,
    CacheType,
    CpuProfile,
    FetchConfig,
    FetchModel,
    ModelError,
    parse_per_thread,
)
from testbed.scenario import Session, load_scenario
from testbed.schedule import Schedule, ScheduleError, ScheduleMismatch
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import RandomWalk

IDC0, IDC1, DIC1 = CacheType.IDC0, CacheType.IDC1, CacheType.DIC1
TEXT = bytes(range(256)) * 2  # 512 bytes: 8 lines of 64
NEW = b"\xaa\xbb\xcc\xdd"


def model(*caches: CacheType | CpuProfile, deferred: bool = False) -> FetchModel:
    cpus = tuple(c if isinstance(c, CpuProfile) else CpuProfile(c) for c in caches)
    m = FetchModel(FetchConfig(IDC0, cpus=cpus), TEXT, len(cpus))
    m.deferred = deferred
    return m


def test_a_store_reaches_the_pou_at_once_only_from_an_idc1_cpu() -> None:
    m = model(IDC1, IDC0)
    assert m.mixed and not m.pou_shared
    m.store(0x40, NEW, cpu=1)  # the IDC=0 CPU: in the D-side only
    assert bytes(m.pou[0x40:0x44]) == TEXT[0x40:0x44] and m.write_back_choices() == [0x40]
    m.dc_cvau(0x40, cpu=1)
    assert bytes(m.pou[0x40:0x44]) == NEW and m.write_back_choices() == []
    m.store(0x80, NEW, cpu=0)  # the IDC=1 CPU: at the PoU at once
    assert bytes(m.pou[0x80:0x84]) == NEW and m.write_back_choices() == []


def test_an_idc1_store_writes_its_whole_line_back() -> None:
    """The line's other bytes, dirty from an IDC=0 CPU, go to the PoU with it."""
    m = model(IDC1, IDC0)
    m.store(0x40, NEW, cpu=1)
    m.store(0x48, NEW, cpu=0)
    assert bytes(m.pou[0x40:0x44]) == NEW and bytes(m.pou[0x48:0x4C]) == NEW


def test_a_dic1_cpus_icache_follows_the_pou_and_others_do_not() -> None:
    m = model(DIC1, IDC1)
    assert m.mixed and m.pou_shared
    m.store(0x40, NEW, cpu=1)
    assert 0x40 in m.cpus[0].invalid  # DIC=1: coherent with the PoU
    assert 0x40 not in m.cpus[1].invalid  # DIC=0: needs an IC IVAU
    m.ic_ivau(0x40, cpu=0)
    assert 0x40 in m.cpus[1].invalid


def test_a_dic1_cpu_sees_an_idc0_store_only_once_it_is_cleaned() -> None:
    m = model(DIC1, IDC0)
    m.store(0x40, NEW, cpu=1)
    assert 0x40 not in m.cpus[0].invalid and m.write_back_choices() == [0x40]
    m.write_back(0x40)
    assert 0x40 in m.cpus[0].invalid and 0x40 not in m.cpus[1].invalid


def test_rule_9_the_storing_dic1_cpus_own_line_waits_for_its_dsb() -> None:
    m = model(DIC1, DIC1, IDC1, deferred=True)
    m.store(0x40, NEW, cpu=0)
    assert 0x40 not in m.cpus[0].invalid and 0x40 in m.cpus[1].invalid
    assert 0x40 not in m.cpus[2].invalid
    m.complete_all(0)
    assert 0x40 in m.cpus[0].invalid


def test_a_fill_may_snoop_a_line_not_yet_cleaned() -> None:
    m = model(DIC1, IDC0)
    m.store(0x40, NEW, cpu=1)
    m.evict(0, 0x40)
    assert (0x40, True) in m.fill_choices(0)
    m.fill(0, 0x40, from_dside=True)
    assert bytes(m.cpus[0].icache[0x40:0x44]) == NEW


@pytest.mark.parametrize("cache", [IDC0, IDC1, DIC1])
def test_alike_cpus_are_the_uniform_model(cache: CacheType) -> None:
    """Rule 11 with every CPU alike is rules 1-10 as they were: the same state after the
    same operations, and the same key."""
    uniform = FetchModel(FetchConfig(cache), TEXT, 2)
    alike = FetchModel(FetchConfig(cache, cpus=(CpuProfile(cache),) * 2), TEXT, 2)
    assert not alike.mixed
    for m in (uniform, alike):
        m.deferred = True
        m.store(0x40, NEW, cpu=0)
        m.dc_cvau(0x40, cpu=0)
        m.complete_all(0)
        m.ic_ivau(0x40, cpu=1)
        m.complete_all(1)
        m.catch_up(1)
    assert uniform.snapshot() == alike.snapshot()
    assert uniform.state_key() == alike.state_key()


def test_profiles_must_match_the_cpus() -> None:
    with pytest.raises(ModelError, match="profiles for 3 CPUs"):
        FetchModel(FetchConfig(IDC0, cpus=(CpuProfile(IDC0),) * 2), TEXT, 3)


def test_ctr_el0_per_cpu_and_system_wide() -> None:
    cfg = FetchConfig(IDC0, cpus=(CpuProfile(DIC1), CpuProfile(IDC0)))
    dic, idc = 1 << 29, 1 << 28
    assert cfg.ctr_el0_of(0) & (dic | idc) == dic | idc
    assert cfg.ctr_el0_of(1) & (dic | idc) == 0
    assert cfg.sanitised_ctr_el0 & (dic | idc) == 0  # lower-safe: not every CPU has them
    both = FetchConfig(IDC0, cpus=(CpuProfile(DIC1), CpuProfile(IDC1)))
    assert both.sanitised_ctr_el0 & (dic | idc) == idc
    assert FetchConfig(DIC1).sanitised_ctr_el0 == FetchConfig(DIC1).ctr_el0_of(0)


def test_an_erratum_profile_advertises_one_thing_and_does_another() -> None:
    n1 = ERRATA["neoverse-n1-1542419"]
    assert (n1.cache, n1.says) == (IDC1, DIC1)
    assert CpuProfile.parse("Neoverse-N1-1542419") is n1 and n1.spelled() == n1.name
    cfg = FetchConfig(IDC0, cpus=(CpuProfile(DIC1), n1))
    assert cfg.sanitised_ctr_el0 >> 29 & 1  # every CPU advertises DIC
    m = FetchModel(cfg, TEXT, 2)
    m.store(0x40, NEW, cpu=0)
    assert 0x40 in m.cpus[0].invalid and 0x40 not in m.cpus[1].invalid  # stale until IC
    with pytest.raises(ValueError, match="not IDC or DIC"):
        CpuProfile.parse("cortex-a53-foo")


def test_herds_per_thread_cache_type_syntax() -> None:
    assert parse_per_thread("IDC DIC", 2) is None  # system-wide: CacheType.parse
    assert parse_per_thread("P0:DIC P1:IDC", 3) == (DIC1, IDC1, IDC0)
    assert parse_per_thread("1:IDC", 2) == (IDC0, IDC1)
    assert parse_per_thread("IDC P1:DIC", 2) == (IDC1, DIC1)  # a bare word: every thread
    for bad, why in (("P0:XYZ", "is not"), ("Q0:IDC", "is not"), ("P2:IDC", "thread 2")):
        with pytest.raises(ValueError, match=why):
            parse_per_thread(bad, 2)


LITMUS = """AArch64 T
CacheType={ct}
{{ 0:X0=NOP; 0:X1=P0:L0; 0:X9=0; 1:X2=0; }}
P0              | P1          ;
    STR W0,[X1] | MOV W2,#1   ;
    ISB         |             ;
L0: B L1        |             ;
    MOV W9,#1   |             ;
L1:             |             ;
exists 0:X9=0
"""


def test_the_litmus_runner_honours_per_thread_cache_types(tmp_path: Path) -> None:
    test = parse_litmus(LITMUS.format(ct="P0:DIC P1:IDC"), "t.litmus")
    assert test.thread_caches == (DIC1, IDC1) and test.cache is IDC1
    assert parse_litmus(LITMUS.format(ct="DIC"), "t.litmus").thread_caches == ()
    from testbed.litmus_run import build
    prog = build(test, memory="sc")
    assert [p.cache for p in prog.machine.fetch_config.cpus] == [DIC1, IDC1]
    bad = tmp_path / "bad.litmus"
    bad.write_text(LITMUS.format(ct="P5:IDC"))
    assert main(["litmus", str(bad)]) == 2


# -- scenarios: the kernel acts on the system-wide value ---------------------------------

@pytest.mark.parametrize(("name", "memory", "found"), [
    ("nosync_isb_biglittle", "sc", set()),
    ("nosync_isb_biglittle", "arm", set()),
    ("nosync_isb_local_ctr", "sc", {"stale-after-flush"}),
    ("nosync_isb_n1_erratum", "sc", {"stale-after-flush"}),
    ("nosync_isb_n1_erratum", "arm", {"stale-after-flush"}),
])
def test_heterogeneous_machines(name: str, memory: str, found: set[str]) -> None:
    s = Session(load_scenario(name)(), memory=memory)
    res = search(s, SearchBounds(2, 1, max_seconds=120))
    assert res.covered and {f.oracle for f, _ in res.findings.values()} == found


def test_schedules_record_the_cpus_and_replay_only_on_them(tmp_path: Path) -> None:
    s = Session(load_scenario("nosync_isb_local_ctr")())
    r = next(r for r in (s.run(RandomWalk(seed)) for seed in range(300)) if r.findings)
    assert r.schedule.config["cpus"] == ["DIC1", "IDC0"]
    path = tmp_path / "r.json"
    r.schedule.save(path)
    assert main(["replay", str(path)]) == 1
    other = Session(load_scenario("nosync_isb_local_ctr")(), cpu_caches={})
    with pytest.raises(ScheduleMismatch, match="per-CPU caches"):
        other.replay(Schedule.load(path))
    doc = json.loads(path.read_text())
    doc["config"]["cpus"] = "DIC1"
    path.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError, match=r"config\.cpus"):
        Schedule.load(path)


@pytest.mark.parametrize("name", ["nosync_isb_local_ctr", "nosync_isb_n1_erratum"])
def test_the_heterogeneous_twins_findings_shrink_and_replay(name: str) -> None:
    s = Session(load_scenario(name)())
    r = next(r for r in (s.run(RandomWalk(seed)) for seed in range(300)) if r.findings)
    target = r.findings[0]
    assert target.oracle == "stale-after-flush"
    res = shrink(s, r.schedule, oracle=target.oracle, addr=target.addr, max_runs=300)
    assert len(res.shrunk.decisions) <= len(r.schedule.decisions)
    again = s.replay(res.shrunk)  # strict
    assert any(f.oracle == target.oracle and f.addr == target.addr for f in again.findings)
