"""Engine throughput on ``jump_label_nosync``, one core, and the raw-Unicorn ceiling.

For 2, 8 and 32 CPUs (32: ``JumpLabelWide``, the same kernel code with room for the
logs), under the sequentially consistent data side and through the compiled hooks
(``testbed/_fastpath.c``), a fixed set of random-walk seeds (``RandomWalk(seed)``, its
default probabilities) is run several times in one process:

* deterministic counts: decisions, emulated instructions, schedules (identical on
  every machine, and checked by tests/test_bench.py);
* decisions/s, instructions/s, schedules/s, each the median of the repetitions with
  its spread;
* reset cost per schedule (``Machine.reset``, timed inside the same runs) and the share
  of the time spent inside Unicorn's ``uc_emu_start`` (a separate pass, timed per call,
  without the compiled walker, whose runs do not pass through ``Cpu.start``);
* for 2 CPUs, the cost split into a per-decision and a per-schedule part, from the same
  seeds with 12 and 48 iterations of the workers' loop.

The runs go through the compiled walker where it applies (``scheduler._walker``: a random
walk under sc).  For 2 CPUs the same seeds also run through the compiled hooks without
the walker, the pure-Python hooks (``TESTBED_FASTPATH=0``), and under the Arm data-memory
model, side by side (``paths_2cpus``).

The ceiling: one Unicorn instance runs the scenario's worker loop (``jl_worker``, the
same linked image) with no scheduler, no hooks and no memory model, timed in the same
process, so the ratio says what the scheduler, the hooks and the model cost.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import unicorn as uc_mod
from unicorn import arm64_const as A

from testbed import emulator, layout
from testbed.asm import Image
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk

from .sections import Options, Report
from .workloads import JumpLabelWide

TITLE = "engine throughput on jump_label_nosync, one core"
TARGET_DECISIONS_PER_S = 300_000
TARGET_SCHEDULES_PER_S = 2_000  # issue 15: "at least 300,000 decisions/s and 2,000 schedules/s"
_Uc: Any = uc_mod.Uc  # type: ignore[attr-defined]


def _spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def _session(ncpus: int, iterations: int | None = None, memory: str = "sc",
             compiled: bool = True, walker: bool = True) -> Session:
    """The workload under ``memory``, through the compiled hooks or the pure-Python ones
    (``TESTBED_FASTPATH``, read when the machine is built); ``walker``: with the compiled
    walker where it applies (``scheduler._walker``)."""
    scenario: Any = load_scenario("jump_label_nosync")() if ncpus <= 8 else JumpLabelWide()
    if iterations is not None:
        scenario.iterations = iterations
    before = os.environ.get("TESTBED_FASTPATH")
    os.environ["TESTBED_FASTPATH"] = "1" if compiled else "0"
    try:
        session = Session(scenario, ncpus=ncpus, memory=memory)
    finally:
        if before is None:
            del os.environ["TESTBED_FASTPATH"]
        else:
            os.environ["TESTBED_FASTPATH"] = before
    if compiled and not session.machine.fastpath:
        raise RuntimeError("the compiled fast path was not built: reinstall with a C compiler")
    if not walker:
        session.machine.walk_function = False
    return session


def _counts(session: Session, seeds: range) -> dict[str, int]:
    decisions = instructions = findings = 0
    for seed in seeds:
        r = session.run(RandomWalk(seed))
        decisions += r.decisions
        instructions += r.instructions
        findings += bool(r.findings)
    return {"schedules": len(seeds), "decisions": decisions, "instructions": instructions,
            "schedules_with_findings": findings}


def _timed_batches(session: Session, seeds: range, repeats: int
                   ) -> tuple[list[float], list[float], list[float]]:
    """Wall time of each batch of ``seeds``, the time ``reset`` took in it, and the
    batch's CPU time (``process_time``: less disturbed by other processes)."""
    m = session.machine
    reset = m.reset
    spent = [0.0]

    def timed_reset() -> None:
        t = time.perf_counter()
        reset()
        spent[0] += time.perf_counter() - t

    m.reset = timed_reset  # type: ignore[method-assign]
    batch, resets, cpu = [], [], []
    try:
        for _ in range(repeats):
            spent[0] = 0.0
            c0, t0 = time.process_time(), time.perf_counter()
            for seed in seeds:
                session.run(RandomWalk(seed))
            batch.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            resets.append(spent[0])
    finally:
        del m.reset
    return batch, resets, cpu


