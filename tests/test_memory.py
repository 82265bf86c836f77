"""One test per rule of the instruction-fetch model (DESIGN.md section 4), named after it."""

from __future__ import annotations

import random

import pytest

from testbed.memory import CacheType, FetchConfig, FetchModel, ModelError

NOP = 0xD503201F
B_OLD = 0x14000003  # B l0, as in the ESOP 2020 tests
B_NEW = 0x14000001  # B .+4
TEXT_WORDS = 64  # 256 bytes = 4 lines of 64 bytes


def words(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)


def model(cache: CacheType = CacheType.IDC0, ncpus: int = 2, **kw: bool) -> FetchModel:
    text = words(*([NOP] * TEXT_WORDS))
    return FetchModel(FetchConfig(cache, **kw), text, ncpus)  # type: ignore[arg-type]


def put(m: FetchModel, off: int, value: int) -> None:
    m.store(off, value.to_bytes(4, "little"))


def dside(m: FetchModel, off: int) -> int:
    return int.from_bytes(m.dside[off:off + 4], "little")


def pou(m: FetchModel, off: int) -> int:
    return int.from_bytes(m.pou[off:off + 4], "little")


# -- rule 1 -------------------------------------------------------------------------

def test_rule1_store_acts_on_dside_only_when_idc0() -> None:
    m = model(CacheType.IDC0)
    put(m, 8, B_NEW)
    assert dside(m, 8) == B_NEW
    assert pou(m, 8) == NOP
    m.ic_ivau(8)
    m.catch_up(1)
    assert m.fetch(1, 8) == NOP  # the PoU was never cleaned: the fill reads the old value


def test_rule1_store_reaches_pou_at_once_when_idc1() -> None:
    m = model(CacheType.IDC1)
    put(m, 8, B_NEW)
    assert pou(m, 8) == B_NEW
    assert m.fetch(1, 8) == NOP  # but the I-caches still hold the old word
    m.catch_up(1)
    assert m.fetch(1, 8) == NOP  # nothing invalidated it: IC IVAU is still needed
    m.ic_ivau(8)
    m.catch_up(1)
    assert m.fetch(1, 8) == B_NEW


def test_rule1_store_invalidates_its_line_in_every_icache_when_dic1() -> None:
    m = model(CacheType.DIC1, ncpus=3)
    put(m, 68, B_NEW)
    for cpu in range(3):
        assert set(range(64, 128, 4)) <= m.cpus[cpu].invalid
        assert not m.cpus[cpu].invalid & set(range(0, 64, 4))  # other lines untouched
        assert m.fetch(cpu, 68) == NOP  # the I-view moves only at a catch-up
        m.catch_up(cpu)
        assert m.fetch(cpu, 68) == B_NEW


def test_rule1_stores_are_single_copy_atomic_per_access() -> None:
    m = model(CacheType.IDC1)
    m.store(0, words(B_OLD, B_NEW))  # one 8-byte store covers two whole words
    m.ic_ivau(0)
    m.catch_up(0)
    assert (m.fetch(0, 0), m.fetch(0, 4)) == (B_OLD, B_NEW)
    assert not m.is_torn(0, 0) and not m.is_torn(0, 4)


# -- rule 2 -------------------------------------------------------------------------

def test_rule2_dc_cvau_cleans_the_line_to_the_pou() -> None:
    m = model(CacheType.IDC0)
    put(m, 4, B_NEW)
    put(m, 64, B_NEW)
    m.dc_cvau(0)
    assert pou(m, 4) == B_NEW
    assert pou(m, 64) == NOP  # only the line named


def test_rule2_dc_then_ic_publishes_the_store() -> None:
    m = model(CacheType.IDC0)
    put(m, 4, B_NEW)
    m.dc_cvau(4)
    m.ic_ivau(4)
    m.catch_up(1)
    assert m.fetch(1, 4) == B_NEW


