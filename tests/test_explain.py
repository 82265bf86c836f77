"""The access probe and the explanations, on real runs of the real scenarios.

The probe's values are checked against the machine itself: after each step, the
register a load wrote (when nothing else in that step wrote it), the memory a store
wrote, the status register of a store-exclusive.  The explanations are checked for
the steps, symbols and values of the run they explain, read from its events and
accesses, not from a text written in advance.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from conftest import MachineFactory

from testbed import layout
from testbed.explain import AccessProbe, decode_access, explain, explain_lines, explain_replay
from testbed.findings import EventKind, Finding
from testbed.machine import XREG, GuestError, Machine
from testbed.scenario import Session, load_scenario
from testbed.schedule import Decision, DecisionKind, Schedule
from testbed.scheduler import RunResult, run
from testbed.strategies import RandomWalk, RoundRobin
from testbed.textpoke import read_ring
from testbed.timeline import Access, AccessKind, data_name, render, site_name

_CS = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
_CS.detail = True


@functools.cache
def found(name: str, oracle: str) -> tuple[Session, Schedule]:
    """A session of ``name`` (its own number of CPUs) and the first random schedule
    (seed 0, 1, ...) with a finding of ``oracle``."""
    session = Session(load_scenario(name)())
    for seed in range(300):
        result = session.run(RandomWalk(seed))
        if any(f.oracle == oracle for f in result.findings):
            return session, result.schedule
    raise AssertionError(f"no {oracle} finding in 300 schedules of {name}")


@dataclass
class Probed:
    session: Session
    result: RunResult
    accesses: list[Access]
    finding: Finding

    def story(self) -> str:
        return " ".join(explain(self.result, self.session.image, self.finding, self.accesses))

    def addr(self, name: str) -> int:
        return self.session.image.addr(name)


def probed(name: str, oracle: str) -> Probed:
    session, schedule = found(name, oracle)
    probe = AccessProbe()
    result = session.replay(schedule, wrap=probe)
    f = next(f for f in result.findings if f.oracle == oracle)
    return Probed(session, result, probe.accesses, f)


# ------------------------------------------------------------- checking against the machine

@dataclass
class After:
    """The machine right after one access's step."""

    access: Access
    regs: dict[str, int]
    memory: bytes | None


@dataclass
class Checker:
    """Wraps a probed strategy; after each step, keeps the stepping CPU's registers and
    the memory its access touched, for ``verify``."""

    inner: Any
    probe: AccessProbe
    after: list[After] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def begin(self, m: Machine) -> None:
        self.after = []
        self.inner.begin(m)

    def choose(self, m: Machine) -> Decision | None:
        done = self.probe.accesses
        if done and done[-1].step == m.step_no and (not self.after
                                                    or self.after[-1].access.step != m.step_no):
            a = done[-1]
            try:
                mem: bytes | None = m.read(a.addr, a.end - a.addr)
            except GuestError:
                mem = None
            regs = m.registers(a.cpu, [f"x{i}" for i in range(31)])
            self.after.append(After(a, regs, mem))
        return self.inner.choose(m)  # type: ignore[no-any-return]

    def describe(self) -> dict[str, object]:
        return dict(self.inner.describe())


def _number(reg: str) -> int | None:
    return int(reg[1:]) if reg[:1] in ("w", "x") and reg[1:].isdigit() else None