def _unicorn_share(session: Session, seeds: range) -> dict[str, float]:
    """Time inside uc_emu_start over the whole run time, and emu_start calls per decision
    (without the compiled walker, whose runs do not go through ``Cpu.start``)."""
    m = session.machine
    spent = [0.0, 0]
    originals = [c.start for c in m.cpus]
    walker, m.walk_function = m.walk_function, False

    def wrap(start: Callable[[int, int, int], None]) -> Callable[[int, int, int], None]:
        def timed(begin: int, until: int, count: int) -> None:
            t = time.perf_counter()
            try:
                start(begin, until, count)
            finally:
                spent[0] += time.perf_counter() - t
                spent[1] += 1
        return timed

    for c in m.cpus:
        c.start = wrap(c.start)
    try:
        decisions = 0
        t0 = time.perf_counter()
        for seed in seeds:
            decisions += session.run(RandomWalk(seed)).decisions
        total = time.perf_counter() - t0
    finally:
        for c, start in zip(m.cpus, originals, strict=True):
            c.start = start
        m.walk_function = walker
    return {"share_of_time": spent[0] / total, "calls_per_decision": spent[1] / decisions,
            "us_per_call": spent[0] / spent[1] * 1e6}


def measure(ncpus: int, runs: int, repeats: int, memory: str = "sc",
            compiled: bool = True, walker: bool = True) -> dict[str, Any]:
    session = _session(ncpus, memory=memory, compiled=compiled, walker=walker)
    seeds = range(runs)
    walked = session.machine.walked
    counts = _counts(session, seeds)  # also warms the translation caches
    walked = session.machine.walked - walked
    batch, resets, cpu = _timed_batches(session, seeds, repeats)
    d, i = counts["decisions"], counts["instructions"]
    return {
        "cpus": ncpus, "scenario": session.scenario.name, "runs": runs, "repeats": repeats,
        "memory": memory, "compiled": compiled,
        "walker": compiled and memory == "sc" and walker,
        "walked_share": walked / max(1, counts["decisions"]),
        "counts": counts,
        "decisions_per_s": _spread([d / t for t in batch]),
        "instructions_per_s": _spread([i / t for t in batch]),
        "schedules_per_s": _spread([runs / t for t in batch]),
        "decisions_per_cpu_s": _spread([d / t for t in cpu]),
        "schedules_per_cpu_s": _spread([runs / t for t in cpu]),
        "us_per_decision": _spread([t / d * 1e6 for t in batch]),
        "reset_us_per_schedule": _spread([t / runs * 1e6 for t in resets]),
        "reset_share": statistics.median(r / t for r, t in zip(resets, batch, strict=True)),
        "unicorn": _unicorn_share(session, seeds),
    }


def split(runs: int, repeats: int) -> dict[str, Any]:
    """Cost per decision and per schedule (CPU time) from the slope between two workloads."""
    points = []
    for iterations in (12, 48):
        session = _session(2, iterations)
        seeds = range(runs)
        counts = _counts(session, seeds)
        _, _, cpu = _timed_batches(session, seeds, repeats)
        points.append((counts["decisions"], statistics.median(cpu)))
    (d0, t0), (d1, t1) = points
    per_decision = (t1 - t0) / (d1 - d0)
    per_schedule = (t0 - per_decision * d0) / runs
    return {"iterations": [12, 48], "decisions": [d0, d1],
            "us_per_decision": per_decision * 1e6, "us_per_schedule": per_schedule * 1e6}


