"""Module text: module foo unloaded, module bar loaded into the same memory, and a CPU that
branches into bar (``kernels/module.S``).

CPU0 runs ``rmmod foo; insmod bar``: foo's exit unregisters its hook and waits for a
grace period (``kernels/rcu.S``); ``load_module()`` zeroes the memory foo's text held and
copies bar's text in through the writable mapping (``move_module()``),
``flush_module_icache()`` calls ``flush_icache_range()`` over it, ``complete_formation()``
makes it read-only and executable, and bar's init registers bar's hook
(``rcu_assign_pointer()``).  The other CPUs call through the hook in a loop and record
which module's hook they read and what it returned: foo's returns 1, bar's 2.  Every CPU
has foo's instructions in its I-cache and I-view from the start (they ran them before).

* ``module_load``: as arm64 does it since v5.0: ``flush_icache_range()`` is
  ``caches_clean_inval_pou()`` and ``kick_all_cpus_sync()``.  Clean under both data
  models: a CPU that reads bar's hook took the IPI after the maintenance, and the
  exception entry made it fetch bar's instructions.
* ``module_load_no_kick``: ``flush_icache_range()`` without the IPIs, as it was before
  commit 3b8c9f1cdfc5 ("arm64: IPI each CPU after invalidating the I-cache for kernel
  mappings", v5.0), whose message describes this race.  A CPU reads bar's hook and runs
  what it fetched before: foo's ``MOV W0, #1`` in bar's place.  The machine's CMODX
  oracle fires first (the CPU executes a word another CPU stored since its last context
  synchronization event, and ``MOV`` is not an instruction the architecture lets one
  modify under a running CPU); with it off, the check's ``stale-after-flush``.
* ``module_load_no_flush``: ``flush_module_icache()`` does nothing (no clean, no
  invalidate, no IPI): the same findings.  No arm64 kernel shipped this
  (``flush_module_icache()`` has called ``flush_icache_range()`` since the first arm64
  port); it is what the issue calls "without the cache maintenance".

``flush_skip = 2`` (the parameter behind ``module_flush_skip``, no scenario) keeps only
the IPIs: the CPU is synchronised, but under IDC=0 or IDC=1 its I-cache still holds foo's
line (nothing invalidated it) and the catch-up at the IPI brings foo's instructions back
into its I-view: ``stale-after-flush`` with no CMODX violation (or ``kernel-die``: a line
filled between the memset and the copy holds zeroes, a UDF).  Under DIC=1 it is clean:
the stores invalidated the line.  So each half of ``flush_icache_range()`` is needed.

The search scope is two calls per CPU: the first call's quiescent state ends foo's grace
period, so only a second call can come after bar's hook is registered.
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.layout import TEXT_BASE
from testbed.machine import Machine
from testbed.scenario import Scenario

IPI_CALL_FUNC = 1  # kernels/smp.S
MODULE_LOG_SHIFT = 7  # kernels/module.S: per CPU, 8 records of {ops, result}
MAX_CALLS = (1 << MODULE_LOG_SHIFT) // 16
FOO_RESULT, BAR_RESULT = 1, 2


class ModuleLoad(Scenario):
    name = "module_load"
    description = "module foo unloaded, bar loaded in its place, flush_icache_range: correct"
    kernels = ("boot.S", "insn.S", "smp.S", "rcu.S", "cacheflush.S", "module.S")
    ncpus = 2
    calls = 8  # module.S logs 8 at most
    skip_kick = 0  # flush_icache_skip_kick: flush_icache_range() without the IPIs
    flush_skip = 0  # module_flush_skip: 1 no flush_module_icache(), 2 only the IPIs
    expect: ClassVar[str | tuple[str, ...] | None] = None
    search_scope: ClassVar[dict[str, int]] = {"calls": 2}
    # `testbed ablate` may drop the flush, its IPIs and the grace period
    ablatable = ("flush_icache_range", "kick_all_cpus_sync", "synchronize_rcu_tasks")

    def setup(self, m: Machine) -> None:
        if not 1 <= self.calls <= MAX_CALLS:
            raise ValueError(f"calls={self.calls}: module.S logs 1 to {MAX_CALLS} calls")
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        for knob, value in (("flush_icache_skip_kick", self.skip_kick),
                            ("module_flush_skip", self.flush_skip)):
            m.write(m.addr(knob), value.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_CALL_FUNC,
                m.addr("ipi_call_function").to_bytes(8, "little"))
        m.start(0, "module_reload", m.addr("foo_module"), m.addr("bar_module"),
                m.addr("bar_text"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "module_hook_caller", self.calls, cpu)
        m.may_patch("module_text", 8)

    def records(self, m: Machine, cpu: int) -> list[tuple[int, int]]:
        """The {ops, result} records of ``cpu``'s calls, in order (ops 0: no hook)."""
        base = m.addr("module_log") + (cpu << MODULE_LOG_SHIFT)
        raw = m.read(base, 16 * self.calls)
        out = []
        for i in range(self.calls):
            ops = int.from_bytes(raw[16 * i:16 * i + 8], "little")
            result = int.from_bytes(raw[16 * i + 8:16 * i + 12], "little")
            out.append((ops, result))
        return out

    def observe(self, m: Machine) -> dict[str, object]:
        names = {0: "none", m.addr("foo_ops"): "foo", m.addr("bar_ops"): "bar"}
        return {"calls": [[(names.get(ops, f"{ops:#x}"), r) for ops, r in self.records(m, c)]
                          for c in range(1, m.ncpus)],
                "bar_registered": m.read_u64("module_hook") == m.addr("bar_ops")}

    def check(self, m: Machine) -> list[Finding]:
        """A call through bar's hook returned something other than bar's 2: the CPU ran
        instructions it fetched before bar was loaded (foo's, which return 1)."""
        bar_ops, text = m.addr("bar_ops"), m.addr("module_text")
        truth = m.ground_truth()
        for cpu in range(1, m.ncpus):
            records = self.records(m, cpu)
            called = [(ops, r) for ops, r in records if ops]
            bad = next((i for i, (ops, r) in enumerate(called)
                        if ops == bar_ops and r != BAR_RESULT), None)
            if bad is None:
                continue
            # the i-th call through a hook is the CPU's i-th run of module_text
            runs = [(step, word) for step, addr, word in truth[cpu] if addr == text]
            step, ran = runs[bad] if bad < len(runs) else (-1, -1)
            foo = int.from_bytes(m.model.initial[text - TEXT_BASE:][:4], "little")
            bar = int.from_bytes(m.read(m.addr("bar_text"), 4), "little")
            what = (f"foo's `mov w0, #{FOO_RESULT}`, fetched before bar was loaded"
                    if ran == foo else "not bar's instruction")
            return [Finding(
                OracleName.STALE_AFTER_FLUSH,
                f"CPU{cpu} called through bar's hook (registered by bar's init once "
                f"load_module() had written bar's text and returned from "
                f"flush_module_icache()) and got {called[bad][1]}, not {BAR_RESULT}: it "
                f"ran {ran:#010x} at {m.image.symbolize(text)}, {what}"
                + (" (it took the IPI, but its I-cache still held foo's line)"
                   if self.flush_skip == 2 else ""),
                cpu=cpu, addr=text, words=(foo, bar), step=step)]
        return []


class ModuleLoadNoKick(ModuleLoad):
    name = "module_load_no_kick"
    description = "module_load, flush_icache_range without the IPIs (before v5.0): stale"
    skip_kick = 1
    expect = (OracleName.CMODX_VIOLATION, OracleName.STALE_AFTER_FLUSH)


class ModuleLoadNoFlush(ModuleLoad):
    name = "module_load_no_flush"
    description = "module_load, no flush_module_icache at all: stale"
    flush_skip = 1
    expect = (OracleName.CMODX_VIOLATION, OracleName.STALE_AFTER_FLUSH)
