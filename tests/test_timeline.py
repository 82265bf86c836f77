"""Timelines with data accesses: values and data symbols on memory rows, from real runs
probed with ``testbed.explain.AccessProbe``; without accesses, the timeline as before."""

from __future__ import annotations

import functools
import re
from dataclasses import replace

from testbed import layout
from testbed.explain import AccessProbe
from testbed.findings import EventKind
from testbed.scenario import Session, load_scenario
from testbed.scheduler import RunResult
from testbed.strategies import RandomWalk
from testbed.timeline import (
    ACCESS_WIDTH,
    Access,
    AccessKind,
    Kind,
    access_text,
    build,
    data_name,
    fit_width,
    render,
    rows,
)


@functools.cache
def session(name: str) -> Session:
    return Session(load_scenario(name)())


def probed(name: str, oracle: str) -> tuple[Session, RunResult, list[Access]]:
    """The first random run of ``name`` with a finding of ``oracle``, replayed with the
    probe."""
    s = session(name)
    for seed in range(300):
        result = s.run(RandomWalk(seed))
        if any(f.oracle == oracle for f in result.findings):
            probe = AccessProbe()
            again = s.replay(result.schedule, wrap=probe)
            return s, again, probe.accesses
    raise AssertionError(f"no {oracle} finding in 300 schedules of {name}")


def test_memory_rows_show_the_value_and_the_data_symbol() -> None:
    s, result, accesses = probed("nosync_stale", "stale-after-flush")
    image = s.image
    text = render(result, image, 2, accesses=accesses)
    flag = next(a for a in reversed(accesses) if a.addr == image.addr("patch_done")
                and a.kind is AccessKind.STORE)
    # The flag's store-release, on the row of its step, in CPU0's column.
    assert re.search(rf"^ *{flag.step}     stlr w3, \[x2\] +patcher_main\+0x1c  -> 0x1 to "
                     r"patch_done$", text, re.M), text
    # CPU1's load-acquire of it (in CPU1's column), once it reads 1.
    read = next(a for a in accesses if a.addr == flag.addr and a.loaded == (1,))
    width = fit_width(build(result, image, 2, accesses=accesses))
    assert 60 < width < ACCESS_WIDTH
    assert re.search(rf"^ *{read.step} {{{width + 5}}}ldar w9, \[x7\] +site_loop\+0xc  "
                     r"<- 0x1 from patch_done$", text, re.M), text
    cpu0 = [line[:6 + width] for line in text.splitlines()[2:]]
    assert any(line.rstrip().endswith("-> 0x14000003 to patch_site") for line in cpu0)
    # The patch: the new instruction stored through the text alias, named by its site.
    assert re.search(r"str w1, \[x2\] +aarch64_insn_write\+0x[0-9a-f]+  -> 0x14000003 to "
                     "patch_site", text)
    # Without accesses: as before, no values, 60 columns.
    plain = render(result, image, 2)
    assert "<- " not in plain and " -> 0x" not in plain
    assert re.search(r"^ *\d+ {65}ldar w9, \[x7\] +site_loop\+0xc$", plain, re.M)


def test_accesses_change_nothing_but_the_access_text_and_folding() -> None:
    s, result, accesses = probed("jump_label_nosync", "static-key-incoherence")
    with_values = rows(result, s.image, accesses=accesses)
    without = rows(result, s.image)
    assert [replace(r, access="", anchor=True) for r in with_values] == \
        [replace(r, anchor=True) for r in without]
    shown = [r for r in with_values if r.access]
    # Every access is on the row of its operation, but cpu_off's store to GIC_CPU_OFF:
    # the CPU-off row says it.
    off = {(e.step, e.cpu) for e in result.events if e.kind is EventKind.HALT}
    assert {(r.step, r.cpu) for r in shown} == {(a.step, a.cpu) for a in accesses} - off
    assert all(data_name(s.image, a.addr) == "GIC_CPU_OFF" for a in accesses
               if (a.step, a.cpu) in off)
    assert all(r.kind in (Kind.INSN, Kind.SITE) for r in shown)
    by_step = {(a.step, a.cpu): a for a in accesses}
    for r in shown:
        a = by_step[(r.step, r.cpu)]
        assert r.addr == a.pc and r.access == access_text(a, lambda x: data_name(s.image, x))


