"""Running herd litmus tests on the machine, with herd7-shaped verdicts.

Each thread's code is assembled at its own page of text, its labels renamed
``P<n>_<label>`` so that every label is a global symbol: usable as a branch target and
as a data address (a store through it reaches the D-side; fetches see it only through
the fetch model).  A thread ends at ``P<n>__exit``, which switches the CPU off with its
registers intact.  Each thread has its own vector table: its synchronous entries branch
to the thread's fault handler (``P<n>.F``) if it has one, else to its exit.  Memory
locations live in the image's data, eight bytes each.  The cache configuration comes
from the file (``CacheType=``) unless overridden.

Outcomes are counted as distinct final states (herd7 counts candidate executions, so
the Positive/Negative numbers differ from herd7's while Ok/No and the Observation kind
compare directly).
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import traceback
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from unicorn import arm64_const as A

from . import layout
from .access import decode_access, registers_written, slot
from .asm import AsmError, Image, Source, link
from .cpu import Cpu, CpuState
from .exploration import Bounds, Exploration, explore
from .findings import Finding
from .isa import MemKind, OpKind, classify
from .litmus import (
    Atom,
    AtomKind,
    LitmusError,
    LitmusTest,
    LitmusUnsupported,
    Prop,
    Quantifier,
    Value,
    ValueKind,
    atoms,
    evaluate,
    format_prop,
    parse_file,
)
from .machine import Liveness, Machine
from .memory import CacheType, CpuProfile, FetchConfig
from .schedule import Decision
from .strategies import RandomWalk

__all__ = [
    "KIND_OF",
    "Conformance",
    "Listed",
    "LitmusPathError",
    "LitmusProgram",
    "LitmusResult",
    "Outcome",
    "Verdict",
    "VerdictFileError",
    "Verdicts",
    "build",
    "conformance",
    "conformance_json",
    "conformance_text",
    "failure_text",
    "litmus_files",
    "read_verdicts",
    "report_text",
    "results_json",
    "run_many",
    "run_test",
]

NOP = 0xD503201F
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# UDF #imm16 is the word imm16 (Keystone does not know the mnemonic).
_UDF = re.compile(r"UDF\s+#?\s*(0[xX][0-9a-fA-F]+|[0-9]+)", re.IGNORECASE)


@dataclass
class LitmusProgram:
    """A litmus test mapped onto a machine."""

    test: LitmusTest
    image: Image
    machine: Machine
    cache: CacheType
    observed: tuple[Atom, ...]  # the atoms whose values make up a final state
    _instr_cache: dict[str, int] = field(default_factory=dict)
    # The text addresses where a store of the test may put an instruction
    # (``_store_targets``); ``None``: every label.
    patchable: frozenset[int] | None = None

    def label(self, thread: int, name: str) -> int:
        return self.image.addr(_label(thread, name))

    def location(self, name: str) -> int:
        return self.image.addr(_loc(name))

    def resolve(self, v: Value) -> int:
        """The number a litmus value stands for on this machine."""
        if v.kind is ValueKind.INT:
            return v.number & (2**64 - 1)
        if v.kind is ValueKind.LABEL:
            return self.label(v.thread, v.name)
        if v.kind is ValueKind.LOCATION:
            return self.location(v.name)
        return _encode(v.text, self._instr_cache, self.test.path)

    def value_of(self, m: Machine, atom: Atom) -> int:
        if atom.kind is AtomKind.REG:
            return m.registers(atom.thread, [atom.reg])[atom.reg]
        return m.read_u64(self.location(atom.loc))

    def observe(self, m: Machine) -> tuple[tuple[str, int], ...]:
        state = tuple((_atom_name(a), self.value_of(m, a)) for a in self.observed)
        if m.findings:
            state += (("fault", len(m.findings)),)
        return state

    def holds(self, state: tuple[tuple[str, int], ...], prop: Prop) -> bool:
        values = dict(state)
        return evaluate(prop, lambda a: values[_atom_name(a)] == self.resolve(a.value))

    def show(self, name: str, value: int) -> str:
        """A value as herd prints it: labels by name, small numbers in decimal."""
        for (thread, label), addr in self.labels.items():
            if addr == value:
                return f"P{thread}:{label}"
        if value == NOP:
            return "NOP"
        return str(value) if value < 0x10000 else f"{value:#x}"

    @cached_property
    def labels(self) -> dict[tuple[int, str], int]:
        """Every label of every thread and handler: (thread, name) -> address."""
        out = {}
        for t in (*self.test.threads, *self.test.handlers.values()):
            for line in t.lines:
                for lab in line.labels:
                    out[(t.index, lab)] = self.label(t.index, lab)
        return out


def _label(thread: int, name: str) -> str:
    return f"P{thread}_{name}"


def _loc(name: str) -> str:
    return f"loc_{name}"


def _atom_name(a: Atom) -> str:
    return f"{a.thread}:{a.reg}" if a.kind is AtomKind.REG else a.loc


def _encode(text: str, cache: dict[str, int], path: str) -> int:
    if text.upper() == "NOP":
        return NOP
    if text not in cache:
        try:
            img = link([Source(f"{path}: instr:\"{text}\"", f"\t.text\n\t{text}\n")],
                       text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE)
        except AsmError as e:
            raise LitmusError(path, 0, f"instr:\"{text}\": {e.reason}") from None
        cache[text] = int.from_bytes(img.text[:4], "little")
    return cache[text]


def _source(test: LitmusTest) -> tuple[str, dict[int, int]]:
    """The whole test as one assembly file, and generated line -> litmus line."""
    out = ["\t.text"]
    origin: dict[int, int] = {}  # index in out -> line of the litmus file
    ncpus = len(test.threads)
    for t in test.threads:
        i = t.index
        labels = {lab for line in t.lines for lab in line.labels}
        handler = test.handlers.get(i)
        if handler is not None:
            hlabels = {lab for line in handler.lines for lab in line.labels}
            clash = labels & hlabels
            if clash:
                raise LitmusUnsupported(test.path, handler.lines[0].line if handler.lines else 0,
                                        f"unsupported: label {sorted(clash)[0]} defined in both "
                                        f"P{i} and P{i}.F")
            labels |= hlabels

        def rename(text: str, labels: set[str] = labels, i: int = i) -> str:
            udf = _UDF.fullmatch(text.strip())
            if udf is not None and int(udf.group(1), 0) <= 0xFFFF:
                return f".word {int(udf.group(1), 0):#x}"
            mnemonic, _, operands = text.strip().partition(" ")
            if not operands:
                return mnemonic
            return mnemonic + " " + _IDENT.sub(
                lambda mo: _label(i, mo.group(0)) if mo.group(0) in labels else mo.group(0),
                operands)

        out += ["\t.align\t12", f"P{i}__start:"]
        for line in t.lines:
            out += [f"{_label(i, lab)}:" for lab in line.labels]
            if line.text:
                origin[len(out)] = line.line
                out.append(f"\t{rename(line.text)}")
        out += [f"P{i}__exit:", f"\tb\tP{i}__exit"]
        if handler is not None:
            out.append(f"P{i}F__start:")
            for line in handler.lines:
                out += [f"{_label(i, lab)}:" for lab in line.labels]
                if line.text:
                    origin[len(out)] = line.line
                    out.append(f"\t{rename(line.text)}")
            out.append(f"\tb\tP{i}__exit")
    for i in range(ncpus):
        target = f"P{i}F__start" if i in test.handlers else f"P{i}__exit"
        out += ["\t.align\t11", f"P{i}__vectors:"]
        for entry in range(16):
            sync = entry % 4 == 0  # the synchronous entry of each of the four groups
            out += ["\t.align\t7", f"\tb\t{target if sync else f'P{i}__exit'}"]
    out += ["\t.data", "\t.align\t3"]
    inits = {loc.name: loc.value for loc in test.locs}
    for name in test.location_names():
        v = inits.get(name)
        if v is None or v.kind is ValueKind.INT:
            init = str((v.number if v else 0) & (2**64 - 1))
        elif v.kind is ValueKind.LABEL:
            init = _label(v.thread, v.name)
        elif v.kind is ValueKind.LOCATION:
            init = _loc(v.name)
        else:
            init = "0"  # an instruction value: written after linking
        out += [f"\t.global\t{_loc(name)}", f"{_loc(name)}:", f"\t.quad\t{init}"]
    # Every label is global so that init values and other threads can name it.
    syms = [f"\t.global\t{_label(t.index, lab)}"
            for t in (*test.threads, *test.handlers.values())
            for line in t.lines for lab in line.labels]
    syms += [f"\t.global\tP{i}__{what}" for i in range(ncpus)
             for what in ("start", "exit", "vectors")]
    syms += [f"\t.global\tP{i}F__start" for i in test.handlers]
    # Generated line n (1-based) is out[n - len(syms) - 1] once syms precede out[1:].
    lines = ["\t.text", *syms, *out[1:]]
    shift = len(syms)
    return "\n".join(lines) + "\n", {k + shift + 1: v for k, v in origin.items()}


def build(test: LitmusTest, cache: CacheType | None = None, *,
          budget: int = 20_000, memory: str = "arm", promises: str = "first",
          liveness: bool = True) -> LitmusProgram:
    """Map ``test`` onto a fresh machine (sealed at its initial state), its data side
    ``memory`` ("sc" or "arm"; under "arm" with promises, promise-first unless
    ``promises`` is "anytime", as scenarios run them: see testbed/dataside.py).
    ``liveness``: declare what each thread may still fetch (``_Liveness``), so that
    states differing only in I-cache words a thread will never fetch again merge."""
    if cache is None:
        try:
            cache = test.cache or CacheType.IDC0
        except ValueError as e:  # a LitmusTest not made by the parser, which checks this
            raise LitmusError(test.path, 0, f"CacheType: {e}") from None
    text, origin = _source(test)
    try:
        image = link([Source(test.path, text)], text_base=layout.TEXT_BASE,
                     data_base=layout.DATA_BASE, defines=layout.ASM_DEFINES)
    except AsmError as e:
        raise LitmusError(test.path, origin.get(e.line, 0),
                          f"thread code does not assemble: {e.reason}") from None
    ncpus = len(test.threads)
    # Litmus tests modify code concurrently on purpose: no CMODX oracle here.
    per_thread = test.thread_caches  # herd's per-processor CacheType, if given
    m = Machine(image, ncpus, FetchConfig(cache, cpus=tuple(
        CpuProfile(c) for c in per_thread)), budget=budget, cmodx_oracle=False,
                memory=memory, promises=promises)
    observed = _observed(test)
    prog = LitmusProgram(test, image, m, cache, observed)
    for loc in test.locs:
        if loc.value is not None and loc.value.kind is ValueKind.INSTR:
            m.write(prog.location(loc.name), prog.resolve(loc.value).to_bytes(8, "little"))
    code_values = _code_values(prog)
    prog.patchable = _store_targets(prog, code_values)
    for i in range(ncpus):
        m.start(i, f"P{i}__start")
        m.set_register(i, "vbar_el1", image.addr(f"P{i}__vectors"))
        m.add_halt(image.addr(f"P{i}__exit"))
    for i in range(ncpus):
        m.set_fetch_scope(i, _reachable(prog, i, code_values))
    if liveness:
        m.set_fetch_liveness(_Liveness(prog, code_values))
    for r in test.regs:
        if r.value is not None:
            if not 0 <= r.thread < ncpus:
                raise LitmusError(test.path, r.line, f"P{r.thread} has no code")
            m.set_register(r.thread, r.reg, prog.resolve(r.value))
    m.seal()
    return prog


def _code_values(prog: LitmusProgram) -> set[int]:
    """Every code address a thread could jump to through a register or a location."""
    test = prog.test
    values = [r.value for r in test.regs] + [loc.value for loc in test.locs]
    return {prog.resolve(v) for v in values if v is not None and v.kind is ValueKind.LABEL}


def _store_targets(prog: LitmusProgram, indirect: set[int]) -> frozenset[int] | None:
    """The text words a store of the test may write, or ``None``: any label.

    Each store, exclusive or atomic a thread may execute (its code as ``_walk`` finds it
    with every label patchable) must name its address by a base register the test
    initialises and no instruction of the thread writes, plus an immediate; and no
    instruction the test may store can itself be a store.  Otherwise every label may be
    patched (``_walk``'s rule before).  A store to a word outside the targets found is a
    "fetch-scope" finding (``_Liveness``)."""
    test, image = prog.test, prog.image
    text, base = image.text, layout.TEXT_BASE
    for v in [r.value for r in test.regs] + [loc.value for loc in test.locs]:
        if v is not None and v.kind is ValueKind.INSTR and _writes_memory(prog.resolve(v)):
            return None
    init: dict[tuple[int, str], int] = {}
    for r in test.regs:
        reg = slot(r.reg.lower())
        if r.value is not None and reg is not None and reg[0] >= 0:
            init[r.thread, f"x{reg[0]}"] = prog.resolve(r.value)
    targets: set[int] = set()
    for i in range(len(test.threads)):
        code = [a for a in _walk(prog, i, [image.addr(f"P{i}__start")], indirect)
                if base <= a <= base + len(text) - 4]
        words = [int.from_bytes(text[a - base:a - base + 4], "little") for a in code]
        written: set[str] = set()
        for w in words:
            written |= registers_written(w) or frozenset()
        for w in words:
            if not _writes_memory(w):
                continue
            plan = decode_access(w)
            if plan is None or plan.index:
                return None
            reg = slot(plan.base)
            name = f"x{reg[0]}" if reg is not None and reg[0] >= 0 else ""
            if name in written or (i, name) not in init:
                return None
            addr = init[i, name] + plan.disp
            for start in (base, layout.TEXT_ALIAS):
                off = addr - start
                if 0 <= off < len(text):  # (a pair stores two registers)
                    end = off + plan.size * max(1, len(plan.sources))
                    targets.update(base + w for w in range(off & ~3, end, 4))
    return frozenset(targets)


def _writes_memory(word: int) -> bool:
    """Whether an instruction word may write memory (a store, exclusive or atomic, or a
    memory operation ``isa`` cannot describe)."""
    info = classify(word)
    if info.kind is not OpKind.MEMORY:
        return False
    op = info.mem
    return op is None or op.kind is not MemKind.LOAD or op.exclusive


def _reachable(prog: LitmusProgram, thread: int, indirect: set[int]) -> set[int]:
    """The text addresses thread ``thread`` can fetch: a walk of its control flow.

    Direct branches are followed; BR/BLR may reach any code address held in an
    initial register or location; a fault enters the thread's handler, whose ERET may
    return to any label of the thread; an instruction at a label (where a test may
    store another one) may also fall through or branch to any label of any thread.
    The machine reports a "fetch-scope" finding if a modified word outside this set is
    ever fetched, so a wrong walk cannot silently hide outcomes.
    """
    return set(_walk(prog, thread, [prog.image.addr(f"P{thread}__start")], indirect))


def _walk(prog: LitmusProgram, thread: int, starts: list[int],
          indirect: set[int], to_isb: bool = False) -> frozenset[int]:
    """What ``thread`` can fetch from the addresses ``starts`` on (``_reachable``);
    ``to_isb``: up to and including its next ``ISB``s."""
    image = prog.image
    text, base = image.text, layout.TEXT_BASE
    exit_addr = image.addr(f"P{thread}__exit")
    labels = [a for (t, _), a in prog.labels.items() if t == thread]
    labels_all = set(prog.labels.values())
    patchable = labels_all if prog.patchable is None else prog.patchable  # (where a
    # store may put an instruction)
    work = list(starts)
    if thread in prog.test.handlers:
        work += [image.addr(f"P{thread}F__start"), *labels]
    seen: set[int] = set()
    while work:
        a = work.pop()
        if a in seen or not base <= a < base + len(text) - 3:
            continue
        seen.add(a)
        if a == exit_addr:
            continue
        w = int.from_bytes(text[a - base:a - base + 4], "little")
        nxt = [a + 4]
        if w & 0x7C000000 == 0x14000000:  # B, BL (BL returns to a + 4)
            target = a + (((w & 0x3FFFFFF) ^ 0x2000000) - 0x2000000) * 4
            nxt = [target, a + 4] if w & 0x80000000 else [target]
        elif w & 0xFF000010 == 0x54000000 or w & 0x7E000000 == 0x34000000:  # B.cond, CB(N)Z
            nxt = [a + 4, a + ((((w >> 5) & 0x7FFFF) ^ 0x40000) - 0x40000) * 4]
        elif w & 0x7E000000 == 0x36000000:  # TB(N)Z
            nxt = [a + 4, a + ((((w >> 5) & 0x3FFF) ^ 0x2000) - 0x2000) * 4]
        elif w & 0xFFFFFC1F in (0xD61F0000, 0xD63F0000):  # BR, BLR
            nxt = [*indirect, a + 4]
        elif w & 0xFFFFFC1F == 0xD65F0000 or w == 0xD69F03E0 or (  # RET, ERET
                to_isb and w & 0xFFFFF0FF == 0xD50330DF):  # ISB
            nxt = []
        if a in patchable:  # whatever is patched in may fall through or branch to a label
            nxt += [a + 4, *labels_all]
        work += nxt
    return frozenset(seen)


class _Liveness:
    """What a litmus thread may still fetch from where it is (``set_fetch_liveness``):
    the walk of ``_reachable`` from its pc and from its link register (a RET returns
    there), and the same walk up to its next ``ISB``s, as text offsets; nothing once it
    is switched off.  Memoised per (thread, pc, X30).  The machine checks every step
    against the first: a step to a place the walk from before did not reach is a
    "fetch-scope" finding (the walk was wrong, and states it merged may have
    differed).  A pending exception entry is a context synchronization event itself.

    The walks follow what a patched word may do only where a store may put one
    (``_store_targets``), and a step runs code it does not check on the way: so once a
    store has touched a word outside the targets found, nothing is declared (``None``),
    which the machine reports at that step as a "fetch-scope" finding.  (With no targets
    found, every label is patchable and a store elsewhere goes unchecked, as before.)"""

    def __init__(self, prog: LitmusProgram, indirect: set[int]) -> None:
        self.prog = prog
        self.indirect = indirect
        self.memo: dict[tuple[int, int, int, bool], Liveness] = {}
        self.patchable = None if prog.patchable is None else frozenset(
            a - layout.TEXT_BASE for a in prog.patchable)

    def __call__(self, m: Machine, c: Cpu) -> Liveness | None:
        if c.state is not CpuState.RUNNABLE:
            return _NOTHING
        if self.patchable is not None and not m.model.touched <= self.patchable:
            return None
        pc, x30, entry = c.pc, c.regs.read(_X30), c.exc is not None
        key = (c.index, pc, x30, entry)
        got = self.memo.get(key)
        if got is None:
            base = layout.TEXT_BASE
            fetch = frozenset(a - base for a in _walk(self.prog, c.index, [pc, x30],
                                                      self.indirect))
            view = frozenset() if entry else frozenset(
                a - base for a in _walk(self.prog, c.index, [pc, x30], self.indirect,
                                        to_isb=True))
            got = self.memo[key] = (fetch, view)
        return got


_NOTHING: Liveness = (frozenset(), frozenset())
_X30 = A.UC_ARM64_REG_X30


def _observed(test: LitmusTest) -> tuple[Atom, ...]:
    seen: dict[str, Atom] = {}
    extra = [a for a in test.locations if isinstance(a, Atom)]
    for a in [*atoms(test.condition.prop), *extra]:
        seen.setdefault(_atom_name(a), a)
    return tuple(seen.values())


@dataclass
class LitmusResult:
    name: str
    cache: CacheType
    quantifier: Quantifier
    condition: str
    finals: dict[tuple[tuple[str, int], ...], int]
    positive: int  # final states satisfying the proposition
    negative: int
    complete: bool
    reason: str
    explored: int  # distinct machine states explored (or schedules sampled)
    seconds: float
    program: LitmusProgram = field(repr=False)
    witnesses: dict[Hashable, tuple[Decision, ...]] = field(default_factory=dict, repr=False)
    findings: list[Finding] = field(default_factory=list)  # faults etc. in final states

    @property
    def witnessed(self) -> bool:
        """Some reachable final state satisfies the condition's proposition."""
        return self.positive > 0

    @property
    def ok(self) -> bool:
        if self.quantifier is Quantifier.EXISTS:
            return self.positive > 0
        if self.quantifier is Quantifier.NOT_EXISTS:
            return self.positive == 0
        return self.negative == 0

    @property
    def observation(self) -> str:
        if self.positive == 0:
            return "Never"
        return "Always" if self.negative == 0 else "Sometimes"

    def to_json(self) -> dict[str, Any]:
        prog = self.program
        return {
            "name": self.name, "path": prog.test.path, "cache": self.cache.value,
            "condition": self.condition, "verdict": "Ok" if self.ok else "No",
            "observation": self.observation, "positive": self.positive,
            "negative": self.negative, "states": len(self.finals), "witnessed": self.witnessed,
            "complete": self.complete, "reason": self.reason, "explored": self.explored,
            "seconds": round(self.seconds, 3),
            "finals": [{k: prog.show(k, v) for k, v in state} for state in self.finals],
            "findings": [f"[{f.oracle}] {f.message}" for f in self.findings],
        }


def run_test(test: LitmusTest, cache: CacheType | None = None, *,
             bounds: Bounds | None = None, random_runs: int = 0,
             seed: int = 0, memory: str = "arm", promises: str = "first",
             liveness: bool = True) -> LitmusResult:
    """Explore ``test`` exhaustively (or sample ``random_runs`` random schedules)."""
    bounds = bounds or Bounds(max_seconds=60.0)
    prog = build(test, cache, memory=memory, promises=promises, liveness=liveness)
    m = prog.machine
    if random_runs:
        import time
        t0 = time.perf_counter()
        finals: dict[Hashable, int] = {}
        for i in range(random_runs):
            from .scheduler import run
            run(m, RandomWalk(seed + i, p_model=0.2, p_irq=0.0), scenario=test.name)
            if not m.valid:
                continue
            obs = prog.observe(m)
            finals[obs] = finals.get(obs, 0) + 1
        exp = Exploration(finals=finals, states=random_runs, complete=False,
                          reason=f"random sampling of {random_runs} schedules",
                          seconds=time.perf_counter() - t0)
    else:
        exp = explore(m, prog.observe, bounds)
    prop = test.condition.prop
    states: dict[tuple[tuple[str, int], ...], int] = {
        k: v for k, v in exp.finals.items() if isinstance(k, tuple)}
    positive = sum(1 for s in states if prog.holds(s, prop))
    return LitmusResult(test.name, prog.cache, test.condition.quantifier, test.condition.text,
                        states, positive, len(states) - positive, exp.complete, exp.reason,
                        exp.states, exp.seconds, prog, exp.witnesses,
                        list(exp.findings.values()))


def report_text(r: LitmusResult) -> str:
    """herd7's output shape, plus a line on the completeness of the exploration."""
    prog = r.program
    kind = KIND_OF[r.quantifier].value
    lines = [f"Test {r.name} {kind}", f"States {len(r.finals)}"]
    for state in sorted(r.finals):
        lines.append(" ".join(f"{k}={prog.show(k, v)};" for k, v in state))
    lines += ["Ok" if r.ok else "No", "Witnesses",
              f"Positive: {r.positive} Negative: {r.negative}",
              f"Condition {r.quantifier.value} ({format_prop(prog.test.condition.prop)})",
              f"Observation {r.name} {r.observation} {r.positive} {r.negative}"]
    if r.complete:
        lines.append(f"Exploration complete: {r.explored} states, {r.seconds:.2f} s, "
                     f"cache {r.cache.value}")
    else:
        lines.append(f"Exploration INCOMPLETE ({r.reason}): {r.explored} states, "
                     f"{r.seconds:.2f} s, cache {r.cache.value}; Never/Ok may be wrong")
    return "\n".join(lines)


def results_json(results: Sequence[LitmusResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)


# --------------------------------------------------------------------------------------------
# Many tests: `testbed litmus`


class LitmusPathError(LitmusError):
    """A path given to `run_many` that names no test: ``str(e) == f"{path}: {reason}"``."""

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def litmus_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The tests ``paths`` name: files as given, folders as their ``*.litmus``, sorted.

    Folders are searched recursively (Arm's catalogue keeps one folder per cache type).
    A path that does not exist, is neither a file nor a folder, or a folder without any
    ``*.litmus`` raises `LitmusPathError` before any test runs.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        try:
            if p.is_dir():
                found = sorted(p.rglob("*.litmus"))
                if not found:
                    raise LitmusPathError(str(p), 0, "no .litmus files in this folder")
                files += found
            elif p.is_file():
                files.append(p)
            elif p.exists():
                raise LitmusPathError(str(p), 0, "not a regular file or a folder")
            else:
                raise LitmusPathError(str(p), 0, "no such file or folder")
        except OSError as e:  # an unreadable folder, a name too long...
            raise LitmusPathError(str(p), 0, _one_line(e.strerror or str(e))) from None
    return files


def _one_line(text: str) -> str:
    return " / ".join(part.strip() for part in text.splitlines() if part.strip()) or "?"


def _failure(path: str, e: Exception) -> tuple[str, int, str]:
    """Why the test at ``path`` could not be run: (file, line or 0, one-line reason)."""
    if isinstance(e, LitmusError):
        return e.file, e.line, _one_line(e.reason)
    if isinstance(e, OSError):  # a folder named *.litmus, no permission...
        return path, 0, _one_line(f"cannot read: {e.strerror or e}")
    # Anything else is a bug of the testbed (or Unicorn, Keystone...) that this test showed:
    # say where it was raised, so that the one line is enough to report it.
    frames = traceback.extract_tb(e.__traceback__)
    at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return path, 0, _one_line(f"internal error{at}: {type(e).__name__}: {e}")


def failure_text(path: str | os.PathLike[str], e: Exception) -> str:
    """One line saying why the test at ``path`` could not be run: ``FILE[:LINE]: REASON``."""
    file, line, reason = _failure(os.fspath(path), e)
    return _one_line(f"{file}:{line}: {reason}" if line > 0 else f"{file}: {reason}")


def _run_one(path: Path, cache: CacheType | None, memory: str, bounds: Bounds | None,
             random_runs: int, seed: int, as_json: bool,
             promises: str = "first") -> tuple[str, Outcome]:
    """What to print for the test at ``path``, and what the conformance summary needs of
    it (its machine is freed when this returns)."""
    result = run_test(parse_file(path), cache, bounds=bounds, random_runs=random_runs,
                      seed=seed, memory=memory, promises=promises)
    text = json.dumps(result.to_json()) if as_json else report_text(result) + "\n"
    return text, Outcome.of(result)


def run_many(paths: Sequence[str | os.PathLike[str]], *, cache: CacheType | None = None,
             memory: str = "arm", bounds: Bounds | None = None, random_runs: int = 0, seed: int = 0,
             as_json: bool = False, out: TextIO | None = None,
             err: TextIO | None = None, verdicts: Verdicts | None = None,
             promises: str = "first") -> int:
    """Run every test ``paths`` name (see `litmus_files`), printing each result as it ends.

    Returns 0 when every test ran, 2 when some could not be run.  A path that names no
    test raises `LitmusPathError` (one line naming it) before anything runs.  A test that
    cannot be run, for any reason (a parse error, an unsupported feature, code that does
    not assemble, text that is not UTF-8, a folder named ``*.litmus``, an exception from
    the machine), is one line on ``err`` (``testbed: error: FILE[:LINE]: REASON``) and the
    run goes on with the next test.  A verdict of ``No`` is a result, not a failure.
    ``cache`` overrides every file's ``CacheType``; ``out``/``err`` default to
    ``sys.stdout``/``sys.stderr``; ``promises`` "anytime" runs the Arm model's promises
    as scenarios run them (``testbed/dataside.py``), else promise-first.

    Text mode prints each herd7-shaped report (and a blank line) as soon as its test
    ends, and ends with ``N tests run, M could not be run`` on ``out``.

    JSON mode prints JSON Lines: one object per test, on one line, written and flushed as
    soon as the test ends, in the order of the tests.  A run killed late (a timeout in CI,
    minutes into a catalogue) keeps every finished test, and each line parses on its own;
    a single JSON list could only be printed at the end, or streamed as a document that
    does not parse until its closing bracket.  A test that ran is `LitmusResult.to_json`
    (it has ``"verdict"``); a test that could not be run is ``{"path": ..., "line": N or
    null, "error": REASON}`` (also on ``err``), so the stream alone says which tests are
    missing and why.

    With ``verdicts`` (herd's, see `read_verdicts`), the run ends with the conformance
    summary (`conformance`): in text mode `conformance_text` after the counts line, in
    JSON mode one more line, `conformance_json` (it has ``"summary": "conformance"``).
    The return value is then 1 when an outcome the verdicts forbid was observed (a
    finding: the model is wrong; it wins over 2, so that a test that could not be run
    never hides it), else 2 when some test could not be run, else 0.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    files = litmus_files(paths)
    ran = failed = 0
    outcomes: list[Outcome] = []
    for path in files:
        try:
            text, outcome = _run_one(path, cache, memory, bounds, random_runs, seed, as_json,
                                     promises)
        except Exception as e:  # one test must not end the run (KeyboardInterrupt does)
            failed += 1
            print(f"testbed: error: {failure_text(path, e)}", file=err, flush=True)
            file, line, reason = _failure(str(path), e)
            if as_json:
                print(json.dumps({"path": file, "line": line or None, "error": reason}),
                      file=out, flush=True)
            outcomes.append(Outcome.not_run(path, reason))
            continue
        ran += 1
        outcomes.append(outcome)
        print(text, file=out, flush=True)
    if not as_json:
        tests = "test" if ran == 1 else "tests"
        print(f"{ran} {tests} run, {failed} could not be run", file=out, flush=True)
    if verdicts is None:
        return 2 if failed else 0
    summary = conformance(outcomes, verdicts)
    if as_json:
        print(json.dumps(conformance_json(summary)), file=out, flush=True)
    else:
        print(f"\n{conformance_text(summary)}", file=out, flush=True)
    return summary.exit_code


# --------------------------------------------------------------------------------------------
# herd's verdicts and the conformance summary: `testbed litmus --verdicts FILE`


class Verdict(enum.Enum):
    """herd's verdict on a test, about its condition's proposition P (see `conformance`)."""

    ALLOWED = "Allowed"
    FORBIDDEN = "Forbidden"
    REQUIRED = "Required"


# herd's kind of a test, from its quantifier (lib/constrGen.ml, kind_of): what herd7
# prints after ``Test NAME``; a test whose verdict is its own kind is one herd says "Ok".
KIND_OF: Mapping[Quantifier, Verdict] = {
    Quantifier.EXISTS: Verdict.ALLOWED,
    Quantifier.NOT_EXISTS: Verdict.FORBIDDEN,
    Quantifier.FORALL: Verdict.REQUIRED,
}

# herd's spellings of a kind (lib/constrGen.ml, parse_kind), in any case here.
_VERDICT_WORDS = {"allow": Verdict.ALLOWED, "allowed": Verdict.ALLOWED,
                  "forbid": Verdict.FORBIDDEN, "forbidden": Verdict.FORBIDDEN,
                  "require": Verdict.REQUIRED, "required": Verdict.REQUIRED}


class VerdictFileError(LitmusError):
    """A verdict file that cannot be read, or a malformed line of one:
    ``str(e) == f"{file}:{line}: {reason}"`` (``f"{file}: {reason}"`` for the whole file)."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else \
            f"{self.file}: {self.reason}"


@dataclass
class Verdicts:
    """Test name -> herd's verdict, read from one or more files (`read_verdicts`)."""

    files: list[str] = field(default_factory=list)
    by_name: dict[str, Verdict] = field(default_factory=dict)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (file, line)

    def lookup(self, name: str, path: str) -> tuple[str, Verdict] | None:
        """The verdict on the test ``name`` read from ``path``, and the name it is under.

        By the test's header name (``AArch64 NAME``), as herd names a test; else by the
        file name without ``.litmus`` (herd's catalogue has two tests whose header name
        ends in ``.litmus``, listed without it).
        """
        for key in (name, Path(path).name.removesuffix(".litmus")):
            if key in self.by_name:
                return key, self.by_name[key]
        return None


def read_verdicts(path: str | os.PathLike[str], into: Verdicts | None = None) -> Verdicts:
    """herd's verdicts from a ``kinds.txt``-shaped file, added to ``into`` (or a new set).

    One test a line: ``NAME KIND``, blanks between and around, KIND one of herd's
    spellings (``Allowed``/``Allow``, ``Forbidden``/``Forbid``, ``Required``/``Require``,
    in any case, optionally in double quotes); blank lines and comments (from ``#`` or
    ``%`` to the end of the line) are skipped, as herd's reader (lib/lexRename.mll) does.
    A name given twice with the same verdict is fine; with another verdict, in this file
    or in one read before, it is an error.  Raises `VerdictFileError` for a file that
    cannot be read, is not UTF-8, holds no verdict, or has a malformed line.
    """
    file = os.fspath(path)
    verdicts = Verdicts() if into is None else into
    try:
        data = Path(file).read_bytes()
    except OSError as e:
        raise VerdictFileError(file, 0, _one_line(f"cannot read: {e.strerror or e}")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerdictFileError(file, data[:e.start].count(b"\n") + 1,
                               "not UTF-8 text") from None
    count = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[#%]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) == 1:
            raise VerdictFileError(file, number, f"{fields[0]!r} has no verdict "
                                   "(expected 'NAME Allowed|Forbidden|Required')")
        if len(fields) > 2:
            raise VerdictFileError(file, number, f"expected 'NAME Allowed|Forbidden|Required',"
                                   f" found {len(fields)} words")
        name, word = fields
        verdict = _VERDICT_WORDS.get(word.strip('"').lower())
        if verdict is None:
            raise VerdictFileError(file, number, f"unknown verdict {word!r} for {name!r} "
                                   "(expected Allowed, Forbidden or Required)")
        before = verdicts.by_name.get(name)
        if before is not None and before is not verdict:
            at, line_no = verdicts.where[name]
            raise VerdictFileError(file, number, f"{name!r} is {verdict.value} here but "
                                   f"{before.value} at {at}:{line_no}")
        if before is None:
            verdicts.by_name[name] = verdict
            verdicts.where[name] = (file, number)
        count += 1
    if not count:
        raise VerdictFileError(file, 0, "no verdicts in this file")
    verdicts.files.append(file)
    return verdicts


@dataclass(frozen=True)
class Outcome:
    """What the conformance summary needs of one test: what the runner saw, or why the
    test could not be run (a run of a thousand tests keeps these, not their machines)."""

    name: str  # the header name (of a test that could not be run: see _header_name)
    path: str
    positive: int = 0  # reachable final states satisfying the condition's proposition
    negative: int = 0
    complete: bool = False
    reason: str = ""  # why the exploration is not complete
    error: str | None = None  # why the test could not be run

    @classmethod
    def of(cls, r: LitmusResult) -> Outcome:
        return cls(r.name, r.program.test.path, r.positive, r.negative, r.complete,
                   r.reason)

    @classmethod
    def not_run(cls, path: str | os.PathLike[str], reason: str) -> Outcome:
        return cls(_header_name(Path(path)), os.fspath(path), error=reason)

    @property
    def ran(self) -> bool:
        return self.error is None

    @property
    def observation(self) -> str:
        """herd7's word for what was seen of the proposition: Never, Sometimes, Always."""
        if self.positive == 0:
            return "Never"
        return "Always" if self.negative == 0 else "Sometimes"

    @property
    def undecided(self) -> str:
        """Why what was *not* seen is not a proof that it cannot happen."""
        if self.error is not None:
            return f"could not run: {self.error}"
        return f"not decided: {self.reason or 'exploration incomplete'}"

    @property
    def seen(self) -> str:
        """What was seen, for a list: ``Sometimes 1 3 (complete)``."""
        how = "complete" if self.complete else f"incomplete: {self.reason}"
        return f"{self.observation} {self.positive} {self.negative} ({how})"


def _header_name(path: Path) -> str:
    """The name in a test's ``ARCH NAME`` header, if its first line has one; else the stem.

    For a test that could not be run (it may not even parse), so that its verdict is
    still found and it counts as a miss, not as a test without a verdict.
    """
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline().split()
    except (OSError, UnicodeDecodeError):
        first = []
    if len(first) == 2 and first[0].isalnum():
        return first[1]
    return path.name.removesuffix(".litmus")


@dataclass(frozen=True)
class Listed:
    """One test in a list of the summary: its name, its file, and why it is listed."""

    name: str
    path: str
    why: str


@dataclass
class Conformance:
    """The runner's results judged by herd's verdicts (`conformance`)."""

    files: list[str]  # the verdict files
    run: int = 0
    not_run: int = 0
    without_verdict: list[Listed] = field(default_factory=list)
    allowed: int = 0
    allowed_observed: int = 0
    allowed_missed: list[Listed] = field(default_factory=list)  # each with its reason
    forbidden: int = 0
    forbidden_never: int = 0  # not observed, and the exploration was complete
    forbidden_observed: list[Listed] = field(default_factory=list)  # soundness failures
    forbidden_undecided: list[Listed] = field(default_factory=list)
    required: int = 0
    required_always: int = 0  # observed in every final state, exploration complete
    required_violated: list[Listed] = field(default_factory=list)  # soundness failures
    required_undecided: list[Listed] = field(default_factory=list)
    incomplete: list[Listed] = field(default_factory=list)  # every incomplete exploration

    @property
    def failures(self) -> list[Listed]:
        """Every outcome observed that the verdicts forbid."""
        return self.forbidden_observed + self.required_violated

    @property
    def sound(self) -> bool:
        return not self.failures

    @property
    def allowed_ratio(self) -> float | None:
        return self.allowed_observed / self.allowed if self.allowed else None

    @property
    def exit_code(self) -> int:
        """1 a forbidden outcome observed, else 2 a test could not be run, else 0."""
        return 1 if self.failures else 2 if self.not_run else 0


def conformance(results: Iterable[Outcome | LitmusResult], verdicts: Verdicts) -> Conformance:
    """Judge what the runner saw by herd's verdicts.

    A verdict is about the condition's proposition P, whatever the quantifier, as herd7's
    ``Observation NAME Never|Sometimes|Always`` line reports P (the shared catalogue's
    ``herd7.txt`` is this: ``Small``, ``forall 0:X0=1``, Observation Always, is
    ``Allowed``), and matching herd's kinds (lib/constrGen.ml, ``kind_of``: ``exists`` is
    Allow, ``~exists`` Forbid, ``forall`` Require; herd says Ok when the verdict is the
    test's own kind):

    - ``Allowed``: some execution ends in a state satisfying P.  Observed when a reachable
      final state satisfies P (Sometimes or Always); otherwise a miss, listed with the
      runner's word: ``Never (complete)`` when the exploration was complete (the model
      cannot produce it), ``not decided: <reason>`` when a bound stopped it, ``could not
      run: <reason>``.  For ``exists P`` this is herd's Ok; for ``~exists P`` herd's No.
    - ``Forbidden``: no execution satisfies P.  A reachable final state satisfying P is a
      soundness failure (the model is wrong); not observed is a proof only when the
      exploration was complete, else the test is listed as not decided.  For ``~exists
      P`` this is herd's Ok; for ``exists P`` herd's No (so every diy-generated test,
      ``exists`` of an SC-forbidden outcome, is Allowed or Forbidden this way).
    - ``Required``: every execution satisfies P (herd's ``forall P`` Ok, Observation
      Always).  A reachable final state *not* satisfying P is a soundness failure;
      Always with a complete exploration holds; else not decided.

    herdtools' ``mcompare7 -show k`` (LogState.tr_validate) agrees for ``exists`` and
    ``~exists`` but reads a ``forall`` test the other way (Allowed when not-P is
    reachable); the shared verdict files do not: ``herd7.txt`` gives ``Small`` and
    ``STABLE`` (``forall``, Observation Always) Allowed, where that reading would give
    Forbidden, and herd's own ``kinds.txt`` gives ``Small`` Required.

    Verdicts are found by `Verdicts.lookup`.  A test with no verdict is counted (and
    listed in JSON), not judged.  A test that could not be run counts against its
    verdict's class: a miss if Allowed, not decided if Forbidden or Required.
    """
    summary = Conformance(list(verdicts.files))
    for r in results:
        o = Outcome.of(r) if isinstance(r, LitmusResult) else r
        found = verdicts.lookup(o.name, o.path)
        if found is not None:  # listed by the name the verdict file gives
            o = replace(o, name=found[0])
        if o.ran:
            summary.run += 1
            if not o.complete:
                summary.incomplete.append(Listed(o.name, o.path, o.reason or "incomplete"))
        else:
            summary.not_run += 1
        if found is None:
            summary.without_verdict.append(
                Listed(o.name, o.path, o.seen if o.ran else o.undecided))
            continue
        verdict = found[1]
        if verdict is Verdict.ALLOWED:
            summary.allowed += 1
            if o.ran and o.positive:
                summary.allowed_observed += 1
            else:
                why = "Never (complete)" if o.ran and o.complete else o.undecided
                summary.allowed_missed.append(Listed(o.name, o.path, why))
        elif verdict is Verdict.FORBIDDEN:
            summary.forbidden += 1
            if o.ran and o.positive:
                summary.forbidden_observed.append(Listed(o.name, o.path, o.seen))
            elif o.ran and o.complete:
                summary.forbidden_never += 1
            else:
                summary.forbidden_undecided.append(Listed(o.name, o.path, o.undecided))
        else:
            summary.required += 1
            if o.ran and o.negative:
                summary.required_violated.append(Listed(o.name, o.path, o.seen))
            elif o.ran and o.complete and o.positive:
                summary.required_always += 1
            elif o.ran and o.complete:
                summary.required_undecided.append(
                    Listed(o.name, o.path, "not decided: no final state reached"))
            else:
                summary.required_undecided.append(Listed(o.name, o.path, o.undecided))
    return summary


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def conformance_text(s: Conformance) -> str:
    """The summary for people: counts, then every listed test by name with its reason."""
    lines = [f"Conformance with herd's verdicts ({', '.join(s.files)})",
             f"Tests: {s.run} run, {s.not_run} could not be run, "
             f"{len(s.without_verdict)} without a verdict",
             f"Forbidden: {_plural(s.forbidden, 'test')}, {len(s.forbidden_observed)} observed"
             f" (soundness failures), {s.forbidden_never} never (complete), "
             f"{len(s.forbidden_undecided)} not decided",
             f"Allowed: {_plural(s.allowed, 'test')}, {s.allowed_observed} observed "
             f"({_percent(s.allowed_observed, s.allowed)}), {len(s.allowed_missed)} not "
             "observed",
             f"Required: {_plural(s.required, 'test')}" + (
                 f", {s.required_always} always (complete), {len(s.required_violated)} "
                 f"violated (soundness failures), {len(s.required_undecided)} not decided"
                 if s.required else ""),
             f"Explorations: {s.run - len(s.incomplete)} complete, {len(s.incomplete)} "
             "incomplete"]
    listed = [*s.failures, *s.allowed_missed, *s.forbidden_undecided, *s.required_undecided,
              *s.incomplete]
    names: dict[str, set[str]] = {}
    for item in listed:
        names.setdefault(item.name, set()).add(item.path)

    def section(title: str, items: list[Listed]) -> None:
        if items:
            lines.append(f"{title} ({len(items)}):")
            for item in items:
                # The same name in two folders (catalogue and generated): say which file.
                where = f"  [{item.path}]" if len(names[item.name]) > 1 else ""
                lines.append(f"  {item.name}: {item.why}{where}")

    section("FORBIDDEN OUTCOME OBSERVED, the model is wrong", s.forbidden_observed)
    section("REQUIRED OUTCOME VIOLATED, the model is wrong", s.required_violated)
    section("Allowed, not observed", s.allowed_missed)
    section("Forbidden, not decided", s.forbidden_undecided)
    section("Required, not decided", s.required_undecided)
    section("Incomplete explorations", s.incomplete)
    failures = len(s.failures)
    if failures:
        lines.append(f"UNSOUND: {_plural(failures, 'forbidden outcome')} observed")
    else:
        lines.append("Sound: 0 forbidden outcomes observed")
    lines[-1] += (f"; {s.allowed_observed} of {s.allowed} allowed outcomes observed "
                  f"({_percent(s.allowed_observed, s.allowed)})")
    return "\n".join(lines)


def conformance_json(s: Conformance) -> dict[str, Any]:
    """The summary as one JSON object (the last line of ``testbed litmus --json``)."""
    def items(listed: list[Listed]) -> list[dict[str, str]]:
        return [{"name": i.name, "path": i.path, "why": i.why} for i in listed]

    ratio = s.allowed_ratio
    return {
        "summary": "conformance", "verdict_files": s.files, "sound": s.sound,
        "exit": s.exit_code, "run": s.run, "not_run": s.not_run,
        "without_verdict": items(s.without_verdict),
        "forbidden": {"tests": s.forbidden, "observed": items(s.forbidden_observed),
                      "never": s.forbidden_never,
                      "undecided": items(s.forbidden_undecided)},
        "allowed": {"tests": s.allowed, "observed": s.allowed_observed,
                    "ratio": None if ratio is None else round(ratio, 4),
                    "missed": items(s.allowed_missed)},
        "required": {"tests": s.required, "always": s.required_always,
                     "violated": items(s.required_violated),
                     "undecided": items(s.required_undecided)},
        "incomplete": items(s.incomplete),
    }