def verify(result: RunResult, after: list[After]) -> Counter[str]:
    """Compare each access with the machine after its step; count what was checked."""
    checked: Counter[str] = Counter()
    truth = result.ground_truth()
    ran: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for cpu, seq in enumerate(truth):
        for step, addr, word in seq:
            ran.setdefault((cpu, step), []).append((addr, word))
    for entry in after:
        a = entry.access
        first, *rest = ran[(a.cpu, a.step)]
        assert first[0] == a.pc, f"access at step {a.step} is not CPU{a.cpu}'s operation"
        written: set[int] = set()
        for addr, word in rest:
            for insn in _CS.disasm(word.to_bytes(4, "little"), addr, 1):
                written |= {n for r in insn.regs_access()[1]
                            if (n := _number(insn.reg_name(r))) is not None}
        insn = next(_CS.disasm(first[1].to_bytes(4, "little"), first[0], 1))
        regs = [insn.reg_name(op.reg) for op in insn.operands if op.type == 1]  # REG
        if a.kind is AccessKind.LOAD:
            plan = decode_access(first[1])
            assert plan is not None
            for dest, value in zip(plan.dests, a.loaded, strict=True):
                n = _number(dest)
                if n is not None and n not in written:
                    assert entry.regs[f"x{n}"] == value, (a, dest)
                    checked["load"] += 1
        if a.writes and entry.memory is not None:
            n = a.size
            got = tuple(int.from_bytes(entry.memory[i:i + n], "little")
                        for i in range(0, len(entry.memory), n))
            assert got == a.stored, a
            checked["store"] += 1
        if a.exclusive and a.kind is AccessKind.STORE:
            status = _number(regs[0])
            if status is not None and status not in written:
                assert (entry.regs[f"x{status}"] == 0) is a.ok, a
                checked["store-exclusive"] += 1
    return checked


@pytest.mark.parametrize("name", ["nosync_stale", "brk_single_slot", "brk_refcount_sync",
                                  "jump_label_kick", "torn_write"])
def test_probe_values_agree_with_the_machine(name: str) -> None:
    session = Session(load_scenario(name)(), ncpus=2)
    probe = AccessProbe()
    total: Counter[str] = Counter()
    for seed in range(4):
        checker = Checker(probe(RandomWalk(seed)), probe)
        result = session.run(checker)
        assert len(probe.accesses) == len(checker.after) > 0
        total += verify(result, checker.after)
    assert total["load"] > 10 and total["store"] > 10, total
    if name == "brk_refcount_sync":  # the refcount is dropped with LDAXR/STLXR
        assert total["store-exclusive"] > 0, total


@pytest.mark.parametrize("name", ["nosync_stale", "brk_refcount_sync", "jump_label_kick"])
def test_every_visible_memory_operation_has_one_access_at_its_step(name: str) -> None:
    session = Session(load_scenario(name)(), ncpus=2)
    probe = AccessProbe()
    result = session.run(probe(RandomWalk(5)))
    at = {(a.step, a.cpu): a for a in probe.accesses}
    assert len(at) == len(probe.accesses)
    entered = {(e.step, e.cpu) for e in result.events
               if e.kind in (EventKind.EXCEPTION, EventKind.IRQ)}
    expected = set()
    for cpu, seq in enumerate(result.ground_truth()):
        last = -1
        for step, addr, word in seq:
            if step != last and (step, cpu) not in entered:  # the step's operation
                plan = decode_access(word)
                if plan is not None and (word >> 5) & 31 != 31:  # not SP-based
                    expected.add((step, cpu))
                    assert at[(step, cpu)].pc == addr
            last = step
    assert set(at) == expected


def test_probe_does_not_change_the_run() -> None:
    session, schedule = found("brk_single_slot", "brk-emulation")
    plain = session.replay(schedule)
    digest, findings = plain.trace_digest(), [f.signature() for f in plain.findings]
    probe = AccessProbe()
    again = session.replay(schedule, wrap=probe)
    assert again.trace_digest() == digest and [f.signature() for f in again.findings] == findings
    assert again.schedule.decisions == schedule.decisions and probe.accesses
    a = session.run(RandomWalk(11))
    b = session.run(probe(RandomWalk(11)))
    assert b.schedule == a.schedule and b.trace_digest() == a.trace_digest()


# ------------------------------------------------------------------ the values themselves

