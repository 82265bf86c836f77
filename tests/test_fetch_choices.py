"""``FetchModel.choices`` and its C twin against a reference written rule by rule, and the C
twins of the catch-up (rule 7), of the reset, of a restore's per-CPU part and of the
state key's per-word part against the Python ones.

``Machine.model_choices`` asks ``FetchModel.choices`` (in C with the compiled path:
``_fastpath.fetch_choices``) for every fetch-model choice at once; a random walk draws
one of them by its position, so a schedule replays only if the list is the same, in the
same order, as the rules give it: per CPU its catch-up, fills (refills when compact)
and evictions, completions; then the write-backs.  Both are checked here
against that reference on random models (every cache configuration, scopes, liveness,
deferred maintenance) and on the states real runs and explorations ask at.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import fastpath
from testbed.exploration import Bounds, explore
from testbed.litmus import parse_file
from testbed.litmus_run import build
from testbed.machine import Machine
from testbed.memory import (
    CHOICE_CATCH_UP,
    CHOICE_COMPLETE,
    CHOICE_EVICT,
    CHOICE_FILL,
    CHOICE_FILL_DSIDE,
    CHOICE_WRITE_BACK,
    CacheType,
    CpuProfile,
    FetchConfig,
    FetchModel,
    ModelError,
    Snapshot,
)
from testbed.scenario import Session, load_scenario
from testbed.strategies import RandomWalk

Choices = list[tuple[int, int, int]]
LITMUS = Path(__file__).resolve().parents[2] / "shared" / "litmus"
NOP = 0xD503201F


def reference(m: FetchModel, cpus: list[int], compact: bool) -> Choices:
    """The choices written rule by rule, as the model's per-rule methods computed them
    before ``FetchModel.choices`` (which they are now views of)."""
    out: Choices = []
    for i in cpus:
        if _catch_up_would_change(m, i):
            out.append((CHOICE_CATCH_UP, i, -1))
        fills = _refill_choices(m, i) if compact else _fill_choices(m, i)
        out += [(CHOICE_FILL_DSIDE if dside else CHOICE_FILL, i, w) for w, dside in fills]
        if not compact:
            out += [(CHOICE_EVICT, i, w) for w in _evict_choices(m, i)]
        seen: set[tuple[int, int]] = set()  # rule 9: one completion per distinct operation
        for k, item in enumerate(m.queues[i]):
            if item not in seen:
                seen.add(item)
                out.append((CHOICE_COMPLETE, i, k))
    if cpus and not m.pou_shared:  # rule 6: lines whose PoU copy differs from the D-side
        line = m.config.dline
        out += [(CHOICE_WRITE_BACK, -1, ln) for ln in sorted({w & ~(line - 1) for w in m.touched})
                if m.pou[ln:ln + line] != m.dside[ln:ln + line]]
    return out


def _in_scope(m: FetchModel, cpu: int, words: set[int]) -> set[int]:
    scope, live = m.scopes[cpu], m.live[cpu]
    if scope is not None:
        words = words & scope
    return words if live is None else words & live


def _catch_up_would_change(m: FetchModel, cpu: int) -> bool:  # rule 7
    c = m.cpus[cpu]
    scope, live = m.scopes[cpu], m.view_live[cpu]
    for w in c.pending:
        if (scope is not None and w not in scope) or (live is not None and w not in live):
            continue
        src = m.pou if w in c.invalid else c.icache
        if src[w:w + 4] != c.iview[w:w + 4]:
            return True
    return False


def _fill_choices(m: FetchModel, cpu: int) -> list[tuple[int, bool]]:  # rule 4
    c = m.cpus[cpu]
    out: list[tuple[int, bool]] = []
    for w in sorted(_in_scope(m, cpu, m.touched & c.invalid)):
        out.append((w, False))
        if not m.pou_shared and m.dside[w:w + 4] != m.pou[w:w + 4]:
            out.append((w, True))
    return out


def _refill_choices(m: FetchModel, cpu: int) -> list[tuple[int, bool]]:  # rules 5 then 4
    c = m.cpus[cpu]
    out: list[tuple[int, bool]] = []
    for w in sorted(_in_scope(m, cpu, m.touched)):
        invalid = w in c.invalid
        cached = c.icache[w:w + 4]
        pou = m.pou[w:w + 4]
        if invalid or cached != pou:
            out.append((w, False))
        if not m.pou_shared:
            dside = m.dside[w:w + 4]
            if dside != pou and (invalid or cached != dside):
                out.append((w, True))
    return out


def _evict_choices(m: FetchModel, cpu: int) -> list[int]:  # rule 5
    c = m.cpus[cpu]
    out = []
    for w in sorted(_in_scope(m, cpu, m.touched - c.invalid)):
        cached = c.icache[w:w + 4]
        if cached != m.pou[w:w + 4] or cached != m.dside[w:w + 4]:
            out.append(w)
    return out


def twins() -> list[Callable[[FetchModel, list[int], bool], Choices]]:
    out: list[Callable[[FetchModel, list[int], bool], Choices]] = [
        lambda m, cpus, compact: m.choices(cpus, compact)]
    if fastpath.available():
        out.append(fastpath.function("fetch_choices"))
    return out


def check(m: FetchModel, cpus: list[int]) -> int:
    """Every twin gives the reference's list; returns how many choices there were."""
    n = 0
    for compact in (False, True):
        want = reference(m, cpus, compact)
        n += len(want)
        for twin in twins():
            assert twin(m, cpus, compact) == want, (cpus, compact)
    return n


