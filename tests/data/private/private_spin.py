"""A scenario of the tests' own (tests/test_private.py): CPU1 counts in data private to
it (``Machine.set_private``) while it waits for CPU0's flag."""

from typing import ClassVar

from testbed.machine import Machine
from testbed.scenario import Scenario


class PrivateSpin(Scenario):
    name = "private_spin"
    description = "a CPU counts in its private data while it waits for a flag"
    kernels = ("boot.S", "private_spin.S")
    ncpus = 2
    private = 1  # the count is declared private to CPU1
    owner = 1  # the CPU it is declared private to
    peek = 0  # CPU0 reads the count first: a violation of the declaration
    offset = 0  # the declaration starts this far into the count's 16 bytes
    search_scope: ClassVar[dict[str, int]] = {}

    def setup(self, m: Machine) -> None:
        count, flag = m.addr("priv_count"), m.addr("priv_flag")
        m.start(0, "priv_setter", flag, count if self.peek else 0)
        m.start(1, "priv_spin", count, flag)
        if self.private:
            where = m.addr("priv_count") + self.offset if self.offset else "priv_count"
            m.set_private(self.owner, where, 16 - self.offset)

    def observe(self, m: Machine) -> dict[str, object]:
        count = int.from_bytes(m.read(m.addr("priv_count"), 8), "little")
        seen = int.from_bytes(m.read(m.addr("priv_seen"), 8), "little")
        copy = int.from_bytes(m.read(m.addr("priv_count") + 8, 8), "little")
        return {"count": count, "seen": seen, "copy": copy}
