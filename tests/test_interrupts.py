from __future__ import annotations

import pytest

from testbed import layout
from testbed.interrupts import InterruptController


def test_send_ack_and_spurious() -> None:
    gic = InterruptController(4)
    assert gic.read(1, layout.GIC_ACK)[0] == layout.GIC_SPURIOUS
    gic.write(0, layout.GIC_SEND, (3 << 8) | 1)
    gic.write(2, layout.GIC_SEND, (1 << 8) | 1)
    assert gic.asserted(1) and not gic.asserted(0)
    assert gic.read(1, layout.GIC_PENDING)[0] == 0b1010
    assert gic.read(1, layout.GIC_ACK)[0] == 1  # lowest first
    assert gic.read(1, layout.GIC_ACK)[0] == 3
    assert gic.read(1, layout.GIC_ACK)[0] == layout.GIC_SPURIOUS
    assert not gic.asserted(1)


def test_send_to_all_others_and_cpuid() -> None:
    gic = InterruptController(3)
    access = gic.write(1, layout.GIC_SEND_OTHERS, 2 << 8)
    assert access.targets == (0, 2)
    assert [gic.asserted(c) for c in range(3)] == [True, False, True]
    assert gic.read(2, layout.GIC_CPUID)[0] == 2


def test_ipi_to_a_missing_cpu_is_an_error() -> None:
    with pytest.raises(IndexError, match="CPU9"):
        InterruptController(2).write(0, layout.GIC_SEND, 9)
