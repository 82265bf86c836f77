"""Machines of up to ``layout.MAX_CPUS`` (256) CPUs: the memory map has room for them,
the interrupt controller reaches every one, and a real scenario runs to completion on
256 CPUs (a round-robin schedule; about 2 s, most of it building the machine)."""

from __future__ import annotations

import itertools

from testbed import layout
from testbed.interrupts import InterruptController
from testbed.scenario import Session, load_scenario
from testbed.strategies import RoundRobin


def test_max_cpus_is_256() -> None:
    assert layout.MAX_CPUS == 256
    assert layout.ASM_DEFINES["MAX_CPUS"] == 256  # kernels size per-CPU arrays with it


def test_the_memory_map_has_room_for_every_cpu() -> None:
    n = layout.MAX_CPUS
    regions = sorted([
        (layout.TEXT_BASE, layout.TEXT_BASE + layout.TEXT_MAX, "text"),
        (layout.TEXT_ALIAS, layout.TEXT_ALIAS + layout.TEXT_MAX, "text alias"),
        (layout.DATA_BASE, layout.DATA_BASE + layout.DATA_SIZE, "data"),
        (layout.percpu_base(0), layout.percpu_base(n), "per-CPU areas"),
        (layout.stack_top(0) - layout.STACK_SIZE, layout.stack_top(n - 1), "stacks"),
        (layout.GIC_BASE, layout.GIC_BASE + layout.PAGE, "GIC"),
    ])
    for (_, end, a), (start, _, b) in itertools.pairwise(regions):
        assert end <= start, f"{a} overlaps {b}"


def test_an_ipi_reaches_every_one_of_256_cpus() -> None:
    gic = InterruptController(256)
    for target in (1, 128, 255):  # GIC_SEND: the target in bits[7:0]
        gic.write(0, layout.GIC_SEND, (1 << 8) | target)
        assert gic.asserted(target)
    gic.write(0, layout.GIC_SEND_OTHERS, 2 << 8)
    assert all(gic.asserted(c) for c in range(1, 256)) and not gic.asserted(0)
    assert gic.read(255, layout.GIC_ACK)[0] == 1
    assert gic.read(255, layout.GIC_ACK)[0] == 2
    assert gic.read(255, layout.GIC_ACK)[0] == layout.GIC_SPURIOUS


def test_a_tasks_rcu_grace_period_on_256_cpus() -> None:
    """``call_ops_free``: CPU0 waits in ``synchronize_rcu_tasks`` for each of 255 other
    CPUs, through ``rcu_tasks_nvcsw[MAX_CPUS]`` (kernels/rcu.S), before ``kfree``."""
    scenario = load_scenario("call_ops_free")()
    session = Session(scenario, ncpus=256)
    result = session.run(RoundRobin(), max_decisions=1_000_000)
    assert result.finished and result.findings == []
    m = session.machine
    base = m.addr("rcu_tasks_nvcsw")
    nvcsw = [int.from_bytes(m.read(base + 8 * c, 8), "little") for c in range(256)]
    done = (1 << 63) | scenario.calls  # every call's context switch, then off the runqueue
    assert nvcsw[1:] == [done] * 255
    assert m.read_u32("rcu_qs_skip_mb_before") == 0  # the word after the array: untouched
