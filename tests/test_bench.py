"""The benchmarks run (``python -m bench --quick``) and their deterministic counts hold.

No timing is asserted: wall-time figures depend on the machine.  The counts of the
protocol table are exact (round-robin schedules): if a kernel change moves them, re-run
``python -m bench`` and update the README's Performance section and the numbers here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import runner  # noqa: E402
from bench.sections import SECTIONS  # noqa: E402
from bench.workloads import BENCH_KERNELS, PROTOCOLS, BenchSession, JumpLabelCost  # noqa: E402
from testbed.resources import kernels_dir  # noqa: E402
from testbed.scenario import Session, load_scenario  # noqa: E402
from testbed.strategies import RandomWalk  # noqa: E402

# (patcher instructions, all-CPU instructions, stalled CPU-steps) for N = 2 and 4.
PROTOCOL_COUNTS = {
    "nosync": {"2": (893, 893, 0), "4": (893, 893, 0)},
    "kick": {"2": (923, 997, 10), "4": (931, 1165, 36)},
    "brk": {"2": (2829, 5101, 336), "4": (2905, 9875, 1084)},
    "stop_machine": {"2": (1901, 3373, 360), "4": (2061, 6765, 1224)},
    "stop_machine_batch": {"2": (1179, 1763, 205), "4": (1199, 2987, 633)},
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    assert runner.main(["--quick", "--out", str(out)]) == 0
    results: dict[str, Any] = json.loads((out / "quick.json").read_text())
    results["_out"] = str(out)
    return results


def test_quick_run_writes_every_section(quick: dict[str, Any]) -> None:
    out = Path(quick["_out"])
    assert quick["quick"] is True and quick["machine"]["cores"]
    assert list(quick["sections"]) == list(SECTIONS)
    for name, sec in quick["sections"].items():
        assert sec["table"], name
        if "skipped" not in sec:
            assert sec["data"] and sec["seconds"] >= 0, name
    text = (out / "quick.txt").read_text()
    assert "## engine" in text and "## protocols" in text and "## memory" in text
    assert (out / "quick-protocols.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "latest.json").exists()  # a quick run never replaces the figures


def test_engine_counts_are_deterministic(quick: dict[str, Any]) -> None:
    data = quick["sections"]["engine"]["data"]
    two = data["by_cpus"]["2"]
    counts = two["counts"]
    assert counts["schedules"] == two["runs"] and counts["decisions"] > 10 * two["runs"]
    # The same seeds again, on a fresh session: the same counts.
    session = Session(load_scenario("jump_label_nosync")(), ncpus=2, memory="sc")
    decisions = instructions = 0
    for seed in range(two["runs"]):
        r = session.run(RandomWalk(seed))
        decisions += r.decisions
        instructions += r.instructions
    assert (decisions, instructions) == (counts["decisions"], counts["instructions"])
    for key in ("decisions_per_s", "schedules_per_s", "reset_us_per_schedule"):
        d = two[key]
        assert 0 < d["min"] <= d["median"] <= d["max"], key
    paths = data["paths_2cpus"]
    assert list(paths) == ["sc compiled", "sc compiled, no walker", "sc python",
                           "arm compiled", "arm python"]
    for memory in ("sc", "arm"):  # both paths make the same decisions
        assert paths[f"{memory} compiled"]["counts"] == paths[f"{memory} python"]["counts"]
    assert paths["sc compiled"]["counts"] == paths["sc compiled, no walker"]["counts"]
    assert paths["sc compiled"]["walked_share"] > 0.5  # the walker took most decisions
    assert paths["sc compiled, no walker"]["walked_share"] == 0
    roof = data["ceiling"]
    assert roof["instructions_per_call"] > 0 and roof["free"]["median"] > 0
    assert 0 < data["split_2cpus"]["decisions"][0] < data["split_2cpus"]["decisions"][1]


def test_baseline_section_measures_both_codes_on_the_same_seeds(quick: dict[str, Any]) -> None:
    """The code before issue 15 from the history (or, outside a full git checkout, the
    reason it is not there) against this checkout: the same schedules, their own
    decision counts (the same as this code's engine figures for the seeds here)."""
    data = quick["sections"]["baseline"]["data"]
    if "skipped" in data:
        assert data["skipped"] and data["baseline"] == "8a42e99"
        return
    assert data["baseline"] == "8a42e99" and data["seeds"] == 20
    session = Session(load_scenario("jump_label_nosync")(), ncpus=2, memory="sc")
    assert data["decisions"]["now"] == sum(session.run(RandomWalk(seed)).decisions
                                           for seed in range(20))
    assert data["decisions"]["baseline"] > data["decisions"]["now"]  # (no folded steps)
    for label in ("baseline", "now"):
        assert len(data["schedules_per_cpu_s"][label]) == data["rounds"]
        assert data["median"][label] > 0
    assert data["ratio"] == data["median"]["now"] / data["median"]["baseline"]


def test_protocol_counts(quick: dict[str, Any]) -> None:
    table = quick["sections"]["protocols"]["data"]["by_protocol"]
    got = {p: {n: (r["patcher_instructions"], r["all_instructions"], r["stalled_cpu_steps"])
               for n, r in by_n.items()} for p, by_n in table.items()}
    assert got == PROTOCOL_COUNTS
    for by_n in table.values():
        for r in by_n.values():
            assert r["all_instructions"] >= r["patcher_instructions"]
            assert sum(r["stalled_by_function"].values()) == r["stalled_cpu_steps"]


def test_stop_machine_stalls_inside_its_rendezvous(quick: dict[str, Any]) -> None:
    r = quick["sections"]["protocols"]["data"]["by_protocol"]["stop_machine"]["4"]
    assert {"multi_cpu_stop", "aarch64_insn_patch_text_cb"} <= set(r["stalled_by_function"])


def test_protocol_model_figures(quick: dict[str, Any]) -> None:
    from testbed import timing

    data = quick["sections"]["protocols"]["data"]
    table = data["by_protocol"]
    assert data["parameters"] == timing.Params().shown()
    assert set(data["parameter_sources"]) == set(timing.Params().shown())
    assert len(data["parameter_sets"]) == 16
    for name, by_n in table.items():
        for n, r in by_n.items():
            assert r["latency_us"] > 0 and r["stalled_cpu_us"] >= 0, (name, n)
            assert ("sweep" in r) == (n == "4"), (name, n)  # the quick sweep: N = 4
            assert r["model"]["patcher"]["ipi_targets"] == r["ipi_targets"]
    assert table["nosync"]["4"]["stalled_cpu_us"] == 0 == table["nosync"]["4"]["ipi_targets"]
    assert table["kick"]["4"]["ipi_targets"] == 3  # one per other CPU
    found = data["conclusions"]
    assert set(found) == {"latency_us@4", "stalled_cpu_us@4"}
    for c in found.values():
        assert sorted(c["ranking"]) == sorted(table) and c["sets"] == 16
    text = "\n".join(quick["sections"]["protocols"]["table"])
    assert "modelled patcher latency (us)" in text and "`ipi_deliver_ns`" in text
    assert "holds under all" in text or "swap under" in text


def test_protocol_run_in_a_fresh_process_gives_the_same_figures(quick: dict[str, Any]) -> None:
    from bench.protocols import measure

    child = quick["sections"]["protocols"]["data"]["by_protocol"]["kick"]["4"]
    assert child["fresh_process"] and child["peak_mib"] >= child["peak_mib_built"] > 0
    here = measure(PROTOCOLS[1], 4, sweep=True)
    for key in ("patcher_instructions", "all_instructions", "stalled_cpu_steps",
                "decisions", "model", "sweep", "latency_us", "stalled_cpu_us"):
        assert here[key] == child[key], key


def test_memory_rows(quick: dict[str, Any]) -> None:
    rows = quick["sections"]["memory"]["data"]["by_cpus"]
    assert list(rows) == ["2", "8"]
    assert rows["8"]["peak_mib"] > rows["2"]["peak_mib"] > 0


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
def test_every_protocol_patches_every_site_on_eight_cpus(protocol: Any) -> None:
    from testbed.strategies import RoundRobin

    r = BenchSession(JumpLabelCost(protocol), 8).run(RoundRobin())
    assert r.finished and r.findings == []


def test_bench_kernel_matches_gnu_as(tmp_path: Path) -> None:
    from test_asm_gnu import check_against_gnu  # skips without GNU binutils

    from testbed.asm import Source

    names = [k[1:] if k.startswith("@") else k for k in JumpLabelCost.kernels]
    paths = [BENCH_KERNELS / n if n == "jl_cost.S" else kernels_dir() / n for n in names]
    check_against_gnu([Source.from_path(p) for p in paths], tmp_path)


def test_models_section(quick: dict[str, Any]) -> None:
    """arm against sc in the same run: every scenario under both; brk_plain's race is
    found under arm only; no forbidden litmus outcome under either."""
    data = quick["sections"]["models"]["data"]
    rows = data["scenarios"]
    assert set(rows) == {"nosync_stale", "brk_plain"}
    for row in rows.values():
        assert set(row) == {"arm", "sc"}
        assert all(r["decisions_per_schedule"] > 0 for r in row.values())
    plain = rows["brk_plain"]
    assert plain["arm"]["ttff"]["schedules"] and plain["sc"]["ttff"]["schedules"] is None
    lit = data["litmus"]
    if "skipped" not in lit:
        assert lit["arm"]["forbidden_observed"] == lit["sc"]["forbidden_observed"] == 0
        assert lit["arm"]["allowed_observed"] > lit["sc"]["allowed_observed"]



def test_ablation_section(quick: dict[str, Any]) -> None:
    """testbed ablate end to end: the clean, IC and kick points are needed, the table
    has a row per executed point."""
    data = quick["sections"]["ablation"]["data"]
    assert data["scenario"] == "jump_label_kick" and data["points"] == len(data["rows"])
    needed = {r["points"][0]["weakened"] for r in data["rows"] if r["verdict"] == "needed"}
    assert {"dc cvau, x2 -> nop", "ic ivau, x2 -> nop",
            "bl kick_all_cpus_sync -> nop"} <= needed
    assert data["needed"] == len(needed) and data["seconds"] > 0


def test_litmus_section_explores_the_ifetch_tests_and_times_herd7(
        quick: dict[str, Any]) -> None:
    data = quick["sections"]["litmus"]["data"]
    assert data["run"] == data["files"] == 16 and data["not_run"] == 0
    assert data["states"] > 0 and data["cpu_seconds"] > 0 and not data["incomplete"]
    slowest = [r["cpu_seconds"] for r in data["slowest"]]
    assert slowest == sorted(slowest, reverse=True)
    herd = data["herd7"]
    if "skipped" not in herd:  # herd7 decided every file it was given
        assert herd["status"] == 0 and herd["decided"] == data["run"]
        assert data["ratio"] == pytest.approx(data["cpu_seconds"] / herd["cpu_seconds"])


def test_search_section_explores_what_the_corpus_recorded(quick: dict[str, Any]) -> None:
    """The quick search (nosync_isb at 1 preemption, 1 model event) covers its space: the
    search as it was before explores the states the corpus recorded, and the search as
    it is now reaches the same outcomes in no more states."""
    import corpus  # tests/corpus.py

    data = quick["sections"]["search"]["data"]
    for memory in ("sc", "arm"):
        before, now = data["rows"][f"{memory} before"], data["rows"][f"{memory} now"]
        want = next(e for e in corpus.load()["searches"] if (
            e["scenario"], e["memory"], e["preemptions"], e["model_events"],
            e.get("fold", False)) == ("nosync_isb", memory, 1, 1, False))
        assert before["covered"] and now["covered"]
        assert before["states"] == want["states"] and now["states"] <= before["states"]
        assert data["same_outcomes"][memory]