# -- the ceiling: raw Unicorn, one CPU, no scheduling ------------------------------------
def _raw_cpu(image: Image, iterations: int, count: int, log_hook: bool
             ) -> tuple[Any, Callable[[], None]]:
    """A bare Unicorn instance with the image mapped, ready to run jl_worker once."""
    u: Any = _Uc(uc_mod.UC_ARCH_ARM64, uc_mod.UC_MODE_ARM)
    text = image.text + bytes(-len(image.text) % layout.PAGE)
    u.mem_map(layout.TEXT_BASE, len(text), uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC)
    u.mem_write(layout.TEXT_BASE, text)
    u.mem_map(layout.DATA_BASE, layout.DATA_SIZE)
    u.mem_write(layout.DATA_BASE, image.data)
    u.mem_map(layout.STACK_BASE, layout.STACK_SIZE)
    flipped = image.addr("jl_key_flipped")
    u.mem_write(flipped, (1).to_bytes(4, "little"))  # the worker leaves its wait at once
    log = -(-(layout.DATA_BASE + len(image.data)) // layout.PAGE) * layout.PAGE
    if log + 4 * iterations > layout.DATA_BASE + layout.DATA_SIZE:
        raise ValueError(f"{iterations} iterations do not fit the shared memory's log")
    entry, back = image.addr("jl_worker"), image.addr("cpu_off")
    if log_hook:  # what the machine adds to every block: the ground-truth log
        blocks: list[tuple[int, int, int]] = []

        def on_block(handle: int, addr: int, size: int, key: int) -> None:
            blocks.append((0, addr, addr + size))

        emulator.add_hook(u, uc_mod.UC_HOOK_BLOCK, on_block, layout.TEXT_BASE,
                          layout.TEXT_BASE + len(text) - 1)

    def once() -> None:
        u.reg_write(A.UC_ARM64_REG_SP, layout.STACK_BASE + layout.STACK_SIZE)
        u.reg_write(A.UC_ARM64_REG_X0, iterations)
        u.reg_write(A.UC_ARM64_REG_X1, log)
        u.reg_write(A.UC_ARM64_REG_X30, back)
        if log_hook:
            blocks.clear()
        u.emu_start(entry, back, 0, count)

    return u, once


def _raw_instructions(image: Image, iterations: int) -> int:
    u, once = _raw_cpu(image, iterations, 0, False)
    n = [0]

    def count(uc: Any, addr: int, size: int, data: Any) -> None:
        n[0] += size // 4

    u.hook_add(uc_mod.UC_HOOK_BLOCK, count)
    once()
    return n[0]


def ceiling(image: Image, iterations: int, repeats: int) -> dict[str, Any]:
    instructions = _raw_instructions(image, iterations)
    out: dict[str, Any] = {"code": "jl_worker (jump_label_nosync's worker loop)",
                           "iterations": iterations, "instructions_per_call": instructions}
    for name, count, hook in (("free", 0, False), ("budget", 1 << 40, False),
                              ("budget_block_log", 1 << 40, True)):
        _, once = _raw_cpu(image, iterations, count, hook)
        once()  # translate
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
        out[name] = _spread([instructions / t for t in times])
    return out


# -- the section -------------------------------------------------------------------------
def run(opts: Options) -> Report:
    if opts.quick:
        plan = {2: (30, 2)}
        split_plan, ceiling_plan = (20, 2), (2_000, 3)
    else:
        plan = {2: (400, 9), 8: (100, 7), 32: (20, 7)}
        split_plan, ceiling_plan = (300, 7), (20_000, 11)
    results = {n: measure(n, runs, repeats) for n, (runs, repeats) in plan.items()}
    runs2, repeats2 = plan[2]
    paths = {f"{memory} {'compiled' if compiled else 'python'}":
             results[2] if (memory, compiled) == ("sc", True)
             else measure(2, runs2, repeats2, memory, compiled)
             for memory in ("sc", "arm") for compiled in (True, False)}
    paths = {"sc compiled": paths["sc compiled"],
             "sc compiled, no walker": measure(2, runs2, repeats2, "sc", True, walker=False),
             **{k: v for k, v in paths.items() if k != "sc compiled"}}
    image = _session(2).image
    roof = ceiling(image, *ceiling_plan)
    cut = split(*split_plan)
    two = results[2]
    data: dict[str, Any] = {
        "strategy": "RandomWalk(seed), default p_model=0.05, p_irq=0.25; seeds 0..runs-1",
        "by_cpus": {str(n): r for n, r in results.items()},
        "paths_2cpus": paths,
        "compiled_over_python": {
            memory: paths[f"{memory} compiled"]["decisions_per_cpu_s"]["median"]
            / paths[f"{memory} python"]["decisions_per_cpu_s"]["median"]
            for memory in ("sc", "arm")},
        "walker_over_hooks": paths["sc compiled"]["decisions_per_cpu_s"]["median"]
        / paths["sc compiled, no walker"]["decisions_per_cpu_s"]["median"],
        "ceiling": roof,
        "split_2cpus": cut,
        "targets": {"decisions_per_s": TARGET_DECISIONS_PER_S,
                    "schedules_per_s": TARGET_SCHEDULES_PER_S,
                    "decisions_per_s_reached":
                        two["decisions_per_s"]["median"] >= TARGET_DECISIONS_PER_S,
                    "schedules_per_s_reached":
                        two["schedules_per_s"]["median"] >= TARGET_SCHEDULES_PER_S},
        "engine_over_ceiling": two["instructions_per_s"]["median"] / roof["free"]["median"],
        "engine_over_block_hook_tier":
            two["instructions_per_s"]["median"] / roof["budget_block_log"]["median"],
    }
    return Report(data, _table(results, roof, cut) + _paths_table(paths))


def _fmt(d: dict[str, float], scale: float = 1.0, digits: int = 0) -> str:
    med, lo, hi = d["median"] * scale, d["min"] * scale, d["max"] * scale
    return f"{med:,.{digits}f} ({lo:,.{digits}f} .. {hi:,.{digits}f})"


def _table(results: dict[int, dict[str, Any]], roof: dict[str, Any],
           cut: dict[str, Any]) -> list[str]:
    cols = sorted(results)
    rows: list[tuple[str, list[str]]] = [
        ("seeds x repeats", [f"{results[n]['runs']} x {results[n]['repeats']}" for n in cols]),
        ("decisions / schedule (deterministic)",
         [f"{results[n]['counts']['decisions'] / results[n]['runs']:,.1f}" for n in cols]),
        ("instructions / schedule (deterministic)",
         [f"{results[n]['counts']['instructions'] / results[n]['runs']:,.1f}" for n in cols]),
        ("decisions/s", [_fmt(results[n]["decisions_per_s"]) for n in cols]),
        ("emulated instructions/s", [_fmt(results[n]["instructions_per_s"]) for n in cols]),
        ("schedules/s", [_fmt(results[n]["schedules_per_s"]) for n in cols]),
        ("decisions per CPU-second", [_fmt(results[n]["decisions_per_cpu_s"]) for n in cols]),
        ("schedules per CPU-second", [_fmt(results[n]["schedules_per_cpu_s"]) for n in cols]),
        ("us per decision", [_fmt(results[n]["us_per_decision"], digits=2) for n in cols]),
        ("reset us per schedule", [_fmt(results[n]["reset_us_per_schedule"], digits=1)
                                   for n in cols]),
        ("time inside uc_emu_start", [f"{results[n]['unicorn']['share_of_time']:.0%}"
                                      for n in cols]),
    ]
    lines = ["| figure | " + " | ".join(f"{n} CPUs" for n in cols) + " |",
             "|---|" + "---|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(vals) + " |" for name, vals in rows]
    free, budget, logged = roof["free"], roof["budget"], roof["budget_block_log"]
    two = results[2]["instructions_per_s"]["median"]
    lines += [
        "",
        "| ceiling: raw Unicorn, one CPU, jl_worker, no scheduler | instructions/s |",
        "|---|---|",
        f"| free-running (count=0) | {_fmt(free)} |",
        f"| with Unicorn's instruction count (count>0; the machine's budget until issue 15) "
        f"| {_fmt(budget)} |",
        f"| ... plus a Python block hook (the pure-Python ground-truth log) | {_fmt(logged)} |",
        f"| engine, 2 CPUs, over free-running | {two / free['median']:.1%} |",
        f"| engine, 2 CPUs, over budget + block hook | {two / logged['median']:.1%} |",
        "",
        f"Cost split (2 CPUs, CPU time, {cut['iterations'][0]} vs {cut['iterations'][1]} worker "
        f"iterations, {cut['decisions'][0]:,} vs {cut['decisions'][1]:,} decisions): "
        f"about {cut['us_per_decision']:.2f} us per decision + "
        f"{cut['us_per_schedule']:.0f} us per schedule.",
        f"Targets (2 CPUs): {TARGET_DECISIONS_PER_S:,} decisions/s, "
        f"{TARGET_SCHEDULES_PER_S:,} schedules/s.",
    ]
    return lines


def _paths_table(paths: dict[str, dict[str, Any]]) -> list[str]:
    """2 CPUs: the compiled and the pure-Python hooks side by side, under sc and arm."""
    cols = list(paths)
    rows = [
        ("decisions / schedule (deterministic)",
         [f"{paths[k]['counts']['decisions'] / paths[k]['runs']:,.1f}" for k in cols]),
        ("decisions per CPU-second", [_fmt(paths[k]["decisions_per_cpu_s"]) for k in cols]),
        ("schedules per CPU-second", [_fmt(paths[k]["schedules_per_cpu_s"]) for k in cols]),
        ("us per decision", [_fmt(paths[k]["us_per_decision"], digits=2) for k in cols]),
        ("decisions the walker took", [f"{paths[k]['walked_share']:.0%}" for k in cols]),
        ("time inside uc_emu_start (without the walker)",
         [f"{paths[k]['unicorn']['share_of_time']:.0%}" for k in cols]),
    ]
    lines = ["", "2 CPUs, the same seeds through the compiled hooks (testbed/_fastpath.c), with "
             "and without the compiled walker (TESTBED_WALKER=0), and the pure-Python ones "
             "(TESTBED_FASTPATH=0), under each data-memory model:", "",
             "| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(vals) + " |" for name, vals in rows]
    for memory in ("sc", "arm"):
        c, p = paths[f"{memory} compiled"], paths[f"{memory} python"]
        ratio = c["decisions_per_cpu_s"]["median"] / p["decisions_per_cpu_s"]["median"]
        lines.append(f"{memory}: compiled / pure Python = {ratio:.2f}x (decisions per "
                     "CPU-second, same run).")
    walk = paths["sc compiled"]["decisions_per_cpu_s"]["median"] \
        / paths["sc compiled, no walker"]["decisions_per_cpu_s"]["median"]
    lines.append(f"sc: with the walker / without = {walk:.2f}x (same run).")
    return lines
