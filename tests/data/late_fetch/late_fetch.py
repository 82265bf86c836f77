"""A fetch that races with a later store, with no visible operation before it."""

from testbed.findings import Finding
from testbed.isa import NOP, b
from testbed.machine import Machine
from testbed.scenario import Scenario


class LateFetch(Scenario):
    name = "late_fetch"
    description = "the victim fetches a site patched after its last visible operation"
    kernels = ("boot.S", "insn.S", "late_fetch.S")
    expect = "uninitialised-read"
    declare = 1  # 1: the scenario declares the site it patches; 0: the session learns it

    def setup(self, m: Machine) -> None:
        site = m.addr("lf_site")
        m.start(0, "lf_patcher", site, b(site, m.addr("lf_new")))
        m.start(1, "lf_victim")
        if self.declare:
            m.may_patch("lf_site")

    def check(self, m: Machine) -> list[Finding]:
        if m.read_u32("lf_ran_new") and not m.read_u32("lf_seen"):
            site = m.addr("lf_site")
            return [Finding("uninitialised-read", "CPU1 ran the new code at lf_site and "
                            "read lf_data before CPU0 initialised it", cpu=1, addr=site,
                            words=(NOP, b(site, m.addr("lf_new"))))]
        return []


class LateFetchLearned(LateFetch):
    name = "late_fetch_learned"
    description = "as late_fetch, the site not declared: learned from earlier runs"
    declare = 0