def test_a_loop_row_whose_value_changed_is_not_folded() -> None:
    s, result, accesses = probed("jump_label_nosync", "static-key-incoherence")
    flag = s.image.addr("jl_key_flipped")
    first = next(a for a in accesses if a.addr == flag and a.loaded == (1,))
    before = [a for a in accesses if a.pc == first.pc and a.cpu == first.cpu
              and a.step < first.step]
    assert before and all(a.loaded == (0,) for a in before)  # the loop read 0 until then
    tl = build(result, s.image, 3, accesses=accesses)
    hit = [r for r in tl.rows() if r.step == first.step and r.cpu == first.cpu]
    assert hit and hit[0].anchor and "<- 0x1 from jl_key_flipped" in hit[0].cell()
    # In general (with a focus, as the demos have, loops fold): an operation whose
    # access differs from its last run is an anchor; the anchors without accesses stay
    # anchors; a loop's plain repeats still fold.
    # (cmodx_violation: its loop repeats plain loads; nosync_stale's loop passes a
    # declared fetch point every time, which makes each pass an anchor.)
    s, result, accesses = probed("cmodx_violation", "cmodx-violation")
    focus = {"add_site_loop"}
    plain = {(r.step, r.cpu, r.kind): r.anchor for r in rows(result, s.image, focus=focus)}
    last: dict[tuple[int, int], tuple[object, ...]] = {}
    by_step = {(a.step, a.cpu): a for a in accesses}
    repeats: list[Access] = []
    for r in rows(result, s.image, accesses=accesses, focus=focus):
        assert r.anchor or not plain[(r.step, r.cpu, r.kind)], r
        if not r.access or r.function not in focus:
            continue
        a = by_step[(r.step, r.cpu)]
        did = (a.kind, a.loaded, a.stored, a.ok)
        if last.get((r.cpu, r.addr), did) != did:
            assert r.anchor, r
        elif not r.anchor:
            repeats.append(a)
        last[(r.cpu, r.addr)] = did
    assert repeats
    # The same run, had that repeat read something else: its row is an anchor.
    odd = repeats[0]
    edited = [replace(a, loaded=(7,)) if a is odd else a for a in accesses]
    row = next(r for r in rows(result, s.image, accesses=edited, focus=focus)
               if (r.step, r.cpu) == (odd.step, odd.cpu) and r.access)
    assert row.anchor and row.access.startswith("<- 0x7 from ")


def test_data_names() -> None:
    image = session("jump_label_nosync").image
    site = image.addr("jl_site_a")
    assert data_name(image, image.addr("jl_key_flipped")) == "jl_key_flipped"
    # jl_log and __stop___jump_table share an address: the label defined last names it.
    assert data_name(image, image.addr("jl_log") + 8) == "jl_log+0x8"
    assert data_name(image, site) == "jl_site_a"  # not the function label jl_func_a
    assert data_name(image, site - layout.TEXT_BASE + layout.TEXT_ALIAS) == "jl_site_a"
    base = layout.percpu_base(1)
    assert data_name(image, base + layout.PERCPU_EMUL_COUNT) == "CPU1.emul_count"
    assert data_name(image, base + layout.PERCPU_EMUL_LOG + 0x18) == "CPU1.emul_log+0x18"
    assert data_name(image, layout.stack_top(2) - 0x50) == "CPU2 stack-0x50"
    assert data_name(image, layout.GIC_BASE + layout.GIC_ACK) == "GIC_ACK"
    assert data_name(image, 0x7000_0000) == "0x70000000"


def test_access_text() -> None:
    def name(addr: int) -> str:
        return f"<{addr:#x}>"

    load = Access(3, 1, 0x100, 0x20, 4, AccessKind.LOAD, "ldar", (1,), acquire=True)
    assert access_text(load, name) == "<- 0x1 from <0x20>"
    pair = Access(3, 1, 0x100, 0x20, 4, AccessKind.LOAD, "ldp", (1, 2))
    assert access_text(pair, name) == "<- 0x1, 0x2 from <0x20>"
    store = Access(3, 1, 0x100, 0x20, 4, AccessKind.STORE, "str", stored=(0xD503201F,))
    assert access_text(store, name) == "-> 0xd503201f to <0x20>"
    failed = replace(store, mnemonic="stxr", exclusive=True, ok=False)
    assert access_text(failed, name) == "-> 0xd503201f to <0x20> (exclusive: failed)"
    assert not failed.writes and store.writes
    rmw = Access(3, 1, 0x100, 0x20, 4, AccessKind.RMW, "ldadd", (1,), (2,))
    assert access_text(rmw, name) == "<- 0x1 -> 0x2 at <0x20>"
    cas = Access(3, 1, 0x100, 0x20, 4, AccessKind.RMW, "cas", (1,), (), ok=False)
    assert access_text(cas, name) == "<- 0x1 (no store) at <0x20>"
    assert pair.touches(0x27) and not pair.touches(0x28) and pair.end == 0x28
