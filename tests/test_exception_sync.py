"""FEAT_ExS: whether exception entry (SCTLR_EL1.EIS) and exception return (EOS) are
context synchronization events, per CPU (``Machine.set_exception_sync``).

The program: CPU0 patches ``site`` (``NOP`` -> ``B site_new``, which sets X2 to 1) with
``aarch64_insn_patch_text_nosync`` and then sets a flag; CPU1 waits for the flag, takes
a ``BRK`` whose handler only steps over it (exception entry, then ``ERET``), and runs
``site``.  The patch's maintenance has completed before CPU1 sees the flag, so the only
thing that can make CPU1 fetch the new ``site`` is a context synchronization event, and
there is none but the exception's own: with ``EIS`` or ``EOS`` CPU1 runs the new
instruction; with neither (and no catch-up chosen by the scheduler) the old one."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from testbed.cpu import CpuState
from testbed.exceptions import NOT_SYNCHRONIZING
from testbed.explain import _Run
from testbed.findings import EventKind
from testbed.isa import b
from testbed.machine import GuestError, Machine
from testbed.scenario import Scenario, Session
from testbed.schedule import Decision, DecisionKind, step
from testbed.strategies import Replay

PROGRAM = """
	.text
	.global waiter
waiter:				// x0: &flag
	mov	x2, #0
1:	ldr	w1, [x0]
	cbz	w1, 1b
	brk	#0x77
	.global site
site:
	nop				// patched into B site_new
after:
	ldr	x3, =result
	str	x2, [x3]
	ret

	.global site_new
site_new:
	mov	x2, #1
	b	after

	.global skip_brk
skip_brk:			// a break hook: regs->pc += 4
	ldr	x2, [x0, #256]
	add	x2, x2, #4
	str	x2, [x0, #256]
	mov	x0, #0
	ret

	.global patcher
patcher:			// x0: site, w1: new instruction, x2: &flag
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x2, [sp, #16]
	bl	aarch64_insn_patch_text_nosync
	ldr	x2, [sp, #16]
	mov	w3, #1
	str	w3, [x2]
	ldp	x29, x30, [sp], #32
	ret

	.data
	.balign	8
	.global flag
flag:
	.word	0
	.balign	8
	.global result
result:
	.quad	-1
"""


def _session(tmp_path: Path, entry: bool, exit: bool, memory: str = "sc") -> Session:
    kernel = tmp_path / "exs.S"
    kernel.write_text(PROGRAM)

    class BrkThenSite(Scenario):
        name = "brk_then_site"
        kernels: ClassVar[tuple[str, ...]] = ("boot.S", "insn.S", str(kernel))

        def setup(self, m: Machine) -> None:
            hooks = m.addr("break_hooks")
            m.write(hooks, m.addr("skip_brk").to_bytes(8, "little")
                    + (0x77).to_bytes(8, "little") + (0).to_bytes(8, "little"))
            site = m.addr("site")
            m.start(0, "patcher", site, b(site, m.addr("site_new")), m.addr("flag"))
            m.start(1, "waiter", m.addr("flag"))
            m.may_patch("site")
            m.set_exception_sync(1, entry=entry, exit=exit)

    return Session(BrkThenSite(), memory=memory)


def _serial(session: Session) -> list[Decision]:
    """CPU0 to its end, then CPU1 to its end: no model choice, so no catch-up but the
    ones the CPUs' own instructions force."""
    m = session.machine
    m.reset()
    out: list[Decision] = []
    for cpu in (0, 1):
        while m.cpus[cpu].state is CpuState.RUNNABLE and not m.stopped:
            out.append(step(cpu))
            m.apply(out[-1])
    return out


@pytest.mark.parametrize("memory", ["sc", "arm"])
@pytest.mark.parametrize(("entry", "exit", "new"), [
    (True, True, True),  # as Linux runs (and as without FEAT_ExS)
    (True, False, True),  # the BRK's entry synchronizes
    (False, True, True),  # its ERET does
    (False, False, False),  # neither: CPU1 still runs the NOP it fetched before
])
def test_exception_entry_and_return_synchronize_per_setting(
        tmp_path: Path, memory: str, entry: bool, exit: bool, new: bool) -> None:
    session = _session(tmp_path, entry, exit, memory)
    r = session.run(Replay(_serial(session)))
    assert r.finished and r.findings == []
    assert session.machine.read_u64("result") == (1 if new else 0)
    exc = [e for e in r.events if e.kind is EventKind.EXCEPTION and e.cpu == 1]
    eret = [e for e in r.events if e.kind is EventKind.ERET and e.cpu == 1]
    assert len(exc) == len(eret) == 1
    assert exc[0].detail.startswith(NOT_SYNCHRONIZING) == (not entry)
    assert exc[0].detail.endswith("vector " + hex(session.machine.addr("vectors") + 0x200))
    assert eret[0].detail.startswith(NOT_SYNCHRONIZING) == (not exit)


def test_a_catch_up_the_scheduler_chooses_still_shows_the_new_instruction(
        tmp_path: Path) -> None:
    """EIS=EOS=0 removes the forced catch-ups, not the ones that may happen anyway."""
    session = _session(tmp_path, False, False)
    m = session.machine
    serial = _serial(session)
    k = next(i for i, d in enumerate(serial) if d.cpu == 1)
    with_catch_up = [*serial[:k], Decision(DecisionKind.CATCH_UP, 1), *serial[k:]]
    r = session.run(Replay(with_catch_up))
    assert r.finished and m.read_u64("result") == 1


def test_the_default_is_as_linux_runs_and_other_cpus_are_unaffected(tmp_path: Path) -> None:
    session = _session(tmp_path, False, False)
    m = session.machine
    assert m.eis == [True, False] and m.eos == [True, False]
    fresh = Machine(session.image, 3)
    assert fresh.eis == fresh.eos == [True] * 3
    for cpu in (-1, 3):
        with pytest.raises(GuestError, match="does not exist"):
            fresh.set_exception_sync(cpu, entry=False)
    with pytest.raises(GuestError, match="after seal"):
        m.set_exception_sync(0, entry=False)


@pytest.mark.parametrize(("entry", "exit"), [(True, True), (False, True), (True, False),
                                             (False, False)])
def test_explain_counts_only_synchronizing_exceptions(tmp_path: Path, entry: bool,
                                                      exit: bool) -> None:
    """The timeline's "last context synchronization event" leaves out an exception entry
    or ERET that was not one."""
    session = _session(tmp_path, entry, exit)
    r = session.run(Replay(_serial(session)))
    kinds = [what.split()[0] for _, what in _Run(r, session.image, None, ()).syncs(
        1, r.decisions + 1)]
    assert ("exception" in kinds) == entry and ("ERET" in kinds) == exit, kinds
