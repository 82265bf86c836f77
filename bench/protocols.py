"""What one ``static_key_enable()`` costs a machine of N CPUs, under each protocol.

The question the 2019 discussion left open: with 100+ CPU machines, which way of
patching a static key is cheapest?  For N = 2 .. 256 CPUs, CPU0 enables a key with eight
sites (``bench/kernels/jl_cost.S``) while CPUs 1..N-1 run through the sites with IRQs
on, under each protocol of ``workloads.PROTOCOLS``.  The schedule is round-robin
(``testbed.strategies.RoundRobin``: deliverable IRQs first, then the CPUs in turn, one
visible operation each, no memory-model choices), so every count is deterministic, the
same on every machine.

Counts, from the run's ground-truth trace:

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
  stalled CPU-steps are CPU-rounds: wall time multiplied by the CPUs it was lost on;
* from the timing model's replay of the same run (``testbed.timing``): the IPIs the
  patcher sent (one per target CPU) and the cache-line transfers (rule 2) of the patcher
  in its window and of the other CPUs inside their exceptions.

Modelled time (``testbed.timing``, default ``Params``: a Graviton2-like Neoverse N1
server, each parameter's source in ``timing.PARAMETER_SOURCES``): the patcher's
latency, from ``static_key_enable`` to its return, in microseconds, and the
CPU-microseconds the other CPUs spent inside exceptions.  At 128 and 256 CPUs each run
is replayed under every parameter halved and doubled (``parameter_sets``), and the
section says which rankings of the protocols hold under all of them.  The 128- and
256-CPU runs each run in a fresh process (``python -m bench.protocols --child NAME N``),
whose peak RSS is the memory a machine of that size needs.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from testbed import timing, trace
from testbed.asm import Image
from testbed.explain import AccessProbe
from testbed.isa import ERET
from testbed.strategies import RoundRobin

from .memory import _peak_mib  # the one way this bench reads a process's peak RSS
from .sections import Options, Report
from .workloads import PROTOCOLS, BenchSession, JumpLabelCost, Protocol

TITLE = "cost of one static_key_enable() (8 sites) on N CPUs: counts and modelled time"
CPUS = (2, 4, 8, 16, 32, 64, 128, 256)
QUICK_CPUS = (2, 4)
SWEEP_CPUS = (128, 256)  # every parameter set is replayed at these sizes
QUICK_SWEEP_CPUS = (4,)
CHILD_CPUS = (128, 256)  # each run in a fresh process, for its peak RSS
QUICK_CHILD = (("kick", 4),)
MAX_DECISIONS = 50_000_000  # BRK on 256 CPUs takes about 2.6 million
VECTORS_SIZE = 0x800
SWEPT = ("cpi", "line_ns", "dsb_ns", "bcast_ns", "ipi_send_ns", "ipi_deliver_ns",
         "ipi_ack_ns")
COUNT_ROWS = (("patcher_instructions", "instructions on the patching CPU"),
              ("all_instructions", "instructions, all CPUs"),
              ("stalled_cpu_steps", "stalled CPU-steps (other CPUs)"),
              ("ipi_targets", "IPIs sent by the patcher (one per target)"),
              ("transfers", "cache-line transfers (patcher + stalled CPUs)"))
MODEL_ROWS = (("latency_us", "modelled patcher latency (us)"),
              ("stalled_cpu_us", "modelled time stalled, other CPUs (CPU-us)"))
METRICS = COUNT_ROWS[:3]  # the counts the table had before the timing model


def parameter_sets(base: timing.Params | None = None) -> dict[str, timing.Params]:
    """The default parameters, each of ``SWEPT`` halved and doubled, and a broadcast
    whose cost grows linearly with N (equal to the default at 64 CPUs)."""
    base = base or timing.Params()
    sets = {"default": base}
    for name in SWEPT:
        for factor in (0.5, 2.0):
            sets[f"{name} x{factor:g}"] = base.scaled(name, factor)
    sets["bcast linear in N"] = replace(base, bcast_scale_cpus=64)
    return sets


def _symbol(image: Image, addr: int) -> str:
    return image.symbolize(addr).split("+", 1)[0]


def analyse(image: Image, initial: bytes, logs: list[list[tuple[int, int, int]]]
            ) -> dict[str, Any]:
    """The counts of one run from its raw ground-truth logs (see the module doc)."""
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
        "window": [i0, i1],
    }


def model(act: timing.Activity, params: timing.Params, window: list[int]
          ) -> dict[str, Any]:
    """The modelled time of one run under ``params``: the patcher's latency over its
    window and the time the other CPUs spent in exceptions, with what was charged."""
    t = timing.replay(act, params, timed=(0,))
    latency, window_counts = t.between(0, window[0], window[1])
    stalled, stall_counts = t.stalled(range(1, act.ncpus))
    return {"latency_us": latency / 1000, "stalled_cpu_us": stalled / 1000,
            "patcher": window_counts, "stalled": stall_counts,
            "exceptions": sum(t.exceptions[1:])}


def measure(protocol: Protocol, ncpus: int, *, sweep: bool = False) -> dict[str, Any]:
    """One round-robin run: its counts, and its modelled time under the default
    parameters (with ``sweep``, under every one of ``parameter_sets``)."""
    t0 = time.perf_counter()
    session = BenchSession(JumpLabelCost(protocol), ncpus)
    built = _peak_mib()
    probe = AccessProbe()
    result = session.run(probe(RoundRobin()), max_decisions=MAX_DECISIONS)
    if result.findings or not result.finished:
        raise RuntimeError(f"{protocol.name} on {ncpus} CPUs: "
                           + ("; ".join(f.message for f in result.findings)
                              or "the run did not finish"))
    out = analyse(session.image, result.initial_text, result.logs)
    out.update(decisions=result.decisions, instructions=result.instructions)
    act = timing.extract(result.initial_text, result.logs, result.events, probe.accesses,
                         marks={0: out["window"]})
    del probe, result, session
    sets = parameter_sets() if sweep else {"default": timing.Params()}
    runs = {name: model(act, p, out["window"]) for name, p in sets.items()}
    default = runs.pop("default")
    out.update(model=default, ipi_targets=default["patcher"]["ipi_targets"],
               transfers=default["patcher"]["transfers"] + default["stalled"]["transfers"],
               latency_us=default["latency_us"], stalled_cpu_us=default["stalled_cpu_us"],
               waiting_instructions=act.waiting[0], model_items=len(act))
    if sweep:
        out["sweep"] = {name: {"latency_us": r["latency_us"],
                               "stalled_cpu_us": r["stalled_cpu_us"]}
                        for name, r in runs.items()}
    out.update(seconds=round(time.perf_counter() - t0, 2), peak_mib_built=built,
               peak_mib=_peak_mib())
    return out


def measure_in_child(protocol: Protocol, ncpus: int, *, sweep: bool) -> dict[str, Any]:
    """``measure`` in a fresh process: its peak RSS is this run's alone."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "bench.protocols", "--child", protocol.name, str(ncpus)]
    proc = subprocess.run(cmd + (["--sweep"] if sweep else []), cwd=root,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.protocols --child {protocol.name} {ncpus} failed:\n"
                           f"{proc.stderr}")
    out: dict[str, Any] = json.loads(proc.stdout)
    out["fresh_process"] = True
    return out


