"""The scenarios the benchmarks run, beyond the project's own (bench-only: not collected).

* ``JumpLabelWide``: ``jump_label_nosync`` unchanged, but with the workers' logs in free
  shared memory, so that it runs on up to ``layout.MAX_CPUS`` CPUs (the scenario's
  ``jl_log`` holds 7).
* ``JumpLabelCost``: one ``static_key_enable()`` over a key with eight sites
  (``bench/kernels/jl_cost.S``) under one of the ``PROTOCOLS``, every other CPU running
  through the sites with IRQs on.
* ``BenchSession``: a ``Session`` for a scenario whose kernels are not all in
  ``kernels/``, linked once per process and shared by every machine size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from testbed import layout
from testbed.asm import Image, link_files
from testbed.findings import Finding
from testbed.machine import Machine
from testbed.memory import CacheType, FetchConfig
from testbed.resources import kernels_dir
from testbed.scenario import Scenario, load_scenario
from testbed.scheduler import RunResult, run
from testbed.strategies import Strategy

__all__ = ["PROTOCOLS", "BenchSession", "JumpLabelCost", "JumpLabelWide", "Protocol"]

BENCH_KERNELS = Path(__file__).resolve().parent / "kernels"
IPI_CALL_FUNC, IPI_STOP = 1, 2
BRK_HOOK_IMM = 7  # text_poke_brk.S writes BRK #7

_JumpLabelNosync: type[Scenario] = load_scenario("jump_label_nosync")


class JumpLabelWide(_JumpLabelNosync):  # type: ignore[valid-type,misc]
    """jump_label_nosync on 2..MAX_CPUS CPUs: the same kernel code, the logs moved."""

    name = "jump_label_nosync_wide"
    description = "jump_label_nosync with room for MAX_CPUS - 1 workers' logs"
    LOG_BYTES = 4 * 64  # per worker, as jl_log

    def prepare_logs(self, m: Machine) -> None:
        image_end = layout.DATA_BASE + len(m.image.data)
        self._log_base = -(-image_end // layout.PAGE) * layout.PAGE
        # Written once so that the machine's saved states cover the logs.
        m.write(self._log_base, bytes(self.LOG_BYTES * (m.ncpus - 1)))

    def _log(self, m: Machine, cpu: int) -> int:
        return int(self._log_base + self.LOG_BYTES * (cpu - 1))


@dataclass(frozen=True)
class Protocol:
    """How static_key_enable() patches: jump_label_patch_mode and what it plugs in."""

    name: str  # a key for JSON and plots
    label: str  # for tables
    mode: int  # jump_label_patch_mode (kernels/jump_label.S)
    patch_fn: str = ""  # jump_label_patch_fn (mode bit 5)
    apply_fn: str = ""  # jump_label_apply_fn (mode bit 6)
    brk: bool = False  # the BRK handler is hooked in (text_poke_sync_handler)


PROTOCOLS = (
    Protocol("nosync", "nosync (v5.0-v6.10)", 0),
    Protocol("kick", "nosync + kick_all_cpus_sync (v6.11)", 1),
    Protocol("brk", "BRK, descriptor + refcount + kicks", 8, brk=True),
    Protocol("stop_machine", "stop_machine per site", 32, patch_fn="jl_cost_patch_stop_machine"),
    Protocol("stop_machine_batch", "stop_machine, all sites at once", 32 | 64,
             patch_fn="jl_cost_queue", apply_fn="jl_cost_apply_stop_machine"),
)


class JumpLabelCost(Scenario):
    """CPU0: one static_key_enable() of an eight-site key; CPUs 1..N-1 run the sites."""

    name = "jl_cost"
    description = "one static_key_enable() over eight sites, under a chosen protocol"
    kernels = ("boot.S", "insn.S", "smp.S", "jump_label.S", "@jl_cost.S", "broken_patch.S",
               "text_poke_brk.S", "perf.S", "nosync_race.S", "stop_machine.S")
    ncpus = 2
    cache = CacheType.IDC0
    sites = 8
    def __init__(self, protocol: Protocol = PROTOCOLS[0]) -> None:
        self.protocol = protocol

    def setup(self, m: Machine) -> None:
        p = self.protocol
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        m.write(m.addr("jump_label_patch_mode"), p.mode.to_bytes(4, "little"))
        for symbol, fn in (("jump_label_patch_fn", p.patch_fn),
                           ("jump_label_apply_fn", p.apply_fn)):
            if fn:
                m.write(m.addr(symbol), m.addr(fn).to_bytes(8, "little"))
        for ipi, handler in ((IPI_CALL_FUNC, "ipi_call_function"),
                             (IPI_STOP, "ipi_stop_machine")):
            m.write(m.addr("ipi_handlers") + 8 * ipi, m.addr(handler).to_bytes(8, "little"))
        if p.brk:
            hook = (m.addr("text_poke_sync_handler"), BRK_HOOK_IMM, 0)  # {fn, imm, mask}
            m.write(m.addr("break_hooks"), b"".join(v.to_bytes(8, "little") for v in hook))
            m.write(m.addr("text_poke_brk_ipis"), (1).to_bytes(4, "little"))
        m.start(0, "jl_cost_patcher", m.addr("jl_cost_key"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "jl_cost_worker")

    def check(self, m: Machine) -> list[Finding]:
        out = []
        for i in range(self.sites):
            site = m.addr(f"jl_cost_site_{i}")
            want = _b(site, m.addr(f"jl_cost_site_{i}_yes"))
            if int.from_bytes(m.read(site, 4), "little") != want:
                out.append(Finding("bench", f"jl_cost_site_{i} was not patched", addr=site))
        if m.read_u32("jl_cost_key") != 1:
            out.append(Finding("bench", "static_key_enable() did not complete"))
        return out


def _b(pc: int, target: int) -> int:
    return 0x1400_0000 | ((target - pc) >> 2) & 0x3FF_FFFF


@cache
def _link(kernels: tuple[str, ...]) -> Image:
    paths = [BENCH_KERNELS / k[1:] if k.startswith("@") else kernels_dir() / k
             for k in kernels]
    return link_files(paths, text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE,
                      defines=layout.ASM_DEFINES)


class BenchSession:
    """A scenario on a machine of ``ncpus`` CPUs; kernel names starting with ``@`` are
    read from ``bench/kernels/``.  Like ``testbed.scenario.Session`` otherwise."""

    def __init__(self, scenario: Scenario, ncpus: int | None = None, *,
                 budget: int = 200_000) -> None:
        self.scenario = scenario
        self.image = _link(scenario.kernels)
        self.machine = Machine(self.image, ncpus or scenario.ncpus,
                               FetchConfig(scenario.cache), budget=budget)
        scenario.setup(self.machine)
        self.machine.seal()

    def run(self, strategy: Strategy, *, max_decisions: int = 2_000_000) -> RunResult:
        m = self.machine
        result = run(m, strategy, scenario=self.scenario.name, max_decisions=max_decisions)
        result.findings.extend(self.scenario.check(m))
        return result