def test_patch_done_is_stored_as_1_and_read_as_1_before_the_stale_run() -> None:
    p = probed("nosync_stale", "stale-after-flush")
    flag = p.addr("patch_done")
    stores = [a for a in p.accesses if a.addr == flag and a.kind is AccessKind.STORE]
    assert [a.cpu for a in stores] == [0] and stores[-1].stored == (1,)
    assert stores[-1].mnemonic == "stlr" and stores[-1].release
    loads = [a for a in p.accesses if a.addr == flag and a.kind is AccessKind.LOAD
             and a.step < p.finding.step]
    assert all(a.cpu == 1 and a.acquire and a.mnemonic == "ldar" for a in loads)
    # Before the store CPU1 reads 0, after it 1: the D-side is sequentially consistent.
    assert all(a.loaded == ((1,) if a.step > stores[-1].step else (0,)) for a in loads)
    assert loads[-1].loaded == (1,)
    # The patch itself: CPU0's store of the new instruction, through the text alias.
    site = p.addr("patch_site")
    text = [e for e in p.result.events if e.kind is EventKind.TEXT_STORE]
    (patch,) = [a for a in p.accesses if a.step == text[0].step and a.cpu == 0]
    assert patch.addr == site - layout.TEXT_BASE + layout.TEXT_ALIAS
    assert patch.stored == (p.finding.words[1],)


def test_brk_handler_loads_what_the_patcher_stored_in_between() -> None:
    p = probed("brk_single_slot", "brk-emulation")
    insn = p.addr("nosync_insn")
    handler = p.addr("text_poke_single_handler")
    loads = [a for a in p.accesses if a.addr == insn and a.kind is AccessKind.LOAD
             and a.cpu == p.finding.cpu and handler <= a.pc < handler + 0x40]
    wrong = [a for a in loads if a.loaded == (p.finding.words[0],)]
    assert wrong, loads
    load = wrong[0]
    stores = [a for a in p.accesses if a.addr == insn and a.kind is AccessKind.STORE
              and a.step < load.step]
    assert stores and stores[-1].cpu == 0 and stores[-1].stored == load.loaded
    brks = [e.step for e in p.result.events if e.kind is EventKind.EXCEPTION
            and e.cpu == p.finding.cpu and e.addr == p.finding.addr and e.step < load.step]
    assert brks and stores[-1].step > brks[-1]  # the patcher changed the slot after the BRK


# A program exercising the addressing modes, pairs, sign extension and exclusives.
MODES = """
    .text
    .global modes
modes:
    ldr     x0, =buf
    mov     x2, #2
    mov     w3, #-1
    ldr     w1, [x0]
    ldr     x4, [x0, #8]
    ldr     x4, [x0, #8]!
    ldr     x4, [x0], #8
    ldr     w4, [x0, x2, lsl #2]
    ldr     w4, [x0, w3, sxtw #2]
    ldp     w4, w5, [x0]
    ldrsb   x4, [x0]
    ldrsh   w4, [x0, #2]
    ldaxr   w4, [x0]
    add     w4, w4, #1
    stlxr   w6, w4, [x0]
    stp     w4, w5, [x0, #-8]!
    strb    w3, [x0, #3]
    ldr     x1, =buf
    mov     w7, #3
    str     x3, [x1, w7, uxtw #3]
    ret
    .data
    .align  3
    .global buf
buf:
    .quad   0x8877665544332211, 0x1122334455667788, 0xfedcba98f0e1d2c3, 0x0102030405060708
"""


def test_addressing_modes(make_machine: MachineFactory) -> None:
    m = make_machine(MODES, ncpus=1, starts=[(0, "modes", ())])
    probe = AccessProbe()
    run(m, probe(RoundRobin()), scenario="modes")
    buf = m.image.addr("buf")
    *mine, off = probe.accesses  # the last: cpu_off switching the CPU off
    assert data_name(m.image, off.addr) == "GIC_CPU_OFF" and off.kind is AccessKind.STORE
    got = [(a.mnemonic, a.addr - buf, a.kind.value, a.loaded, a.stored, a.ok) for a in mine]
    assert got == [
        ("ldr", 0, "load", (0x44332211,), (), None),
        ("ldr", 8, "load", (0x1122334455667788,), (), None),
        ("ldr", 8, "load", (0x1122334455667788,), (), None),  # pre-index: x0 = buf + 8
        ("ldr", 8, "load", (0x1122334455667788,), (), None),  # post-index: then buf + 16
        ("ldr", 24, "load", (0x05060708,), (), None),  # [x0, x2, lsl #2]
        ("ldr", 12, "load", (0x11223344,), (), None),  # [x0, w3, sxtw #2]: w3 = -1
        ("ldp", 16, "load", (0xF0E1D2C3, 0xFEDCBA98), (), None),
        ("ldrsb", 16, "load", (0xFFFF_FFFF_FFFF_FFC3,), (), None),
        ("ldrsh", 18, "load", (0xFFFFF0E1,), (), None),
        ("ldaxr", 16, "load", (0xF0E1D2C3,), (), None),
        ("stlxr", 16, "store", (), (0xF0E1D2C4,), True),
        ("stp", 8, "store", (), (0xF0E1D2C4, 0xFEDCBA98), None),  # pre-index, a pair
        ("strb", 11, "store", (), (0xFF,), None),
        ("str", 24, "store", (), (0xFFFFFFFF,), None),  # [x1, w7, uxtw #3]
    ]
    assert probe.accesses[9].acquire and probe.accesses[10].release
    assert probe.accesses[10].exclusive and probe.accesses[9].exclusive