def check_catch_up(m: FetchModel) -> None:
    """Each CPU's catch-up (rule 7) in C does what the Python rule does: the same words
    changed, the same state after, one generation more; the model is left as it was."""
    for cpu in range(m.ncpus):
        before = m.snapshot()
        gen = m.gen
        want = m.catch_up(cpu)
        after, counted = m.snapshot(), m.gen - gen
        m.restore(before)
        gen = m.gen
        assert fastpath.function("catch_up")(m, cpu) == want
        assert m.snapshot() == after and m.gen - gen == counted
        m.restore(before)


def check_key(m: FetchModel) -> None:
    """The model's state key with its per-word part built in C (``_fastpath.key_words``)
    is the one built in Python."""
    c_words, m.key_words_c = m.key_words_c, None
    try:
        want = m._digest()
        m.key_words_c = fastpath.function("key_words")
        assert m._digest() == want
    finally:
        m.key_words_c = c_words


def check_restore(m: FetchModel, to: Snapshot) -> None:
    """A restore to ``to`` from the model's state with its per-CPU part in C
    (``_fastpath.restore_cpus``) as in Python: the same I-view words changed, the same
    state after; the model is left as it was."""
    here = m.snapshot()
    want = m.restore(to)
    after = m.snapshot()
    assert after == to  # (a restore copies only the words stores touched: the rest
    m.restore(here)  # holds the initial text everywhere, here and there)
    assert m.snapshot() == here
    m.restore_c = fastpath.function("restore_cpus")
    try:
        assert m.restore(to) == want
        assert m.snapshot() == after
    finally:
        m.restore_c = None
    m.restore(here)


def check_reset(m: FetchModel) -> None:
    """The words the reset puts back, in C (``_fastpath.model_reset``), as the Python
    reset puts them back: the same I-view words per CPU, the same state after."""
    before = m.snapshot()
    want = m.reset()
    after = m.snapshot()
    m.restore(before)
    m.reset_c = fastpath.function("model_reset")
    try:
        assert m.reset() == want
        assert m.snapshot() == after
    finally:
        m.reset_c = None
    m.restore(before)


CONFIGS = [
    FetchConfig(CacheType.IDC0), FetchConfig(CacheType.IDC1), FetchConfig(CacheType.DIC1),
    FetchConfig(CacheType.IDC0, iline=16, dline=32),
    FetchConfig(cpus=(CpuProfile(CacheType.IDC0), CpuProfile(CacheType.DIC1),
                      CpuProfile(CacheType.IDC1))),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cache.value}-{c.iline}-"
                         f"{c.dline}{'-mixed' if c.cpus else ''}")
