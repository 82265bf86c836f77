"""The timing model (``testbed.timing``): one test per rule, then real runs.

The rule tests build small activities by hand (``Activity.add``) or small ground-truth
logs for ``extract``; the run tests replay round-robin runs of the bench's
``static_key_enable()`` workload (``bench/workloads.py``) on 4 CPUs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from testbed import layout, timing
from testbed.access import AccessKind
from testbed.findings import Event, EventKind
from testbed.isa import OpKind, classify
from testbed.timing import Activity, Op, Params

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

P = Params(clock_ghz=1.0, cpi=1.0, line_ns=40.0, dsb_ns=8.0, bcast_ns=300.0,
           ipi_send_ns=16.0, ipi_deliver_ns=1000.0, ipi_ack_ns=200.0)  # 1 ns an instruction


def _act(ncpus: int, *items: tuple[int, Op, int, int]) -> Activity:
    act = Activity(ncpus)
    for cpu, op, arg, plain in items:
        act.add(cpu, op, arg, plain)
    return act


def _marks(act: Activity, params: Params = P, timed: tuple[int, ...] = (0,)
           ) -> dict[int, float]:
    return {i: t for (_, i), (t, _) in timing.replay(act, params, timed).marks.items()}


# -- the rules, one by one ------------------------------------------------------------------

def test_rule_1_an_instruction_costs_cpi_over_the_clock() -> None:
    act = _act(1, (0, Op.MARK, 0, 0), (0, Op.MARK, 1, 10))
    assert _marks(act) == {0: 0.0, 1: 10.0}
    assert _marks(act, replace(P, cpi=1.5, clock_ghz=3.0)) == {0: 0.0, 1: 5.0}


def test_rule_2_a_load_waits_for_the_line_another_cpu_wrote() -> None:
    act = _act(2, (1, Op.STORE, 7, 100),  # CPU1 writes line 7 at t=100
               (0, Op.LOAD, 7, 1),  # CPU0 reads it: not before 100, then the transfer
               (0, Op.LOAD, 7, 1),  # it holds the line now: a hit
               (0, Op.MARK, 0, 0))
    t = timing.replay(act, P, timed=(0, 1))
    assert t.marks[(0, 0)][0] == 100 + 40 + 1
    assert t.counts[0]["transfers"] == 1


def test_rule_2_lines_nobody_else_wrote_hit() -> None:
    act = _act(2, (0, Op.STORE, 3, 1), (0, Op.LOAD, 3, 1), (1, Op.LOAD, 9, 1),
               (0, Op.LOAD, 9, 1), (0, Op.MARK, 0, 0))
    assert _marks(act, timed=(0, 1)) == {0: 3.0}


def test_rule_2_writes_of_n_cpus_to_one_line_serialise() -> None:
    n = 5
    act = _act(n, *((c, Op.STORE, 1, 1) for c in range(n)),
               *((c, Op.MARK, 0, 0) for c in range(n)))
    t = timing.replay(act, P, timed=range(n))
    assert [t.marks[(c, 0)][0] for c in range(n)] == [1.0] + [1 + 40.0 * k for k in range(1, n)]


def test_rule_2_a_load_exclusive_and_its_store_are_one_atomic() -> None:
    act = _act(2, (0, Op.STORE, 2, 10), (0, Op.STORE, 3, 0),
               (1, Op.LOADX, 2, 1), (0, Op.LOAD, 2, 0),  # CPU0 reads between the two
               (1, Op.STORE, 2, 2),  # one transfer, at the store-exclusive
               (1, Op.LOADX, 3, 1), (1, Op.MARK, 0, 1))  # no store follows: a load
    t = timing.replay(act, P, timed=(0, 1))
    assert t.counts[1]["transfers"] == 2
    # the store waits for CPU0's write at t=10, then the load of line 3
    assert t.marks[(1, 0)][0] == 10 + 40 + 1 + 40 + 1


def test_rule_3_maintenance_queues_and_completes_at_the_dsb() -> None:
    act = _act(1, (0, Op.BCAST, 0, 1), (0, Op.BCAST, 0, 1), (0, Op.DC, 0, 1),
               (0, Op.DSB, 0, 1), (0, Op.MARK, 0, 0),
               (0, Op.DSB, 0, 1), (0, Op.MARK, 1, 0))
    marks = _marks(act)
    assert marks[0] == 1 + 300 + 300 + 40  # issued at t=1, one after the other
    assert marks[1] - marks[0] == 1 + 8  # nothing left to wait for: dsb_ns alone


def test_rule_3_a_broadcast_can_grow_with_n() -> None:
    act = _act(128, (0, Op.BCAST, 0, 0), (0, Op.DSB, 0, 0), (0, Op.MARK, 0, 0))
    assert _marks(act) == {0: 300.0}
    assert _marks(act, replace(P, bcast_scale_cpus=64)) == {0: 600.0}  # N / 64 times


def test_rule_4_a_dsb_costs_dsb_ns() -> None:
    act = _act(1, (0, Op.DSB, 0, 1), (0, Op.MARK, 0, 0))
    assert _marks(act) == {0: 9.0}
    assert _marks(act, replace(P, dsb_ns=16.0)) == {0: 17.0}


def test_rule_5_an_ipi_is_taken_deliver_ns_after_its_write() -> None:
    act = Activity(3)
    act.send(0, (1, 2), plain=4)  # CPU0 writes two SGIs: t=4+16, t=4+32
    act.add(0, Op.MARK, 0, 0)
    for cpu in (1, 2):
        act.add(cpu, Op.IRQ, 0, 500)  # the code it ran before is not timed (rule 6)
        act.add(cpu, Op.ACK, 0, 10)
        act.add(cpu, Op.ERET, 0, 5)
    t = timing.replay(act, P, timed=(0,))
    assert t.marks[(0, 0)][0] == 4 + 2 * 16  # the sender pays per target
    assert t.stalled_ns[1] == t.stalled_ns[2] == 10 + 200 + 5
    assert t.exceptions == (0, 1, 1)
    assert t.counts[0]["ipi_targets"] == 2 and t.counts[1]["acks"] == t.counts[1]["irqs"] == 1


def test_rule_5_the_sender_sees_the_handler_through_memory() -> None:
    act = Activity(2)
    act.send(0, (1,), plain=0)
    act.add(1, Op.IRQ, 0, 0)
    act.add(1, Op.ACK, 0, 0)
    act.add(1, Op.STORE, 5, 0)  # the handler's acknowledgement, in memory
    act.add(1, Op.ERET, 0, 0)
    act.add(0, Op.LOAD, 5, 0)  # the sender's wait that sees it (rule 7 left the rest out)
    act.add(0, Op.MARK, 0, 0)
    assert _marks(act) == {0: 16 + 1000 + 200 + 40}


def test_rule_6_other_cpus_are_timed_only_inside_exceptions() -> None:
    act = Activity(2)
    act.add(1, Op.STORE, 4, 10_000)  # outside an exception: no time
    act.send(0, (1,), plain=0)
    act.add(1, Op.IRQ, 0, 10_000)
    act.add(1, Op.ERET, 0, 3)
    act.add(1, Op.END, 0, 10_000)
    t = timing.replay(act, P)
    assert t.stalled_ns == (0.0, 3.0) and t.end_ns[1] == 16 + 1000 + 3
    assert t.counts[1]["instructions"] == 3


def test_rule_6_a_trap_is_taken_after_the_store_that_wrote_its_instruction() -> None:
    act = _act(2, (0, Op.STORE, 11, 50), (1, Op.TRAP, 11, 7), (1, Op.ERET, 0, 20))
    t = timing.replay(act, P)
    assert t.end_ns[1] == 50 + 40 + 20 and t.stalled_ns[1] == 20.0
    assert t.counts[1]["traps"] == 1


# -- rule 7, on ground-truth logs -------------------------------------------------------------

LDAR, CBZ, YIELD, B_BACK = 0x88DFFD6A, 0x34000060, 0xD503203F, 0x17FFFFFD  # a polling loop
LDAXR, SUB, STLXR, CBNZ = 0x885FFD6A, 0x5100054A, 0x880CFD6A, 0x35FFFFAC  # a decrement
NOP, DSB_ISH = 0xD503201F, 0xD5033B9F
BASE = layout.TEXT_BASE


@dataclass(frozen=True)
class _Access:
    step: int
    cpu: int
    pc: int
    addr: int
    kind: AccessKind


def _text(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


def _run(words: tuple[int, ...], pcs: list[int]) -> tuple[list[tuple[int, int, int]],
                                                        list[_Access]]:
    """CPU0 executes the instructions at ``pcs`` (indices into ``words``), one step each;
    its loads and stores access ``DATA_BASE``."""
    log, accesses = [], []
    for step, i in enumerate(pcs, 1):
        log.append((step, BASE + 4 * i, BASE + 4 * i + 4))
        kind = classify(words[i])
        if kind.kind is OpKind.MEMORY and kind.mem is not None:
            load = kind.mem.kind.value == "load"
            accesses.append(_Access(step, 0, BASE + 4 * i, layout.DATA_BASE,
                                    AccessKind.LOAD if load else AccessKind.STORE))
    return log, accesses


def test_the_encodings_used_here() -> None:
    assert classify(YIELD).kind is OpKind.YIELD and classify(DSB_ISH).kind is OpKind.BARRIER
    mem = classify(LDAXR).mem
    assert mem is not None and mem.exclusive and mem.kind.value == "load"
    mem = classify(STLXR).mem
    assert mem is not None and mem.exclusive and mem.kind.value == "store"


def test_rule_7_polling_iterations_that_found_nothing_cost_nothing() -> None:
    words = (LDAR, CBZ, YIELD, B_BACK, NOP)
    # Four times round the loop (ldar cbz yield b), then the ldar that sees the value.
    pcs = [0, 1, 2] + [3, 0, 1, 2] * 3 + [3, 0, 1, 4]
    log, accesses = _run(words, pcs)
    act = timing.extract(_text(*words), [log], [], accesses, marks={0: (0, len(pcs) - 1)})
    assert act.waiting == [12]  # three iterations of four instructions
    ops = [Op(o) for o in act.op]
    assert ops.count(Op.LOAD) == 2  # the first iteration's load and the last one's
    t = timing.replay(act, P)
    assert t.between(0, 0, len(pcs) - 1)[0] == len(pcs) - 1 - 12


def test_rule_7_a_failed_store_exclusive_is_waiting() -> None:
    words = (LDAXR, SUB, STLXR, CBNZ, NOP)
    pcs = [0, 1, 2, 3] * 2 + [0, 1, 2, 3, 4]  # fails twice, then stores
    log, accesses = _run(words, pcs)
    act = timing.extract(_text(*words), [log], [], accesses)
    assert act.waiting == [8]
    assert [Op(o) for o in act.op] == [Op.LOADX, Op.STORE, Op.END]
    assert sum(act.plain) == 5


def test_rule_7_a_store_commits_the_iteration() -> None:
    words = (LDAR, 0xB900016A, YIELD, B_BACK, NOP)  # the second: str w10, [x11]
    pcs = [0, 1, 2] + [3, 0, 1, 2] * 2 + [4]
    log, accesses = _run(words, pcs)
    act = timing.extract(_text(*words), [log], [], accesses)
    assert act.waiting == [0]  # each iteration stored: not waiting
    assert [Op(o) for o in act.op].count(Op.STORE) == 3


def test_extract_reads_ipis_and_exceptions_from_the_events() -> None:
    words = (NOP, 0xB900016A, NOP, 0xD69F03E0)  # nop; str w10, [x11]; nop; eret
    vector = BASE + 8
    logs = [[(1, BASE + 4, BASE + 8)], [(2, BASE, BASE + 4), (3, vector, vector + 8)]]
    accesses = [_Access(1, 0, BASE + 4, layout.GIC_BASE + layout.GIC_SEND_OTHERS,
                        AccessKind.STORE)]
    events = [Event(1, 0, EventKind.IPI_SEND, value=1, detail="to CPU1"),
              Event(3, 1, EventKind.IRQ, BASE + 4),
              Event(3, 1, EventKind.EXCEPTION, BASE + 4, -1, f"vector {vector:#x}"),
              Event(3, 1, EventKind.ERET, BASE + 12)]
    act = timing.extract(_text(*words), logs, events, accesses)
    assert [(c, Op(o)) for c, o, _, _ in act.items()] == [
        (0, Op.SEND), (0, Op.END), (1, Op.IRQ), (1, Op.ERET), (1, Op.END)]
    assert act.targets == [(1,)]


# -- real runs --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    from bench.protocols import analyse
    from bench.workloads import PROTOCOLS, BenchSession, JumpLabelCost
    from testbed.explain import AccessProbe
    from testbed.strategies import RoundRobin

    out = {}
    for p in PROTOCOLS:
        session = BenchSession(JumpLabelCost(p), 4)
        probe = AccessProbe()
        r = session.run(probe(RoundRobin()))
        window = analyse(session.image, r.initial_text, r.logs)["window"]
        act = timing.extract(r.initial_text, r.logs, r.events, probe.accesses,
                             marks={0: window})
        out[p.name] = (act, window)
    return out


def _latency(run: tuple[Activity, list[int]], params: Params) -> float:
    act, window = run
    return timing.replay(act, params).between(0, *window)[0]


# What the patcher was charged from static_key_enable to its return, and the other CPUs
# inside their exceptions, on 4 CPUs (deterministic: round-robin schedules).
COUNTS_4 = {
    "nosync": ({"dsb": 40, "dc": 8, "bcast": 8, "ipi_targets": 0, "transfers": 1},
               {"irqs": 0, "traps": 0, "acks": 0, "transfers": 0}),
    "kick": ({"dsb": 41, "dc": 8, "bcast": 8, "ipi_targets": 3, "transfers": 2},
             {"irqs": 3, "traps": 0, "acks": 3, "transfers": 3}),
    "brk": ({"dsb": 96, "dc": 16, "bcast": 16, "ipi_targets": 48, "transfers": 57},
            {"irqs": 48, "traps": 24, "acks": 48, "transfers": 136}),
    "stop_machine": ({"dsb": 48, "dc": 8, "bcast": 8, "ipi_targets": 24, "transfers": 80},
                     {"irqs": 24, "traps": 0, "acks": 24, "transfers": 128}),
    "stop_machine_batch": ({"dsb": 41, "dc": 8, "bcast": 8, "ipi_targets": 3,
                            "transfers": 24},
                           {"irqs": 3, "traps": 0, "acks": 3, "transfers": 16}),
}


@pytest.mark.parametrize("name", sorted(COUNTS_4))
def test_counts_of_a_run_on_four_cpus(runs: dict[str, Any], name: str) -> None:
    act, window = runs[name]
    t = timing.replay(act, Params())
    patcher = t.between(0, *window)[1]
    stalled = t.stalled(range(1, 4))[1]
    want_p, want_s = COUNTS_4[name]
    assert {k: patcher[k] for k in want_p} == want_p
    assert {k: stalled[k] for k in want_s} == want_s


def test_ipi_delivery_moves_the_latency_by_one_delivery_per_ipi_round(
        runs: dict[str, Any]) -> None:
    """Doubling ``ipi_deliver_ns`` adds exactly one delivery per IPI broadcast the patcher
    sent, and nothing to a protocol without IPIs."""
    base = Params()
    slow = base.scaled("ipi_deliver_ns", 2.0)
    for name, (act, window) in runs.items():
        sends = sum(1 for c, o, _, _ in act.items() if c == 0 and o == Op.SEND)
        delta = _latency((act, window), slow) - _latency((act, window), base)
        assert delta == pytest.approx(sends * base.ipi_deliver_ns, abs=1e-6), name
    assert sum(1 for c, o, _, _ in runs["nosync"][0].items() if o == Op.SEND) == 0


def test_ipi_delivery_does_not_change_how_long_a_kick_stalls(runs: dict[str, Any]) -> None:
    """Every target of a kick takes its IPI one delivery later: each stall starts later
    and ends as much later."""
    act, _ = runs["kick"]
    a = timing.replay(act, Params())
    b = timing.replay(act, Params().scaled("ipi_deliver_ns", 2.0))
    assert b.stalled_ns == pytest.approx(a.stalled_ns, abs=1e-6)


@pytest.mark.parametrize("name", ["ipi_send_ns", "ipi_deliver_ns", "ipi_ack_ns"])
def test_nosync_does_not_depend_on_ipi_costs(runs: dict[str, Any], name: str) -> None:
    act, _ = runs["nosync"]
    a, b = timing.replay(act, Params()), timing.replay(act, Params().scaled(name, 2.0))
    assert a.end_ns == b.end_ns and a.stalled_ns == b.stalled_ns


def test_every_ipi_is_sent_acknowledged_and_returned(runs: dict[str, Any]) -> None:
    for name, (act, _) in runs.items():
        t = timing.replay(act, Params())
        sent = sum(c["ipi_targets"] for c in t.counts)
        assert sent == sum(c["acks"] for c in t.counts) == sum(c["irqs"] for c in t.counts)
        assert sum(t.exceptions) == sum(c["irqs"] + c["traps"] for c in t.counts[1:]), name


def test_extract_is_deterministic(runs: dict[str, Any]) -> None:
    from bench.workloads import PROTOCOLS, BenchSession, JumpLabelCost
    from testbed.explain import AccessProbe
    from testbed.strategies import RoundRobin

    session = BenchSession(JumpLabelCost(PROTOCOLS[1]), 4)
    probe = AccessProbe()
    r = session.run(probe(RoundRobin()))
    act = timing.extract(r.initial_text, r.logs, r.events, probe.accesses,
                         marks={0: runs["kick"][1]})
    old = runs["kick"][0]
    assert (act.cpu, act.op, act.arg, act.plain, act.targets, act.waiting) == (
        old.cpu, old.op, old.arg, old.plain, old.targets, old.waiting)


def test_scaled_and_shown() -> None:
    p = Params()
    assert p.scaled("clock_ghz", 2.0).insn_ns == pytest.approx(2 * p.insn_ns)
    assert p.scaled("line_ns", 0.5).line_ns == p.line_ns / 2
    assert set(p.shown()) == {name for name, _ in timing.PARAMETER_SOURCES}