class _FakeCpu:
    def __init__(self, pc: int, regs: dict[str, int]) -> None:
        import unicorn
        self.pc = pc
        self.stack = bytearray(layout.STACK_SIZE)
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)  # type: ignore
        for name, value in regs.items():
            self.uc.reg_write(XREG[int(name[1:])], value)


class _FakeMachine:
    """Just what the probe reads, for atomics: the emulated CPU (Cortex-A72) has no LSE,
    so the registers are a Unicorn CPU's that runs nothing."""

    def __init__(self, word: int, regs: dict[str, int], memory: int) -> None:
        self.ncpus, self.step_no, self.text_size, self.events = 1, 0, 0x1000, []
        self.cpus = [_FakeCpu(layout.TEXT_BASE, regs)]
        self.word, self.memory = word, memory
        self.model = self

    def fetch(self, cpu: int, off: int) -> int:
        return self.word

    def pending_kind(self, cpu: int) -> Any:
        from testbed.isa import OpKind
        return OpKind.MEMORY

    def read(self, addr: int, size: int) -> bytes:
        return (self.memory >> 8 * (addr - layout.DATA_BASE)).to_bytes(16, "little")[:size]


@pytest.mark.parametrize(("word", "regs", "memory", "loaded", "stored", "order"), [
    (0xB8E10002, {"w1": 5}, 7, (7,), (12,), "al"),  # ldaddal w1, w2, [x0]
    (0xB821001F, {"w1": 5}, 7, (7,), (12,), ""),  # stadd w1, [x0]
    (0xF8A18002, {"x1": 1 << 40}, 7, (7,), (1 << 40,), "a"),  # swpa x1, x2, [x0]
    (0x88E1FC02, {"w1": 7, "w2": 9}, 7, (7,), (9,), "al"),  # casal w1, w2, [x0]: equal
    (0x88E1FC02, {"w1": 6, "w2": 9}, 7, (7,), (), "al"),  # casal: not equal, no store
    (0x48247C06, {"x4": 1, "x5": 2, "x6": 3, "x7": 4}, 1 | 2 << 64, (1, 2), (3, 4), ""),
    (0xB8214002, {"w1": 0xFFFFFFFE}, 1, (1,), (1,), ""),  # ldsmax w1, w2: -2 < 1
    (0x38211002, {"w1": 0x0F}, 0x1FF, (0xFF,), (0xF0,), ""),  # ldclrb: a byte
    (0xB8217002, {"w1": 3}, 5, (5,), (3,), ""),  # ldumin
    (0x78212002, {"w1": 0xFFFF}, 0x1234, (0x1234,), (0xEDCB,), ""),  # ldeorh
    (0xF8213002, {"x1": 0xF0}, 0x0F, (0x0F,), (0xFF,), ""),  # ldset x1, x2
])
def test_atomics(word: int, regs: dict[str, int], memory: int, loaded: tuple[int, ...],
                 stored: tuple[int, ...], order: str) -> None:
    m = _FakeMachine(word, {"x0": layout.DATA_BASE, **regs}, memory)
    probe = AccessProbe()
    probe.begin(m)  # type: ignore[arg-type]
    probe.before(m, Decision(DecisionKind.STEP, 0))  # type: ignore[arg-type]
    m.step_no = 1  # the step was applied
    (a,) = probe.accesses
    assert (a.kind, a.addr, a.loaded, a.stored) == (AccessKind.RMW, layout.DATA_BASE, loaded,
                                                   stored)
    assert (a.acquire, a.release) == ("a" in order, "l" in order)
    if a.mnemonic.startswith("cas"):
        assert a.ok is bool(stored)