@pytest.mark.parametrize("deferred", [False, True], ids=["at-once", "deferred"])
def test_random_models(config: FetchConfig, deferred: bool) -> None:
    """Random rule sequences on a 3-CPU model: the choices agree at every state, with and
    without scopes and liveness, and every kind of choice shows up."""
    rng = random.Random(f"{config}{deferred}")
    nwords = 64
    seen: set[int] = set()
    for run in range(12):
        m = FetchModel(config, NOP.to_bytes(4, "little") * nwords, 3)
        m.deferred = deferred
        earlier = m.snapshot()  # a state to restore (to) from each later one
        words = [4 * rng.randrange(nwords) for _ in range(6)]  # a few words, often shared
        for _ in range(60):
            op = rng.randrange(9)
            cpu = rng.randrange(3)
            w = rng.choice(words)
            try:
                if op == 0:  # whole words, and halves (torn words)
                    size = rng.choice((4, 4, 2))
                    off = w + rng.choice((0, 4 - size))
                    m.store(off, rng.getrandbits(8 * size).to_bytes(size, "little"), cpu)
                elif op == 1:
                    m.dc_cvau(w, cpu)
                elif op == 2:
                    m.ic_ivau(w, cpu)
                elif op == 3:
                    m.fill(cpu, w, rng.random() < 0.5)
                elif op == 4:
                    m.evict(cpu, w)
                elif op == 5:
                    m.catch_up(cpu)
                elif op == 6:
                    m.write_back(w & ~(config.dline - 1))
                elif op == 7 and m.queues[cpu]:
                    m.complete(cpu, rng.randrange(len(m.queues[cpu])))
                elif op == 8:
                    m.ic_iallu(cpu, deferred=deferred)
            except ModelError:
                pass  # (a fill of a valid word, a write-back when IDC=1...)
            if run % 3 == 1:  # scopes and liveness leave words out
                m.scopes[cpu] = frozenset(rng.sample(words, 3))
            elif run % 3 == 2:
                m.live[cpu] = frozenset(rng.sample(words, 3))
                m.view_live[cpu] = frozenset(rng.sample(words, 2))
            if fastpath.available():
                check_catch_up(m)
                check_key(m)
                check_restore(m, earlier)
            if rng.random() < 0.2:
                earlier = m.snapshot()
            for cpus in ([0, 1, 2], [2, 0], [1], []):
                check(m, cpus)
                seen.update(code for code, _, _ in m.choices(cpus, False)
                            + m.choices(cpus, True))
        if fastpath.available():
            check_reset(m)
    kinds = {CHOICE_CATCH_UP, CHOICE_FILL}
    if config.cache is not CacheType.DIC1 or config.cpus:  # (DIC=1: valid words are
        kinds.add(CHOICE_EVICT)  # the PoU's, so an eviction changes nothing)
    if not config.cache.idc or config.cpus:
        kinds |= {CHOICE_FILL_DSIDE, CHOICE_WRITE_BACK}
    if deferred:
        kinds.add(CHOICE_COMPLETE)
    assert kinds <= seen


class Recorder:
    """Checks the twins at every ``Machine.model_choices`` call of a machine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.choices = 0
        original = Machine.model_choices

        def model_choices(m: Machine, compact: bool = False) -> list[object]:
            got = original(m, compact)
            m.update_liveness()
            cpus = [c.index for c in m.cpus if c.state.value == "runnable"]
            self.calls += 1
            self.choices += check(m.model, cpus)
            if fastpath.available():
                check_key(m.model)
            return got  # type: ignore[return-value]

        monkeypatch.setattr(Machine, "model_choices", model_choices)


@pytest.mark.parametrize("memory", ["sc", "arm"])
def test_the_states_random_walks_ask_at(monkeypatch: pytest.MonkeyPatch, memory: str) -> None:
    rec = Recorder(monkeypatch)
    for name in ("jump_label_nosync", "missing_dc"):
        s = Session(load_scenario(name)(), memory=memory)
        for seed in range(25):
            s.run(RandomWalk(seed, p_model=0.3))
    assert rec.calls > 200 and rec.choices > 200


def test_the_states_explorations_ask_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """Litmus explorations: compact choices, scopes and fetch liveness, IDC=0 and DIC=1,
    deferred maintenance under the Arm model."""
    rec = Recorder(monkeypatch)
    for path, cache in (("esop2020/MP.RF+[dc]-ic+ctrl-isb.litmus", None),
                        ("esop2020/CoFF.litmus", CacheType.IDC0),
                        ("esop2020/SM+RW.litmus", CacheType.DIC1)):
        prog = build(parse_file(LITMUS / path), cache)
        explore(prog.machine, prog.observe, Bounds(max_states=600))
    assert rec.calls > 500 and rec.choices > 500


def test_machines_use_the_c_twin_with_the_compiled_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiled path the machine asks C (so that the tests above cover what
    runs); without it, Python."""
    if not fastpath.available():
        pytest.skip("the compiled fast path was not built")
    s = Session(load_scenario("jump_label_nosync")())
    assert s.machine.fastpath
    assert s.machine._fetch_choices.func is fastpath.function("fetch_choices")  # type: ignore[union-attr]
    monkeypatch.setenv("TESTBED_FASTPATH", "0")
    pure = Session(load_scenario("jump_label_nosync")())
    assert pure.machine._fetch_choices == pure.machine.model.choices