# -- rule 3 -------------------------------------------------------------------------

def test_rule3_ic_ivau_invalidates_the_line_in_every_cpu() -> None:
    m = model(CacheType.IDC1, ncpus=4)
    put(m, 132, B_NEW)
    m.ic_ivau(132)
    for cpu in range(4):
        assert m.cpus[cpu].invalid == set(range(128, 192, 4))
        m.catch_up(cpu)
        assert m.fetch(cpu, 132) == B_NEW


def test_rule3_ic_iallu_is_local_to_the_issuing_cpu() -> None:
    m = model(CacheType.IDC1)
    put(m, 0, B_NEW)
    m.ic_iallu(0)
    m.catch_up(0)
    m.catch_up(1)
    assert m.fetch(0, 0) == B_NEW
    assert m.fetch(1, 0) == NOP


def test_rule3_ic_iallu_broadcast_option_matches_herd7() -> None:
    m = model(CacheType.IDC1, iallu_broadcast=True)
    put(m, 0, B_NEW)
    m.ic_iallu(0)
    m.catch_up(1)
    assert m.fetch(1, 0) == B_NEW


def test_rule3_ic_ialluis_invalidates_every_cpu() -> None:
    m = model(CacheType.IDC1, ncpus=3)
    put(m, 200, B_NEW)
    m.ic_ialluis()
    for cpu in range(3):
        assert len(m.cpus[cpu].invalid) == TEXT_WORDS
        m.catch_up(cpu)
        assert m.fetch(cpu, 200) == B_NEW


def test_rule3_invalidation_is_by_iminline() -> None:
    m = FetchModel(FetchConfig(CacheType.IDC1, iline=16, dline=16), words(*[NOP] * 16), 1)
    m.ic_ivau(20)
    assert m.cpus[0].invalid == {16, 20, 24, 28}


# -- rule 4 -------------------------------------------------------------------------

def test_rule4_fill_takes_the_pou_value() -> None:
    m = model(CacheType.IDC0)
    put(m, 0, B_NEW)
    m.ic_ivau(0)
    m.fill(1, 0)  # PoU still has the old value
    m.dc_cvau(0)  # cleaning now is too late for the word already filled
    m.catch_up(1)
    assert m.fetch(1, 0) == NOP


def test_rule4_fill_may_snoop_the_dside_when_idc0() -> None:
    m = model(CacheType.IDC0)
    put(m, 0, B_NEW)
    m.ic_ivau(0)
    assert (0, True) in m.fill_choices(1)
    m.fill(1, 0, from_dside=True)  # a write not yet cleaned is seen: SM.F+ic allowed
    m.catch_up(1)
    assert m.fetch(1, 0) == B_NEW


def test_rule4_fill_requires_an_invalid_word_and_idc0_for_dside() -> None:
    m = model(CacheType.IDC1)
    with pytest.raises(ModelError):
        m.fill(0, 0)
    m.ic_ivau(0)
    with pytest.raises(ModelError):
        m.fill(0, 0, from_dside=True)


# -- rule 5 -------------------------------------------------------------------------

def test_rule5_evict_makes_a_valid_word_invalid_and_refill_reads_the_pou() -> None:
    m = model(CacheType.IDC1)
    put(m, 12, B_NEW)  # no IC: the I-caches keep NOP
    assert m.evict_choices(1) == [12]
    m.evict(1, 12)
    assert 12 in m.cpus[1].invalid
    m.catch_up(1)
    assert m.fetch(1, 12) == B_NEW
    assert m.fetch(0, 12) == NOP
    m.evict(0, 12)
    with pytest.raises(ModelError):
        m.evict(0, 12)  # an invalid word cannot be evicted again


# -- rule 6 -------------------------------------------------------------------------

