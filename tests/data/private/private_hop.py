"""A scenario of the tests' own (tests/test_walker_python.py): CPU1 counts in data
private to it, in a block of its own, between two reads of CPU0's flag."""

from typing import ClassVar

from testbed.machine import Machine
from testbed.scenario import Scenario


class PrivateHop(Scenario):
    name = "private_hop"
    description = "a CPU counts in its private data, in a block of its own, while it waits"
    kernels = ("boot.S", "private_spin.S", "private_hop.S")
    ncpus = 2
    search_scope: ClassVar[dict[str, int]] = {}

    def setup(self, m: Machine) -> None:
        m.start(0, "priv_setter", m.addr("hop_flag"), 0)
        m.start(1, "hop_spin", m.addr("hop_count"), m.addr("hop_flag"))
        m.set_private(1, "hop_count", 16)

    def observe(self, m: Machine) -> dict[str, object]:
        return {"count": int.from_bytes(m.read(m.addr("hop_count"), 8), "little")}
