"""The BRK text-poke protocol: the 2019 single-slot sketch and the fixed protocol."""

from __future__ import annotations

from testbed import layout
from testbed.isa import b
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk

SITES = ("jl_site_a", "jl_site_b", "jl_site_c")


def emulations(session: Session) -> list[tuple[int, int, int]]:
    """(cpu, address, instruction) of every emulation the BRK handlers logged."""
    m = session.machine
    out = []
    for cpu in range(m.ncpus):
        base = layout.percpu_base(cpu)
        n = int.from_bytes(m.read(base + layout.PERCPU_EMUL_COUNT, 8), "little")
        for i in range(n):
            e = m.read(base + layout.PERCPU_EMUL_LOG + 16 * i, 16)
            out.append((cpu, int.from_bytes(e[:8], "little"), int.from_bytes(e[8:12], "little")))
    return out


def test_single_slot_handler_emulates_another_sites_instruction() -> None:
    session = Session(load_scenario("brk_single_slot")())
    image = session.image
    right = {image.addr(s): b(image.addr(s), image.addr(s + "_yes")) for s in SITES}
    for seed in range(1000):
        result = session.run(RandomWalk(seed))
        wrong = [f for f in result.findings if f.oracle == "brk-emulation"]
        if wrong:
            f = wrong[0]
            assert f.addr in right and f.words[1] == right[f.addr]
            assert f.words[0] in set(right.values()) - {right[f.addr]}  # the next site's
            assert (f.cpu, f.addr, f.words[0]) in emulations(session)
            return
    raise AssertionError("no wrong emulation in 1000 schedules")


def test_refcount_and_ipis_make_every_emulation_right() -> None:
    session = Session(load_scenario("brk_refcount_sync")())
    image = session.image
    right = {image.addr(s): b(image.addr(s), image.addr(s + "_yes")) for s in SITES}
    emulated = 0
    for seed in range(300):
        result = session.run(RandomWalk(seed))
        assert result.findings == [] and result.finished, result.findings
        for _cpu, addr, insn in emulations(session):
            assert right[addr] == insn
            emulated += 1
    assert emulated > 10  # CPUs really hit the BRKs and had them emulated


def test_each_brk_patch_emits_a_text_poke_record() -> None:
    from testbed.isa import NOP
    from testbed.textpoke import RecordError, parse_records, read_ring
    session = Session(load_scenario("brk_refcount_sync")())
    session.run(RandomWalk(3))
    image = session.image
    records = read_ring(session.machine)
    assert [r.addr for r in records] == [image.addr(s) for s in SITES]  # table order
    for r, site in zip(records, SITES, strict=True):
        assert r.old == NOP.to_bytes(4, "little")
        assert r.new == b(image.addr(site), image.addr(site + "_yes")).to_bytes(4, "little")
    times = [r.time for r in records]
    assert times == sorted(times) and len(set(times)) == 3  # global steps, in patch order
    texts = [e.step for e in session.machine.events if e.kind.value == "text-store"]
    assert all(min(texts) < t <= max(texts) for t in times)  # taken between the patches
    ring = session.machine.read(image.addr("perf_ring"), 4096)
    broken = bytearray(ring)
    broken[0] = 19  # not PERF_RECORD_TEXT_POKE
    try:
        parse_records(bytes(broken), records[-1].offset + 40)
    except RecordError as e:
        assert "bad record header at 0x0" in str(e)
    else:
        raise AssertionError("a bad record type was accepted")
