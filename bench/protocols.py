"""What one ``static_key_enable()`` costs a machine of N CPUs, under each protocol.

The question the 2019 discussion left open: with 100+ CPU machines, which way of
patching a static key is cheapest?  For N = 2 .. 64 CPUs, CPU0 enables a key with eight
sites (``bench/kernels/jl_cost.S``) while CPUs 1..N-1 run through the sites with IRQs
on, under each protocol of ``workloads.PROTOCOLS``.  The schedule is round-robin
(``testbed.strategies.RoundRobin``: deliverable IRQs first, then the CPUs in turn, one
visible operation each, no memory-model choices), so every figure is a deterministic
count, the same on every machine.

Figures, from the run's ground-truth trace:

* **instructions on the patching CPU**: CPU0's instructions from the first one of
  ``static_key_enable`` to its return (``jl_cost_enable_returned``), its waits included;
* **instructions, all CPUs**: those, plus every instruction the other CPUs executed
  inside an exception taken during the run (see *stalled*): IPI handlers, the
  stop_machine rendezvous and patching callback, BRK handlers;
* **stalled CPU-steps**: a CPU-step is one CPU performing one scheduling step (a
  decision); it is *stalled* when the CPU is not CPU0 and the first instruction it
  executes in that step lies between an exception entry (an instruction in the vector
  table, ``vectors`` .. ``vectors+0x800``) and the ``ERET`` that returns from it, the
  ``ERET`` included.  Only IPIs and BRKs are taken in these runs, so that is time in
  ``handle_ipi`` (``ipi_call_function`` for kick_all_cpus_sync; ``ipi_stop_machine``
  -> ``multi_cpu_stop``'s rendezvous and ``aarch64_insn_patch_text_cb``'s wait for
  stop_machine) or in the BRK handler (``call_break_hook`` ->
  ``text_poke_sync_handler``).  Under round-robin each CPU steps once per round, so
  stalled CPU-steps are CPU-rounds: wall time multiplied by the CPUs it was lost on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from testbed import trace
from testbed.asm import Image
from testbed.isa import ERET
from testbed.strategies import RoundRobin

from .sections import Options, Report
from .workloads import PROTOCOLS, BenchSession, JumpLabelCost, Protocol

TITLE = "cost of one static_key_enable() (8 sites) on N CPUs, round-robin schedule"
CPUS = (2, 4, 8, 16, 32, 64)
QUICK_CPUS = (2, 4)
VECTORS_SIZE = 0x800
METRICS = (("patcher_instructions", "instructions on the patching CPU"),
           ("all_instructions", "instructions, all CPUs"),
           ("stalled_cpu_steps", "stalled CPU-steps (other CPUs)"))


def _symbol(image: Image, addr: int) -> str:
    return image.symbolize(addr).split("+", 1)[0]


def analyse(image: Image, initial: bytes, logs: list[list[tuple[int, int, int]]]
            ) -> dict[str, Any]:
    """The figures of one run from its raw ground-truth logs (see the module doc)."""
    patcher = trace.expand(initial, logs[:1])[0]
    enter, back = image.addr("static_key_enable"), image.addr("jl_cost_enable_returned")
    i0 = next(i for i, (_, addr, _) in enumerate(patcher) if addr == enter)
    i1 = next(i for i in range(i0, len(patcher)) if patcher[i][1] == back)
    t0, t1 = patcher[i0][0], patcher[i1][0]
    vec = image.addr("vectors")
    erets = {line.addr for line in image.listing if line.is_insn and line.word == ERET}
    stalled = handler_insns = 0
    where: Counter[str] = Counter()
    for log in logs[1:]:
        inside, last = False, -1
        for step, start, end in log:
            if start < 0:  # an I-view change, not code run
                continue
            if vec <= start < vec + VECTORS_SIZE:
                inside = True
            if step != last:
                last = step
                if inside:
                    stalled += 1
                    where[_symbol(image, start)] += 1
            if inside:
                handler_insns += (end - start) >> 2
                if end - 4 in erets:  # ERET ends its block
                    inside = False
    patcher_insns = i1 - i0
    return {
        "patcher_instructions": patcher_insns,
        "all_instructions": patcher_insns + handler_insns,
        "stalled_cpu_steps": stalled,
        "other_cpus_handler_instructions": handler_insns,
        "enable_window_steps": t1 - t0,
        "patcher_cpu_steps": len({s for s, _, _ in patcher[i0:i1]}),
        "stalled_by_function": dict(where.most_common()),
    }


def measure(protocol: Protocol, ncpus: int) -> dict[str, Any]:
    session = BenchSession(JumpLabelCost(protocol), ncpus)
    result = session.run(RoundRobin())
    if result.findings or not result.finished:
        raise RuntimeError(f"{protocol.name} on {ncpus} CPUs: "
                           + ("; ".join(f.message for f in result.findings)
                              or "the run did not finish"))
    out = analyse(session.image, result.initial_text, result.logs)
    out.update(decisions=result.decisions, instructions=result.instructions)
    return out


def run(opts: Options) -> Report:
    cpus = QUICK_CPUS if opts.quick else CPUS
    table = {p.name: {str(n): measure(p, n) for n in cpus} for p in PROTOCOLS}
    plot = opts.out / ("quick-protocols.png" if opts.quick else "protocols.png")
    _plot(table, cpus, plot)
    data = {"schedule": "round-robin (testbed.strategies.RoundRobin)", "sites": 8,
            "cpus": list(cpus), "protocols": {p.name: p.label for p in PROTOCOLS},
            "by_protocol": table, "plot": plot.name}
    return Report(data, _table(table, cpus, plot))


def _table(table: dict[str, dict[str, dict[str, Any]]], cpus: tuple[int, ...],
           plot: Path) -> list[str]:
    lines = ["| figure | protocol | " + " | ".join(f"N={n}" for n in cpus) + " |",
             "|---|---|" + "---:|" * len(cpus)]
    for key, label in METRICS:
        for p in PROTOCOLS:
            vals = " | ".join(f"{table[p.name][str(n)][key]:,}" for n in cpus)
            lines.append(f"| {label} | {p.label} | {vals} |")
    lines += [
        "",
        "One `static_key_enable()` of a key with 8 sites; CPU0 patches, CPUs 1..N-1 run "
        "through the sites with IRQs on; round-robin schedule (deterministic counts).",
        "*Instructions on the patching CPU*: CPU0, from `static_key_enable` to its "
        "return, waits included. *All CPUs*: plus every instruction other CPUs ran "
        "inside an exception (IPI or BRK handler, stop_machine rendezvous). *Stalled "
        "CPU-steps*: scheduling steps of CPUs other than CPU0 whose first instruction "
        "lies between an exception entry (`vectors`) and its `ERET` (one per CPU per "
        "round-robin round). stop_machine per site: `aarch64_insn_patch_text()` for "
        "each entry; all sites at once: one `aarch64_insn_patch_text()` with 8 entries "
        "(`arch_jump_label_transform_queue`/`_apply`).",
        f"Plot: `{plot.name}` in the results folder.",
    ]
    return lines


def _plot(table: dict[str, dict[str, dict[str, Any]]], cpus: tuple[int, ...],
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.6))
    for ax, (key, label) in zip(axes, METRICS, strict=True):
        for p in PROTOCOLS:
            ys = [max(table[p.name][str(n)][key], 1) for n in cpus]
            ax.plot(cpus, ys, marker="o", label=p.label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(cpus, [str(n) for n in cpus])
        ax.set_xlabel("CPUs (N)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("One static_key_enable() of an 8-site key, round-robin schedule "
                 "(stalled: 0 plotted as 1)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
