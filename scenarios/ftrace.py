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

And the ops' lifetime.  CPU0 unregisters dynamically allocated ops (``dyn_ops``) from a
callsite that uses them: ``ftrace_make_nop()`` (the literal back to
``ftrace_nop_ops``, the ``BL`` back to a ``NOP``), then, in ``ftrace_shutdown()``, a
Tasks RCU grace period (``kernels/rcu.S``), then ``kfree()`` with SLUB's poison
(``kernels/slab.S``).  The other CPUs call the traced function in a loop, each call
after a voluntary context switch.  A CPU that reads the ops after the free (it loaded
the literal before it was changed, or ran the old ``BL``) reads the poison: a
``use-after-free`` finding (``Machine.watch_object``).

* ``call_ops_free``: as the kernel does it: clean under both data models.
* ``call_ops_free_early``: no grace period, as ``ftrace_shutdown()`` did when
  ``ftrace_enabled`` was 0 until commit 0e792b89e680 ("ftrace: Fix use-after-free for
  dynamic ftrace_ops", v6.1, CVE-2022-49892): use after free under both models.
* ``call_ops_free_qs_no_mb``: the grace period, but the context switch without its
  full barrier after the count (``rcu_qs_skip_mb_after``): a CPU's next call may read
  the literal before its quiescent state is visible, so it can load the old ops
  pointer and then read the freed ops.  Use after free under ``arm`` only; ``sc``
  cannot show it.

And two updates of one callsite at once: ``ftrace_make_call`` on CPU0 and
``ftrace_make_nop`` on CPU1 (``kernels/ftrace_update.S``), each a literal write and a
``ftrace_modify_code`` that reads, compares and patches.

* ``ftrace_update_locked``: each under ``text_mutex``, as ftrace runs them: the outcome
  is always one of the two serial orders.
* ``ftrace_update_no_mutex``: without it, both may validate before either patches, or
  one's literal land between the other's: a ``not-linearizable`` finding (e.g. the
  ``BL`` left on with the literal at ``ftrace_nop_ops``: the tracer's calls are lost).
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.isa import NOP, bl
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


class CallOpsFree(Scenario):
    name = "call_ops_free"
    description = "ftrace CALL_OPS: callsite off, Tasks RCU grace period, kfree(ops): correct"
    kernels = ("boot.S", "insn.S", "smp.S", "rcu.S", "slab.S", "ftrace.S",
               "ftrace_shutdown.S")
    ncpus = 2
    calls = 4
    skip_sync = 0  # ftrace_skip_sync: kfree() without the grace period
    skip_mb_before = 0  # rcu_qs_skip_mb_before: the context switch's first barrier
    skip_mb_after = 0  # rcu_qs_skip_mb_after: its second
    expect = None
    search_scope: ClassVar[dict[str, int]] = {"calls": 2}

    def setup(self, m: Machine) -> None:
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        for knob, value in (("ftrace_skip_sync", self.skip_sync),
                            ("rcu_qs_skip_mb_before", self.skip_mb_before),
                            ("rcu_qs_skip_mb_after", self.skip_mb_after)):
            m.write(m.addr(knob), value.to_bytes(4, "little"))
        site = m.addr("ftrace_site_dyn")
        m.start(0, "ftrace_unregister_patcher", site, m.addr("traced_func_dyn_literal"),
                m.addr("dyn_ops"), bl(site, m.addr("ftrace_caller")))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "traced_loop_rcu", self.calls, cpu)
        m.may_patch("ftrace_site_dyn")
        m.may_patch("traced_func_dyn_literal", 8)
        m.watch_object("dyn_ops", 16)

    def observe(self, m: Machine) -> dict[str, object]:
        return {"result": m.read_u32("ftrace_result"),
                "trace_calls": m.read_u32("trace_calls"),
                "nop_calls": m.read_u32("ftrace_nop_calls")}


class CallOpsFreeEarly(CallOpsFree):
    name = "call_ops_free_early"
    description = "call_ops_free without the grace period (before v6.1): use after free"
    skip_sync = 1
    expect = OracleName.USE_AFTER_FREE
    # CPU1 must stay between its load of the literal and its load of the ops while CPU0
    # runs ftrace_make_nop() to kfree(), about 20 decisions: one priority change (PCT,
    # d=2); a random walk found it in none of 2,000 runs
    strategy: ClassVar[dict[str, object]] = {"name": "pct", "depth": 2}


class CallOpsFreeQsNoMb(CallOpsFree):
    name = "call_ops_free_qs_no_mb"
    description = "call_ops_free, context switch without its barrier after: UAF (arm)"
    skip_mb_after = 1
    expect = OracleName.USE_AFTER_FREE
    strategy: ClassVar[dict[str, object]] = {"name": "pct", "depth": 2}


EINVAL = 22


class FtraceUpdateLocked(Scenario):
    name = "ftrace_update_locked"
    description = "ftrace_make_call and ftrace_make_nop on one callsite, under text_mutex"
    kernels = ("boot.S", "insn.S", "smp.S", "rcu.S", "slab.S", "cacheflush.S", "ftrace.S",
               "ftrace_shutdown.S", "ftrace_update.S")
    ncpus = 2
    no_mutex = 0  # ftrace_update_no_mutex: the updates without text_mutex
    expect: ClassVar[str | tuple[str, ...] | None] = None

    def setup(self, m: Machine) -> None:
        m.write(m.addr("ftrace_update_no_mutex"), self.no_mutex.to_bytes(4, "little"))
        site, lit = m.addr("ftrace_site"), m.addr("traced_func_literal")
        call = bl(site, m.addr("ftrace_caller"))
        ret = m.addr("ftrace_update_ret")
        m.start(0, "ftrace_update", 1, site, lit, m.addr("trace_ops"), call, ret)
        m.start(1, "ftrace_update", 0, site, lit, 0, call, ret + 4)
        for cpu in range(2, m.ncpus):
            m.start(cpu, "cpu_off")
        m.may_patch("ftrace_site")
        m.may_patch("traced_func_literal", 8)

    def _final(self, m: Machine) -> tuple[int, int, int, int]:
        """(site word, literal, CPU0's result, CPU1's result) as the run left them."""
        site, lit = m.addr("ftrace_site"), m.addr("traced_func_literal")
        ret = m.addr("ftrace_update_ret")
        signed = [int.from_bytes(m.read(ret + 4 * i, 4), "little", signed=True)
                  for i in (0, 1)]
        return (int.from_bytes(m.read(site, 4), "little"), m.read_u64(lit), *signed)

    def _serial(self, m: Machine) -> set[tuple[int, int, int, int]]:
        """The final states of the two updates run one after the other, either way."""
        site = m.addr("ftrace_site")
        call, nop = bl(site, m.addr("ftrace_caller")), NOP
        ops, nop_ops = m.addr("trace_ops"), m.addr("ftrace_nop_ops")
        return {(nop, nop_ops, 0, 0),  # make_call, then make_nop
                (call, ops, 0, -EINVAL)}  # make_nop (finds no BL), then make_call

    def observe(self, m: Machine) -> dict[str, object]:
        word, lit, r0, r1 = self._final(m)
        return {"site": f"{word:#010x}", "literal": m.image.symbolize(lit),
                "results": (r0, r1)}

    def check(self, m: Machine) -> list[Finding]:
        """Both updates returned, and their result is no serial order's: an update
        validated the site, then the other changed it or its literal in between."""
        if any(c.state.value != "off" for c in m.cpus[:2]):
            return []
        final = self._final(m)
        if final in self._serial(m):
            return []
        word, lit, r0, r1 = final
        site = m.addr("ftrace_site")
        return [Finding(
            OracleName.NOT_LINEARIZABLE,
            f"ftrace_make_call returned {r0} and ftrace_make_nop {r1}, leaving "
            f"{m.image.symbolize(site)} = {word:#010x} with the literal pointing at "
            f"{m.image.symbolize(lit)}: no order of the two updates gives that (a "
            "callsite and its ops out of step)", addr=site)]


class FtraceUpdateNoMutex(FtraceUpdateLocked):
    name = "ftrace_update_no_mutex"
    description = "ftrace_update_locked without text_mutex: a lost update"
    no_mutex = 1
    expect = OracleName.NOT_LINEARIZABLE


class CallOpsPlain(CallOps):
    name = "call_ops_plain"
    description = "call_ops with a plain literal store on module text: stale ops (arm)"
    literal_plain = 1
    direct = 1
    expect = OracleName.STALE_LITERAL
