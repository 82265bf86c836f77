"""Patches the architecture does not allow to race with execution.

* ``cmodx_violation``: CPU0 turns ``ADD W5,W5,#1`` into ``SUB W5,W5,#1`` with
  ``aarch64_insn_patch_text_nosync`` while CPU1 runs through it.  Neither instruction is
  in the CMODX set (B, BL, B.cond, CB(N)Z, TB(N)Z, NOP, BRK, SVC, HVC, SMC, ISB), so
  CPU1 executing the word after another CPU modified it, with no context
  synchronization since, is a CMODX violation: the architecture does not promise
  "old or new" there.
* ``torn_write``: CPU0 writes ``B torn_site_new`` over the ``NOP`` at ``torn_site`` as
  two 16-bit stores; CPU1 runs through the site after an ``ISB`` each pass.  With
  DIC=1 the first half invalidates CPU1's line, so an ISB between the halves fetches a
  word that is neither instruction: the torn-word oracle reports its execution.
"""

from __future__ import annotations

from testbed.isa import b
from testbed.machine import Machine
from testbed.memory import CacheType
from testbed.scenario import Scenario

ADD_W5 = 0x110004A5  # add w5, w5, #1
SUB_W5 = 0x510004A5  # sub w5, w5, #1


class CmodxViolation(Scenario):
    name = "cmodx_violation"
    description = "nosync patch of ADD into SUB while another CPU runs it: not CMODX"
    kernels = ("boot.S", "insn.S", "nosync_race.S", "cmodx_race.S")
    ncpus = 2
    cache = CacheType.IDC0
    passes = 8
    expect = "cmodx-violation"

    def setup(self, m: Machine) -> None:
        site = m.addr("add_site")
        assert m.read_u32(site) == ADD_W5  # the encoding the scenario reasons about
        m.start(0, "patcher_main", site, SUB_W5)
        m.start(1, "add_site_loop", self.passes)
        m.may_patch(site)


class TornWrite(Scenario):
    name = "torn_write"
    description = "an instruction written as two 16-bit stores while another CPU runs it"
    kernels = ("boot.S", "insn.S", "nosync_race.S", "cmodx_race.S")
    ncpus = 2
    cache = CacheType.DIC1
    expect = "torn-word"
    passes = 8

    def setup(self, m: Machine) -> None:
        site = m.addr("torn_site")
        m.start(0, "halves_patcher", site, b(site, m.addr("torn_site_new")))
        m.start(1, "isb_site_loop", self.passes)
        m.may_patch(site)
