"""ftrace with ``DYNAMIC_FTRACE_WITH_CALL_OPS`` (arm64, v6.3+): a literal written before
the branch that uses it.

CPU0 turns on one callsite with ``ftrace_make_call()``: it points the callsite's 64-bit
literal (just before the function) at ``trace_ops``, then patches the ``NOP`` at
``ftrace_site`` into ``BL ftrace_caller`` with ``ftrace_modify_code()``.  CPU1 calls the
traced function in a loop; once it runs the ``BL``, ``ftrace_caller`` loads the literal
and calls the ops' function.  The protocol's promise: a CPU that runs the new ``BL``
calls through the new ops, never the ``ftrace_nop_ops`` the literal held before.

* ``call_ops``: the literal written by ``aarch64_insn_write_literal_u64()``, whose
  ``patch_unmap()`` ends with ``DSB ISH``: clean under both data models.
* ``call_ops_plain``: the literal written with a plain 64-bit store (no lock, no
  barrier), on module text patched in place (``aarch64_insn_write_direct``: no
  ``patch_map()`` barrier before the ``BL`` store either).  Nothing orders the two
  stores, so under ``arm`` CPU1 may run the new ``BL`` and read the old literal (the
  data read of the text reads an older message): a ``stale-literal`` finding.  Under
  ``sc`` the literal is always written first: nothing.  On core kernel text
  ``patch_map()``'s ``DSB ISHST`` before the ``BL`` store orders the literal anyway.
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.isa import bl
from testbed.machine import Machine
from testbed.scenario import Scenario


class CallOps(Scenario):
    name = "call_ops"
    description = "ftrace CALL_OPS: literal, then NOP -> BL ftrace_caller: correct"
    kernels = ("boot.S", "insn.S", "ftrace.S")
    ncpus = 2
    calls = 16
    literal_plain = 0  # ftrace_literal_plain: the literal written with a plain store
    direct = 0  # aarch64_insn_write_direct: module text patched in place
    expect = None
    search_scope: ClassVar[dict[str, int]] = {"calls": 1}

    def setup(self, m: Machine) -> None:
        m.write(m.addr("ftrace_literal_plain"), self.literal_plain.to_bytes(4, "little"))
        m.write(m.addr("aarch64_insn_write_direct"), self.direct.to_bytes(4, "little"))
        site = m.addr("ftrace_site")
        m.start(0, "ftrace_patcher", site, m.addr("traced_func_literal"),
                m.addr("trace_ops"), bl(site, m.addr("ftrace_caller")))
        m.start(1, "traced_loop", self.calls)
        m.may_patch("ftrace_site")
        m.may_patch("traced_func_literal", 8)

    def observe(self, m: Machine) -> dict[str, object]:
        return {"result": m.read_u32("ftrace_result"),
                "trace_calls": m.read_u32("trace_calls"),
                "nop_calls": m.read_u32("ftrace_nop_calls")}

    def check(self, m: Machine) -> list[Finding]:
        """CPU1 ran ``ftrace_nop_func``: it executed the new ``BL`` (only the ``BL``
        leads to ``ftrace_caller``) and called through the literal's old value."""
        func = m.addr("ftrace_nop_func")
        for cpu, entries in enumerate(m.ground_truth()):
            steps = [step for step, addr, _ in entries if addr == func]
            if steps:
                site = m.addr("ftrace_site")
                return [Finding(
                    OracleName.STALE_LITERAL,
                    f"CPU{cpu} ran BL ftrace_caller at {m.image.symbolize(site)} but called "
                    "through the callsite literal's old value (ftrace_nop_ops): the literal "
                    "it read is older than the branch it executed", cpu=cpu, addr=site,
                    step=steps[0])]
        return []


class CallOpsPlain(CallOps):
    name = "call_ops_plain"
    description = "call_ops with a plain literal store on module text: stale ops (arm)"
    literal_plain = 1
    direct = 1
    expect = OracleName.STALE_LITERAL