def test_rule6_write_back_cleans_a_line_spontaneously_when_idc0() -> None:
    m = model(CacheType.IDC0)
    put(m, 16, B_NEW)
    assert m.write_back_choices() == [0]
    m.write_back(0)
    assert pou(m, 16) == B_NEW
    assert m.write_back_choices() == []
    with pytest.raises(ModelError):
        model(CacheType.IDC1).write_back(0)


# -- rule 7 -------------------------------------------------------------------------

def test_rule7_catch_up_is_the_only_way_the_iview_moves() -> None:
    m = model(CacheType.IDC1)
    put(m, 0, B_NEW)
    m.ic_ivau(0)
    m.fill(1, 0)
    assert m.fetch(1, 0) == NOP  # filled into the I-cache, not yet in the I-view
    assert m.catch_up_would_change(1)
    assert m.catch_up(1) == [0]
    assert m.fetch(1, 0) == B_NEW
    assert not m.catch_up_would_change(1)
    assert m.catch_up(1) == []


def test_rule7_catch_up_fills_from_the_pou_not_the_dside() -> None:
    m = model(CacheType.IDC0)
    put(m, 0, B_NEW)
    m.ic_ivau(0)
    m.catch_up(1)
    assert m.fetch(1, 0) == NOP


def test_rule7_catch_up_is_one_snapshot_of_two_lines() -> None:
    """MP.FF+cachesync+fpo: after the full sequence on two lines, no CPU can see the
    second line new and the first old, whatever fills and evictions happen."""
    rng = random.Random(7)
    for _ in range(200):
        m = model(CacheType.IDC0)
        for off in (0, 64):
            put(m, off, B_NEW)
            m.dc_cvau(off)
            m.ic_ivau(off)
        for _ in range(rng.randrange(6)):
            choices = [("fill", w, d) for w, d in m.fill_choices(1)]
            choices += [("evict", w, False) for w in m.evict_choices(1)]
            if not choices:
                break
            kind, w, d = rng.choice(choices)
            if kind == "fill":
                m.fill(1, w, d)
            else:
                m.evict(1, w)
        m.catch_up(1)
        assert (m.fetch(1, 0), m.fetch(1, 64)) == (B_NEW, B_NEW)


def test_rule7_without_catch_up_the_old_instruction_stays() -> None:
    m = model(CacheType.IDC0)
    put(m, 0, B_NEW)
    m.dc_cvau(0)
    m.ic_ivau(0)  # the full sequence on the patcher...
    assert m.fetch(1, 0) == NOP  # ...but CPU1 had no context synchronization event


# -- rule 8 -------------------------------------------------------------------------

def test_rule8_fetch_is_a_whole_aligned_word() -> None:
    m = model()
    assert m.fetch(0, 4) == NOP
    with pytest.raises(ModelError):
        m.fetch(0, 2)


def test_rule8_a_word_stored_in_pieces_can_be_torn() -> None:
    m = model(CacheType.DIC1)
    new = B_NEW.to_bytes(4, "little")
    m.store(0, new[:2])  # the writer stores the low half first
    m.catch_up(1)
    torn = m.fetch(1, 0)
    assert torn not in (NOP, B_NEW)
    assert m.is_torn(1, 0)
    m.store(2, new[2:])  # the second half completes the instruction
    assert m.is_torn(1, 0)  # CPU1 still holds the torn word
    m.catch_up(1)
    assert m.fetch(1, 0) == B_NEW
    assert not m.is_torn(1, 0)


def test_rule8_a_whole_store_is_never_torn() -> None:
    m = model(CacheType.DIC1)
    for value in (B_OLD, B_NEW, NOP):
        put(m, 0, value)
        m.catch_up(0)
        assert not m.is_torn(0, 0)


# -- configuration, choices, reset -------------------------------------------------

@pytest.mark.parametrize(("cache", "idc", "dic"), [
    (CacheType.IDC0, 0, 0), (CacheType.IDC1, 1, 0), (CacheType.DIC1, 1, 1)])