def run(opts: Options) -> Report:
    cpus = QUICK_CPUS if opts.quick else CPUS
    sweep_cpus = QUICK_SWEEP_CPUS if opts.quick else SWEEP_CPUS
    children = set(QUICK_CHILD) if opts.quick else {
        (p.name, n) for p in PROTOCOLS for n in CHILD_CPUS}
    table: dict[str, dict[str, dict[str, Any]]] = {p.name: {} for p in PROTOCOLS}
    for n in cpus:
        for p in PROTOCOLS:
            sweep = n in sweep_cpus
            table[p.name][str(n)] = (measure_in_child(p, n, sweep=sweep)
                                     if (p.name, n) in children
                                     else measure(p, n, sweep=sweep))
            gc.collect()  # a machine of N CPUs is N Unicorn instances: free it now
    plot = opts.out / ("quick-protocols.png" if opts.quick else "protocols.png")
    _plot(table, cpus, plot)
    found = conclusions(table, sweep_cpus)
    data = {"schedule": "round-robin (testbed.strategies.RoundRobin)", "sites": 8,
            "cpus": list(cpus), "protocols": {p.name: p.label for p in PROTOCOLS},
            "parameters": timing.Params().shown(),
            "parameter_sources": dict(timing.PARAMETER_SOURCES),
            "parameter_sets": {k: v.shown() for k, v in parameter_sets().items()},
            "by_protocol": table, "conclusions": found, "plot": plot.name}
    return Report(data, _table(table, cpus, plot, found, children))


# -- which conclusions hold --------------------------------------------------------------

def conclusions(table: dict[str, dict[str, dict[str, Any]]], cpus: tuple[int, ...]
                ) -> dict[str, Any]:
    """For each figure and CPU count of ``cpus``: the protocols ranked under the default
    parameters, and each pair whose order some parameter set reverses, with those sets."""
    out: dict[str, Any] = {}
    for key, _ in MODEL_ROWS:
        for n in cpus:
            rows = {p: table[p][str(n)] for p in table if "sweep" in table[p][str(n)]}
            if len(rows) < 2:
                continue

            def value(p: str, s: str, rows: dict[str, Any] = rows, key: str = key) -> float:
                r = rows[p]
                return float(r[key] if s == "default" else r["sweep"][s][key])

            names = ["default", *next(iter(rows.values()))["sweep"]]
            ranking = sorted(rows, key=lambda p: value(p, "default"))
            flips = {}
            for a, b in itertools.combinations(ranking, 2):
                sets = [s for s in names if value(a, s) > value(b, s)]
                if sets:
                    flips[f"{a} < {b}"] = sets
            out[f"{key}@{n}"] = {"ranking": ranking, "flips": flips, "sets": len(names)}
    return out


