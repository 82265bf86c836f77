"""stop_machine patching of a non-CMODX pair: correct under every schedule tried."""

from __future__ import annotations

from testbed.findings import EventKind
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk

SUB_W5 = 0x510004A5


def test_stop_machine_patch_has_no_finding_and_really_races() -> None:
    session = Session(load_scenario("stop_machine_patch")())
    site = session.image.addr("sm_site")
    ran_new = 0
    for seed in range(400):
        result = session.run(RandomWalk(seed, p_model=0.1))
        assert result.findings == [] and result.finished, result.findings
        assert result.observations == {"patched": SUB_W5, "result": 0}
        # Both other CPUs were stopped by the IPI, and only then did the patch land.
        irq = [e for e in result.events if e.kind is EventKind.IRQ]
        store = next(e for e in result.events if e.kind is EventKind.TEXT_STORE)
        assert {e.cpu for e in irq} == {1, 2}
        assert all(e.step < store.step for e in irq)
        gt = result.ground_truth()
        ran_new += any(a == site and w == SUB_W5 for cpu in (1, 2) for _, a, w in gt[cpu])
    assert ran_new > 20  # workers ran the patched site after stop_machine, not only before