def test_ctr_el0_fields_as_the_kernel_reads_them(cache: CacheType, idc: int, dic: int) -> None:
    ctr = FetchConfig(cache).ctr_el0
    # arch/arm64/include/asm/cache.h: CTR_L1IP_SHIFT 14, CTR_DMINLINE_SHIFT 16,
    # CTR_IMINLINE_MASK 0xf, CTR_IDC_SHIFT 28, CTR_DIC_SHIFT 29.
    assert (ctr >> 28) & 1 == idc
    assert (ctr >> 29) & 1 == dic
    assert 4 << (ctr & 0xF) == 64  # icache_line_size()
    assert 4 << ((ctr >> 16) & 0xF) == 64  # cache_line_size_of_cpu() via DminLine
    assert (ctr >> 14) & 3 == 0b11  # PIPT
    assert ctr >> 31 == 1  # RES1


def test_cache_type_parses_herd_spellings() -> None:
    assert CacheType.parse("IDC") is CacheType.IDC1
    assert CacheType.parse("dic") is CacheType.DIC1
    assert CacheType.parse("IDC0") is CacheType.IDC0
    with pytest.raises(ValueError):
        CacheType.parse("PIPT")


def test_choices_are_only_those_that_can_change_an_outcome() -> None:
    m = model(CacheType.IDC0)
    assert m.evict_choices(0) == [] and m.fill_choices(0) == [] and m.write_back_choices() == []
    assert not m.catch_up_would_change(0)
    m.ic_ialluis()  # everything invalid, but untouched words refill to the same text
    assert m.fill_choices(0) == []
    assert not m.catch_up_would_change(0)
    put(m, 8, B_NEW)
    assert m.fill_choices(0) == [(8, False), (8, True)]
    assert m.write_back_choices() == [0]


def test_reset_and_snapshot_restore_everything() -> None:
    m = model(CacheType.IDC0)
    snap0 = m.snapshot()
    key0 = m.state_key()
    put(m, 8, B_NEW)
    m.dc_cvau(8)
    m.ic_ivau(8)
    assert m.catch_up(1) == [8]
    snap1 = m.snapshot()
    key1 = m.state_key()
    assert key1 != key0
    assert m.restore(snap0)[1] == [8]
    assert m.fetch(1, 8) == NOP and dside(m, 8) == NOP and m.state_key() == key0
    m.restore(snap1)
    assert m.fetch(1, 8) == B_NEW and m.state_key() == key1
    assert m.reset() == [[], [8]]
    assert m.fetch(1, 8) == NOP and pou(m, 8) == NOP and not m.touched


def test_refill_is_evict_then_fill_and_only_offered_when_it_changes_something() -> None:
    m = model(CacheType.IDC0)
    assert m.refill_choices(1) == []
    put(m, 8, B_NEW)  # D-side new, PoU and I-caches old
    assert m.refill_choices(1) == [(8, True)]  # from the PoU would give the same word
    m.refill(1, 8, from_dside=True)
    assert m.cpus[1].icache[8:12] == B_NEW.to_bytes(4, "little")
    assert m.refill_choices(1) == [(8, False)]  # back to the stale PoU value
    m.refill(1, 8)
    m.catch_up(1)
    assert m.fetch(1, 8) == NOP


def test_fetch_scope_prunes_choices_and_state_key() -> None:
    m = model(CacheType.IDC0)
    m.set_scope(1, frozenset({0}))  # CPU1 never fetches word 8
    put(m, 8, B_NEW)
    m.ic_ivau(8)
    assert m.fill_choices(1) == [] and m.refill_choices(1) == []
    assert not m.catch_up_would_change(1)  # word 0 (in scope) would not change
    key = m.state_key()
    m.catch_up(1)  # changes only word 8 of CPU1: outside its scope
    assert m.state_key() == key
    m.catch_up(0)  # CPU0 has no scope: its copy matters
    assert m.state_key() != key