def _sentence(found: dict[str, Any], labels: dict[str, str]) -> list[str]:
    lines = []
    for key, label in MODEL_ROWS:
        what = label.split(" (")[0].replace("modelled ", "")
        for name, c in found.items():
            if not name.startswith(key + "@"):
                continue
            n = name.split("@")[1]
            order = " < ".join(labels[p] for p in c["ranking"])
            if not c["flips"]:
                lines.append(f"- {what}, N={n}: {order}; holds under all {c['sets']} "
                             "parameter sets.")
                continue
            flipped = "; ".join(f"{labels[pair.split(' < ')[0]]} and "
                                f"{labels[pair.split(' < ')[1]]} swap under "
                                f"{', '.join(sets)}" for pair, sets in c["flips"].items())
            lines.append(f"- {what}, N={n}: {order} under the defaults; of the "
                         f"{c['sets']} parameter sets, {flipped}; every other pair keeps "
                         "its order.")
    return lines


# -- the table and the plot ---------------------------------------------------------------

def _fmt(key: str, v: float) -> str:
    if key.endswith("_us"):
        return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
    return f"{v:,}"


def _table(table: dict[str, dict[str, dict[str, Any]]], cpus: tuple[int, ...],
           plot: Path, found: dict[str, Any], children: set[tuple[str, int]]) -> list[str]:
    labels = {p.name: p.label for p in PROTOCOLS}
    lines = ["| figure | protocol | " + " | ".join(f"N={n}" for n in cpus) + " |",
             "|---|---|" + "---:|" * len(cpus)]
    for key, label in COUNT_ROWS + MODEL_ROWS:
        for p in PROTOCOLS:
            vals = " | ".join(_fmt(key, table[p.name][str(n)][key]) for n in cpus)
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
        "*Modelled* (`testbed/timing.py`): the same run replayed with a cost per "
        "operation, polling-loop iterations that found nothing left out; latency from "
        "`static_key_enable` to its return, time stalled from each exception entry of "
        "CPUs 1..N-1 to its `ERET`.",
        f"Plot: `{plot.name}` in the results folder.",
        "",
        "| parameter | default | source |",
        "|---|---:|---|",
    ]
    shown = timing.Params().shown()
    for name, source in timing.PARAMETER_SOURCES:
        lines.append(f"| `{name}` | {shown[name]:g} | {source} |")
    big = max(n for n in cpus if all("sweep" in table[p.name][str(n)] for p in PROTOCOLS))
    lines += ["", f"N={big}, modelled patcher latency (us) / time stalled (CPU-us) under "
              "each parameter set:", "",
              "| parameter set | " + " | ".join(p.label for p in PROTOCOLS) + " |",
              "|---|" + "---:|" * len(PROTOCOLS)]
    for name in parameter_sets():
        cells = []
        for p in PROTOCOLS:
            r = table[p.name][str(big)]
            r = r if name == "default" else r["sweep"][name]
            cells.append(f"{_fmt('latency_us', r['latency_us'])} / "
                         f"{_fmt('stalled_cpu_us', r['stalled_cpu_us'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Which conclusions hold (each parameter of "
              + ", ".join(f"`{s}`" for s in SWEPT) + " halved and doubled, and a broadcast "
              "growing linearly with N):", "", *_sentence(found, labels), "",
              "| protocol | N | s (build, run, model) | peak RSS after building (MiB) | "
              "peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    for name, n in sorted(children, key=lambda c: (c[1], c[0])):
        r = table[name][str(n)]
        lines.append(f"| {labels[name]} | {n} | {r['seconds']:.1f} | "
                     f"{r['peak_mib_built']:,.0f} | {r['peak_mib']:,.0f} |")
    lines += ["", "Peak RSS: `VmHWM` of a fresh process that builds the machine, runs "
              "the schedule with the access probe, and replays it under every parameter "
              "set."]
    return lines


def _plot(table: dict[str, dict[str, dict[str, Any]]], cpus: tuple[int, ...],
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (COUNT_ROWS[0], COUNT_ROWS[2], *MODEL_ROWS)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for p in PROTOCOLS:
            ys = [table[p.name][str(n)][key] or float("nan") for n in cpus]  # log scale
            ax.plot(cpus, ys, marker="o", label=p.label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(cpus, [str(n) for n in cpus])
        ax.set_xlabel("CPUs (N)")
        ax.set_title(("count: " if key in dict(COUNT_ROWS) else "model: ") + label,
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("One static_key_enable() of an 8-site key, round-robin schedule: counts "
                 "(top) and modelled time, default parameters (bottom); zeros (nosync's "
                 "stalls) not plotted", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.protocols")
    p.add_argument("--child", nargs=2, required=True, metavar=("PROTOCOL", "NCPUS"))
    p.add_argument("--sweep", action="store_true")
    args = p.parse_args(argv)
    protocol = next(x for x in PROTOCOLS if x.name == args.child[0])
    print(json.dumps(measure(protocol, int(args.child[1]), sweep=args.sweep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