def test_no_access_for_prefetch_and_stack() -> None:
    assert decode_access(0xF9800000) is None  # prfm pldl1keep, [x0]
    assert decode_access(0xD503201F) is None  # nop
    plan = decode_access(0xB9400001)  # ldr w1, [x0]
    assert plan is not None and plan.dests == ("w1",) and plan.base == "x0" and plan.size == 4


# ------------------------------------------------------------------------- the stories

def _between(p: Probed, addr: int, kind: AccessKind, cpu: int) -> Access:
    return [a for a in p.accesses if a.addr == addr and a.kind is kind and a.cpu == cpu
            and a.step < p.finding.step][-1]


@pytest.mark.parametrize(("name", "oracle", "flag"), [
    ("nosync_stale", "stale-after-flush", "patch_done"),
    ("jump_label_nosync", "static-key-incoherence", "jl_key_flipped"),
])
def test_explain_a_stale_run(name: str, oracle: str, flag: str) -> None:
    p = probed(name, oracle)
    f = p.finding
    why = p.story()
    site = site_name(p.session.image, f.addr)
    patch = [e for e in p.result.events if e.kind is EventKind.TEXT_STORE and e.addr == f.addr]
    store = _between(p, p.addr(flag), AccessKind.STORE, 0)
    load = _between(p, p.addr(flag), AccessKind.LOAD, f.cpu)
    assert f"to {site} at step {patch[0].step}" in why
    assert f"stored 0x1 to {flag} at step {store.step}" in why
    assert f"CPU{f.cpu} loaded 0x1 from {flag} at step {load.step}" in why
    assert f"So at step {f.step} CPU{f.cpu} executed `nop` at {site}" in why
    syncs = [e.step for e in p.result.events if e.cpu == f.cpu and e.step < f.step
             and e.kind in (EventKind.EXCEPTION, EventKind.ERET)]
    if not syncs and not any(w == 0xD5033FDF for s, _, w in p.result.ground_truth()[f.cpu]
                             if s < f.step):
        assert f"CPU{f.cpu} had no context synchronization event before step {f.step}" in why
    # Without accesses: no values, and it says how to get them.
    bare = " ".join(explain(p.result, p.session.image, f))
    assert f"at step {patch[0].step}" in bare and "access probe" in bare
    assert f"loaded 0x1 from {flag}" not in bare


def test_explain_brk_emulation() -> None:
    p = probed("brk_single_slot", "brk-emulation")
    f = p.finding
    why = p.story()
    insn = p.addr("nosync_insn")
    wrong = next(a for a in p.accesses if a.addr == insn and a.cpu == f.cpu
                 and a.loaded == (f.words[0],))
    store = [a for a in p.accesses if a.addr == insn and a.kind is AccessKind.STORE
             and a.step < wrong.step][-1]
    brk = [e.step for e in p.result.events if e.kind is EventKind.EXCEPTION and e.cpu == f.cpu
           and e.addr == f.addr and e.step < wrong.step][-1]
    site = site_name(p.session.image, f.addr)
    assert f"CPU{f.cpu} hit the BRK at {site} at step {brk}" in why
    assert f"loaded {f.words[0]:#x} from nosync_insn at step {wrong.step}" in why
    assert f"CPU0 stored {f.words[0]:#x} to nosync_insn at step {store.step}" in why
    assert f"instead of {f.words[1]:#010x}" in why


def test_explain_torn_word_and_cmodx() -> None:
    p = probed("torn_write", "torn-word")
    halves = [e for e in p.result.events if e.kind is EventKind.TEXT_STORE]
    why = p.story()
    assert len(halves) == 2 and all(f"at step {e.step}" in why for e in halves)
    assert f"executed {p.finding.words[0]:#010x} at torn_site" in why
    assert "2 pieces" in why
    p = probed("cmodx_violation", "cmodx-violation")
    (store,) = [e for e in p.result.events if e.kind is EventKind.TEXT_STORE]
    why = p.story()
    assert f"stored `sub w5, w5, #1` over add_site at step {store.step}" in why
    assert f"at step {p.finding.step} CPU{p.finding.cpu} fetched add_site" in why


