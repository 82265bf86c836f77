"""A scenario of one's own, kept outside the project: its kernel file is beside it."""

from typing import ClassVar

from testbed.findings import Finding
from testbed.isa import NOP, b
from testbed.machine import Machine
from testbed.scenario import Scenario


class FtraceNolock(Scenario):
    name = "ftrace_nolock"
    description = "an ftrace-style nosync patch raced by a CPU running the call site"
    kernels = ("boot.S", "insn.S", "ftrace_race.S")
    passes = 6
    expect = "ftrace-stale"
    search_scope: ClassVar[dict[str, int]] = {"passes": 2}

    def setup(self, m: Machine) -> None:
        site = m.addr("ftrace_site")
        m.start(0, "ftrace_patcher", site, b(site, m.addr("ftrace_new")))
        m.start(1, "ftrace_loop", self.passes)

    def check(self, m: Machine) -> list[Finding]:
        raw = m.read(m.addr("ftrace_log"), 4 * self.passes)
        entries = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
        if 0x101 not in entries:  # flag seen set (1 << 8), old path (1)
            return []
        site = m.addr("ftrace_site")
        return [Finding("ftrace-stale", "CPU1 saw ftrace_done=1 and ran the old NOP",
                        cpu=1, addr=site, words=(NOP, b(site, m.addr("ftrace_new"))))]
