"""The use-after-free oracle (``Machine.watch_object``, ``kernels/slab.S``) and the
ftrace ops-lifetime scenarios built on it (``scenarios/ftrace.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from testbed import slab
from testbed.cli import main
from testbed.cpu import CpuState
from testbed.explain import explain_replay
from testbed.findings import OracleName
from testbed.machine import GuestError, Machine
from testbed.scenario import Scenario, Session, default_strategy, load_scenario
from testbed.schedule import Decision, DecisionKind, step
from testbed.search import SearchBounds, search
from testbed.shrink import shrink
from testbed.strategies import PCT, Replay

UAF = OracleName.USE_AFTER_FREE

READER = """
	.text
// void reader(u64 *obj): two loads of the object, what they read to reader_out
	.global reader
reader:
	ldr	x1, [x0]
	ldr	x2, [x0, #8]
	ldr	x3, =reader_out
	stp	x1, x2, [x3]
	ret
	.data
	.balign	8
	.global obj
obj:
	.quad	0x1111, 0x2222
	.global other
other:
	.quad	0x3333, 0x4444
	.global reader_out
reader_out:
	.quad	0, 0
"""


def _scenario(tmp_path: Path, watched: str = "obj", freed: str = "obj") -> Scenario:
    kernel = tmp_path / "reader.S"
    kernel.write_text(READER)

    class FreeAndRead(Scenario):
        name = "free_and_read"
        kernels: ClassVar[tuple[str, ...]] = ("boot.S", "slab.S", str(kernel))

        def setup(self, m: Machine) -> None:
            m.start(0, "kfree", m.addr(freed), 16)
            m.start(1, "reader", m.addr("obj"))
            m.watch_object(watched, 16)

    return FreeAndRead()


def _steps(m: Machine, cpu: int) -> list[Decision]:
    out = []
    while m.cpus[cpu].state is CpuState.RUNNABLE and not m.stopped:
        out.append(step(cpu))
        m.apply(out[-1])
    return out


def _run_in_order(session: Session, first: int, until_pc: str = "") -> list[Decision]:
    """CPU ``first`` to its end (or to ``until_pc``), then the other, then the first."""
    m = session.machine
    m.reset()
    order: list[Decision] = []
    if until_pc:
        while m.image.symbolize(m.cpus[first].pc) != until_pc:
            order.append(step(first))
            m.apply(order[-1])
    else:
        order += _steps(m, first)
    order += _steps(m, 1 - first)
    order += _steps(m, first)
    return order


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_a_load_of_the_poison_is_a_use_after_free(tmp_path: Path, memory: str) -> None:
    session = Session(_scenario(tmp_path), memory=memory)
    r = session.run(Replay(_run_in_order(session, 0)))
    assert [f.oracle for f in r.findings] == [UAF]
    f = r.findings[0]
    assert f.cpu == 1 and session.machine.image.symbolize(f.addr) == "reader"
    assert "obj+0x0" in f.message and slab.poison(16)[:8].hex() in f.message


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_the_last_doubleword_ends_with_poison_end(tmp_path: Path, memory: str) -> None:
    """A load of the second half after the free: the poison there ends with 0xa5."""
    session = Session(_scenario(tmp_path), memory=memory)
    r = session.run(Replay(_run_in_order(session, 1, until_pc="reader+0x4")))
    assert [f.oracle for f in r.findings] == [UAF]
    assert "obj+0x8" in r.findings[0].message and "6ba5" in r.findings[0].message
    assert slab.poison(16)[-1] == slab.POISON_END and slab.poison(16)[0] == slab.POISON_FREE


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_loads_before_the_free_are_silent(tmp_path: Path, memory: str) -> None:
    session = Session(_scenario(tmp_path), memory=memory)
    r = session.run(Replay(_run_in_order(session, 1)))
    assert r.findings == [] and r.finished
    assert session.machine.read(session.machine.addr("reader_out"), 16) == (
        (0x1111).to_bytes(8, "little") + (0x2222).to_bytes(8, "little"))


def test_an_object_not_watched_or_not_freed_is_silent(tmp_path: Path) -> None:
    for watched, freed in (("other", "obj"), ("obj", "other")):
        (tmp_path / watched).mkdir()
        session = Session(_scenario(tmp_path / watched, watched, freed))
        r = session.run(Replay(_run_in_order(session, 0)))
        assert r.findings == [] and r.finished


@pytest.mark.parametrize("older", [(True, True), (True, False)])
def test_under_arm_a_late_load_of_the_live_bytes_is_not_a_use(
        tmp_path: Path, older: tuple[bool, bool]) -> None:
    """Under the Arm model a load after the free in the schedule may still read the
    object's bytes from before it (an older message, a READ decision): it read a live
    object, and the oracle stays silent.  The same load reading the latest message (the
    poison) fires."""
    session = Session(_scenario(tmp_path), memory="arm")
    m = session.machine
    m.reset()
    _steps(m, 0)  # the free, whole
    for old in older:
        if old:
            reads = [d for d in m.model_choices()
                     if d.kind is DecisionKind.READ and d.cpu == 1]
            assert len(reads) == 1  # the bytes from before the free: the only older one
            m.apply(reads[0])
        else:
            m.apply(step(1))
    if all(older):
        _steps(m, 1)
        assert m.findings == [] and m.read(m.addr("reader_out"), 16) == (
            (0x1111).to_bytes(8, "little") + (0x2222).to_bytes(8, "little"))
    else:
        assert [f.oracle for f in m.findings] == [UAF] and "obj+0x8" in m.findings[0].message


def test_watch_object_refuses_bad_declarations(tmp_path: Path) -> None:
    session = Session(_scenario(tmp_path))
    m = session.machine
    with pytest.raises(GuestError, match="after seal"):
        m.watch_object("obj", 16)
    fresh = Machine(session.image, 2)  # not sealed
    for where, size in (("obj", 0), ("reader", 8), ("obj", 1 << 40)):
        with pytest.raises(GuestError, match="not in shared data"):
            fresh.watch_object(where, size)


# -- the ftrace ops-lifetime scenarios -----------------------------------------------------

def _search(name: str, memory: str) -> set[str]:
    cls = load_scenario(name)
    res = search(Session(cls(), params=cls.search_scope, memory=memory),
                 SearchBounds(2, 1, max_seconds=300))
    assert res.covered
    return {f.oracle for f, _ in res.findings.values()}


@pytest.mark.parametrize(("name", "memory", "found"), [
    ("call_ops_free", "sc", set()),
    ("call_ops_free_early", "sc", {UAF}),
    ("call_ops_free_qs_no_mb", "sc", set()),
    ("call_ops_free_qs_no_mb", "arm", {UAF}),
])
def test_ops_lifetime_within_two_preemptions(name: str, memory: str, found: set[str]) -> None:
    """The grace period keeps the ops alive for every CPU that can still reach them;
    without it a CPU reads them freed; with a context switch missing its barrier after
    the count, only the Arm model shows it (``call_ops_free`` under ``arm`` is covered in
    tests/test_search.py)."""
    assert _search(name, memory) == found


def test_the_broken_twins_name_pct_and_their_findings_replay_and_shrink(
        tmp_path: Path) -> None:
    for name in ("call_ops_free_early", "call_ops_free_qs_no_mb"):
        cls = load_scenario(name)
        spec = default_strategy(cls)
        assert (spec.name, spec.depth) == ("pct", 2)
        session = Session(cls())
        hit = next(r for r in (session.run(PCT(seed, depth=2)) for seed in range(300))
                   if any(f.oracle == UAF for f in r.findings))
        target = next(f for f in hit.findings if f.oracle == UAF)
        res = shrink(session, hit.schedule, oracle=UAF, addr=target.addr, max_runs=400)
        assert len(res.shrunk.decisions) <= len(hit.schedule.decisions)
        again = session.replay(res.shrunk)  # strict
        assert any(f.oracle == UAF and f.addr == target.addr for f in again.findings)
    out = tmp_path / "found"
    assert main(["run", "call_ops_free_early", "--schedules", "300", "--no-db",
                 "--out", str(out)]) == 1  # the scenario's PCT, d=2, with no --strategy
    assert main(["replay", str(next(out.glob("*.json")))]) == 1
    assert main(["run", "call_ops_free_early", "--schedules", "300", "--no-db",
                 "--strategy", "random", "--out", str(out / "r")]) == 0


@pytest.mark.parametrize(("name", "memory"), [("call_ops_free_early", "sc"),
                                              ("call_ops_free_qs_no_mb", "arm")])
def test_the_why_names_the_free_and_where_the_pointer_came_from(name: str,
                                                                 memory: str) -> None:
    cls = load_scenario(name)
    s = Session(cls(), params=cls.search_scope, memory=memory)
    res = search(s, SearchBounds(2, 1, max_seconds=300), stop_on=UAF)
    finding = next(f for f, _ in res.findings.values() if f.oracle == UAF)
    text = " ".join(explain_replay(s, res.witness(s, finding.signature())).lines)
    assert "CPU1 read dyn_ops at step" in text
    assert "CPU0 freed it: kfree() filled it with the poison from step" in text
    assert "from traced_func_dyn_literal" in text  # where CPU1 had the pointer from