def test_explain_trace_decode() -> None:
    session, schedule = found("text_poke_pre_post", "trace-decode")
    result, _, lines, _ = explain_replay(session, schedule)
    f = next(f for f in result.findings if f.oracle == "trace-decode")
    text = " ".join(lines)
    recs = [r for r in read_ring(session.machine) if r.addr == f.addr]
    assert len(recs) == 2
    assert f"a PRE at step {recs[0].time} and a POST at step {recs[1].time}" in text
    assert f"At step {f.step} CPU{f.cpu} ran" in text


def test_explain_liveness_says_where_each_cpu_waits() -> None:
    session = Session(load_scenario("brk_refcount_sync")(), ncpus=2)
    probe = AccessProbe()
    result = session.run(probe(RandomWalk(5)), max_decisions=150)  # a run that spins
    (f,) = result.findings
    assert f.oracle == "liveness"
    # The run chose a 151st decision and did not apply it: no access for it.
    assert probe.accesses[-1].step <= result.decisions == 150
    why = " ".join(explain(result, session.image, f, probe.accesses))
    assert "CPU0 was last at" in why and "CPU1 was last at" in why
    spin = re.search(r"waiting for (\S+) to change: it loaded (0x[0-9a-f]+) from it", why)
    assert spin, why
    addr = session.image.addr(spin.group(1))
    last = [a for a in probe.accesses if a.addr == addr and a.kind is AccessKind.LOAD][-1]
    assert f"{last.loaded[0]:#x}" == spin.group(2)


def test_explain_a_scenarios_own_oracle() -> None:
    p = probed("nosync_stale", "stale-after-flush")
    f = Finding("my-check", "something", cpu=1, addr=p.addr("patch_site"), step=p.finding.step)
    why = " ".join(explain(p.result, p.session.image, f, p.accesses))
    assert f"The my-check finding is dated step {f.step}, on CPU1 at patch_site" in why
    last = [a for a in p.accesses if a.cpu == 1 and a.step <= f.step][-1]
    assert f"at step {last.step}" in why


def test_explain_replay_is_the_replay_with_values_and_why() -> None:
    session, schedule = found("nosync_stale", "stale-after-flush")
    plain = session.replay(schedule)
    digest = plain.trace_digest()
    result, accesses, lines, _ = explain_replay(session, schedule)
    assert result.trace_digest() == digest
    assert lines[0].startswith("Why: CPU0 stored `b site_new`")
    assert all(len(line) <= 88 for line in lines)
    text = render(result, session.image, 2, accesses=accesses)
    assert "<- 0x1 from patch_done" in text and "!! stale-after-flush  <== FINDING" in text
    assert lines == explain_lines(result, session.image, accesses)
    # Several findings: a paragraph each, named.
    session, schedule = found("jump_label_nosync", "static-key-incoherence")
    result, accesses, lines, _ = explain_replay(session, schedule)
    heads = [line for line in lines if line.startswith("Why")]
    assert len(heads) == len({(f.oracle, f.addr) for f in result.findings}) > 1
    assert all(h.startswith("Why (static-key-incoherence, step ") for h in heads)


def test_probe_costs_at_most_a_few_plain_replays() -> None:
    session, schedule = found("brk_single_slot", "brk-emulation")

    def once(wrap: AccessProbe | None) -> float:  # CPU time: other processes do not count
        t0 = time.process_time()
        session.replay(schedule, wrap=wrap)
        return time.process_time() - t0

    probe = AccessProbe()
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(9):  # interleaved: a busy machine slows both alike
        times[False].append(once(None))
        times[True].append(once(probe))
    plain, with_probe = min(times[False]), min(times[True])
    assert with_probe < 3 * plain, (plain, with_probe)  # measured: 1.1 to 1.8 times
