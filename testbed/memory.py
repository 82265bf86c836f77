"""The instruction-fetch model (DESIGN.md section 4), in plain Python.

State: the D-side (data memory, sequentially consistent), the PoU (what instruction
fills read; the D-side itself when IDC=1), and per CPU an I-cache (each word holds a
value or is invalid) and an I-view (the instructions the CPU actually executes: a
snapshot of its I-cache taken at its last catch-up).

The model only covers the kernel text: instructions are fetched from nowhere else.
Offsets are byte offsets into the text; words are 4-byte aligned offsets.  The D-side
and the I-views are buffers the caller may share with an emulator (the machine maps
them into Unicorn), so every rule below writes them in place.

The rules, numbered as in DESIGN.md and named in the tests:

1. ``store``: acts on the D-side atomically; IDC=1 -> also the PoU; DIC=1 -> also
   invalidates its line in every CPU's I-cache.
2. ``dc_cvau``: the PoU copy of a line takes the D-side's bytes.
3. ``ic_ivau``/``ic_ialluis`` invalidate a line / everything in every CPU's I-cache;
   ``ic_iallu`` only in the issuing CPU's (herd7 treats it as broadcast: option).
4. ``fill``: an invalid word takes its value from the PoU, or (IDC=0) the D-side.
5. ``evict``: a valid word becomes invalid.
6. ``write_back`` (IDC=0): the PoU copy of a line takes the D-side's bytes.
7. ``catch_up``: every invalid word is filled from the PoU, then the I-view becomes a
   copy of the whole I-cache, in one step.
8. ``fetch``: a CPU fetches a whole aligned word from its I-view; ``is_torn`` says
   whether that word is a mix of two instructions left by a writer storing in pieces.
9. ``deferred`` (the machine sets it under ``--memory arm``): cache maintenance is only
   guaranteed complete after a ``DSB`` of the CPU that issued it (Arm ARM: "a DSB ...
   ensures completion of the cache maintenance instructions"): each is queued on the
   issuing CPU and performed at any point a scheduler chooses (``complete``), and at the
   latest at that CPU's next ``DSB`` (``complete_all``), or for a ``DC CVAU`` its next
   ``DMB`` that orders stores (``complete_cleans``: a DMB orders data cache maintenance
   as it orders stores; herd's ``MP.RF+dc.cvau-dmb.ish+pickctrl-ic.ivau-isb`` is
   Forbidden).  An ``ISB`` does not complete it.  A DIC=1 store invalidates the other
   CPUs' I-caches as soon as they can see it (its invalidation is part of the store:
   ``DIC1.MP.FF+dmb.st+po``, ``DIC1.WRC-inst`` Forbidden) but the storing CPU's own
   line only when it completes (``DIC1.SM.B+isb`` Allowed: a store, an ISB and no DSB
   may still fetch the old instruction).  Under a sequentially consistent D-side they
   complete at once, as before: the data model that a ``DSB`` orders against is the
   Arm one.
10. ``as_of`` cleans (under ``--memory arm``, with a ``history`` of the text's stores): a
   ``DC CVAU`` may clean its line as it was at an earlier point of the data model's
   order (F2 in ``armmem.py``: it may be performed before loads it is not ordered
   after); the PoU keeps the time of the line it holds (``pou_time``) and never goes
   back: a clean as of an earlier time than that does nothing.

11. Per CPU (``FetchConfig.cpus``, a heterogeneous system such as big.LITTLE cores with
   different ``CTR_EL0``): a store by a CPU whose caches are IDC=1 reaches the PoU at
   once (its D-cache line is written back whole); one by an IDC=0 CPU stays in the
   D-side until cleaned; a CPU whose caches are DIC=1 has its I-cache line invalidated
   whenever the line's PoU copy changes (a store that reaches the PoU, a clean, a
   write-back); a fill may take the D-side's bytes of a line not yet cleaned.  With
   every CPU alike these are rules 1, 4 and 6 as they were.  A CPU may also advertise
   another cache type than it behaves as (``CpuProfile.advertised``: an erratum such as
   Neoverse-N1 #1542419, ``CTR_EL0.DIC=1`` with a stale fetch possible until an
   ``IC IVAU``); ``CTR_EL0`` reads what it advertises, the model does what it does.

Known gaps (stated in the docs too): no non-monotone fetch (CoFF), no intermediate
values of a location seen by different CPUs (FOW); an ``IC`` is never performed before a
program-order-earlier load (it is only delayed, rule 9).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .statehash import Bytes, digest

__all__ = ["CHOICE_CATCH_UP", "CHOICE_COMPLETE", "CHOICE_EVICT", "CHOICE_FILL",
           "CHOICE_FILL_DSIDE", "CHOICE_WRITE_BACK", "ERRATA", "CacheType", "CpuProfile",
           "FetchConfig", "FetchModel", "ModelError", "TextHistory", "parse_per_thread",
           "per_thread_words"]

# Rule 9's operations (FetchModel.queues).
_INVAL_LINE, _INVAL_ALL, _INVAL_CPU, _CLEAN_LINE, _INVAL_CPU_LINE, _CLEAN_AS_OF = range(6)
_CLEANS = (_CLEAN_LINE, _CLEAN_AS_OF)
# What ``FetchModel.choices`` offers: a catch-up, a fill from the PoU or the D-side (a
# refill when compact), an eviction, a completion (rule 9), a write-back.
(CHOICE_CATCH_UP, CHOICE_FILL, CHOICE_FILL_DSIDE, CHOICE_EVICT, CHOICE_COMPLETE,
 CHOICE_WRITE_BACK) = range(6)


class TextHistory(Protocol):
    """Rule 10: the text's stores in the data model's order (``dataside`` gives it)."""

    def now(self) -> int:
        """The time of the latest store of any location."""
        ...

    def line_at(self, line: int, size: int, t: int) -> bytes:
        """The D-side bytes [line, line + size) as they were at time ``t``."""
        ...


class ModelError(Exception):
    """A model operation that the rules do not allow (a bug in the caller)."""


class CacheType(enum.Enum):
    """The three cache configurations of Arm's catalogue (CTR_EL0.IDC/DIC)."""

    IDC0 = "IDC0"  # IDC=0, DIC=0: DC CVAU and IC IVAU are both needed
    IDC1 = "IDC1"  # IDC=1, DIC=0: stores reach the PoU at once; IC IVAU still needed
    DIC1 = "DIC1"  # IDC=1, DIC=1: stores also invalidate the I-caches

    @property
    def idc(self) -> bool:
        return self is not CacheType.IDC0

    @property
    def dic(self) -> bool:
        return self is CacheType.DIC1

    @classmethod
    def common(cls, caches: Sequence[CacheType]) -> CacheType:
        """What every one of ``caches`` has (IDC and DIC lower-safe, as Linux's
        system-wide ``CTR_EL0`` and herd's per-processor ``CacheType`` read them)."""
        if all(c.dic for c in caches):
            return cls.DIC1
        return cls.IDC1 if all(c.idc for c in caches) else cls.IDC0

    @classmethod
    def parse(cls, text: str) -> CacheType:
        """A cache configuration from herd's ``CacheType=`` value or this project's names.

        herd7 (``lib/cacheType.mll``) reads the value as blank-separated feature words,
        ``IDC`` and ``DIC`` in any order and case, each feature it names being present
        (``IDC DIC``, ``DIC IDC``, ``dic``; no word at all: neither); DIC implies IDC.
        This also accepts the value in quotes, the words separated by commas, ``+`` or
        ``-`` as well, and the explicit ``IDC0``/``IDC1``/``DIC0``/``DIC1`` (``DIC1-IDC1``
        is the catalogue's folder name) and ``NONE``.  A word that names no feature, or
        words that contradict each other (``IDC0 DIC``), raise a one-line ValueError.
        """
        # Between the words: blanks, commas, '+', '-' and quotes ('"IDC DIC"', 'IDC,DIC',
        # 'DIC1-IDC1' are two words each).
        words = "".join(" " if c in ",+-\"'" else c for c in text).split()
        shown = repr(text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "...")
        idc = dic = False
        no_idc = no_dic = False
        for word in words:
            key = word.upper()
            if key in ("IDC", "IDC1"):
                idc = True
            elif key in ("DIC", "DIC1"):
                dic = True
            elif key == "IDC0":
                no_idc = True
            elif key == "DIC0":
                no_dic = True
            elif key != "NONE":
                word = word if len(word) <= 20 else word[:17] + "..."
                raise ValueError(f"unknown cache type {shown}: {word!r} is not IDC or DIC "
                                 "(herd's spellings, e.g. 'IDC DIC'), nor IDC0, IDC1, DIC1")
        if (no_idc and (idc or dic)) or (no_dic and dic):
            raise ValueError(f"contradictory cache type {shown}: say IDC0, IDC1 or DIC1 "
                             "(DIC implies IDC)")
        if dic:
            return cls.DIC1
        return cls.IDC1 if idc else cls.IDC0


def per_thread_words(text: str) -> list[tuple[int | None, bool]] | None:
    """A ``CacheType=`` value in herdtools7's per-processor syntax (``lib/cacheType.mll``
    before it went system-wide: ``P0:DIC P1:IDC`` or ``0:DIC``; a word without a thread
    applies to every thread), as (thread or None, DIC?) per word; None if no word names
    a thread.  ValueError, one line, on a word that is not ``[P]N:IDC``, ``[P]N:DIC``,
    ``IDC`` or ``DIC``."""
    words = "".join(" " if c in ",\"'" else c for c in text).split()
    if not any(":" in w for w in words):
        return None
    out: list[tuple[int | None, bool]] = []
    for word in words:
        who, _, key = word.rpartition(":")
        num = who[1:] if who[:1] in ("P", "p") else who
        if key.upper() not in ("IDC", "DIC") or (who and not num.isdigit()):
            raise ValueError(f"cache type {text.strip()!r}: {word!r} is not [P]N:IDC, "
                             "[P]N:DIC, IDC or DIC")
        out.append((int(num) if who else None, key.upper() == "DIC"))
    return out


def parse_per_thread(text: str, nthreads: int) -> tuple[CacheType, ...] | None:
    """``per_thread_words`` as one cache type per thread (DIC implies IDC), or None;
    ValueError if a word names a thread the test does not have."""
    words = per_thread_words(text)
    if words is None:
        return None
    idc = [False] * nthreads
    dic = [False] * nthreads
    for proc, is_dic in words:
        if proc is not None and proc >= nthreads:
            raise ValueError(f"cache type {text.strip()!r}: thread {proc} is not one of "
                             f"this test's {nthreads}")
        for i in range(nthreads) if proc is None else (proc,):
            idc[i] = True
            dic[i] = dic[i] or is_dic
    return tuple(CacheType.DIC1 if d else CacheType.IDC1 if i else CacheType.IDC0
                 for i, d in zip(idc, dic, strict=True))


@dataclass(frozen=True, slots=True)
class CpuProfile:
    """How one CPU's caches behave (``cache``) and what its ``CTR_EL0`` advertises
    (``advertised``; the same unless it is an erratum profile)."""

    cache: CacheType
    advertised: CacheType | None = None
    name: str = ""  # an erratum's name (``ERRATA``), for schedules and messages

    @property
    def says(self) -> CacheType:
        return self.cache if self.advertised is None else self.advertised

    def spelled(self) -> str:
        """How schedules record it: the cache type, or the erratum's name."""
        return self.name or self.cache.value

    @classmethod
    def parse(cls, text: str) -> CpuProfile:
        """A cache type (``CacheType.parse``) or an erratum's name (``ERRATA``)."""
        erratum = ERRATA.get(text.strip().lower())
        return erratum if erratum is not None else cls(CacheType.parse(text))


# CPUs that advertise one cache type and behave as another.
ERRATA: dict[str, CpuProfile] = {
    # Arm Neoverse-N1 erratum 1542419: "The core might fetch a stale instruction from
    # memory which violates the ordering of instruction fetches"; it advertises
    # CTR_EL0.DIC=1, and Linux hides DIC from user space so that its IC IVAUs trap to
    # firmware, which does the workaround (James Morse, "arm64: errata: Hide
    # CTR_EL0.DIC on systems affected by Neoverse-N1 #1542419", v5.5).  Modelled as a
    # CPU whose I-cache behaves as DIC=0: a store does not invalidate it, IC IVAU does.
    "neoverse-n1-1542419": CpuProfile(CacheType.IDC1, CacheType.DIC1,
                                      "neoverse-n1-1542419"),
}


@dataclass(frozen=True, slots=True)
class FetchConfig:
    cache: CacheType = CacheType.IDC0
    iline: int = 64  # I-cache line in bytes (CTR_EL0.IminLine)
    dline: int = 64  # D-cache line in bytes (CTR_EL0.DminLine)
    # herd7's model makes IC IALLU broadcast like IC IALLUIS; the Arm ARM does not.
    iallu_broadcast: bool = False
    # Per CPU (rule 11), or () for every CPU as ``cache``.
    cpus: tuple[CpuProfile, ...] = ()

    def __post_init__(self) -> None:
        for name, size in (("iline", self.iline), ("dline", self.dline)):
            if size < 4 or size & (size - 1):
                raise ValueError(f"{name} must be a power of two >= 4, not {size}")

    def profile(self, cpu: int) -> CpuProfile:
        return self.cpus[cpu] if self.cpus else CpuProfile(self.cache)

    @property
    def mixed(self) -> bool:
        """Whether CPUs' caches behave differently (rule 11's general case)."""
        return len({p.cache for p in self.cpus}) > 1

    def _ctr(self, cache: CacheType) -> int:
        iminline = (self.iline // 4).bit_length() - 1
        dminline = (self.dline // 4).bit_length() - 1
        return ((1 << 31) | (int(cache.dic) << 29) | (int(cache.idc) << 28)
                | (dminline << 24) | (dminline << 20) | (dminline << 16) | (0b11 << 14)
                | iminline)

    @property
    def ctr_el0(self) -> int:
        """CTR_EL0 as the machine advertises it: line sizes, PIPT, IDC and DIC (every
        CPU's when they are alike; the system-wide safe value otherwise)."""
        return self.sanitised_ctr_el0

    def ctr_el0_of(self, cpu: int) -> int:
        """CTR_EL0 as ``cpu`` advertises it."""
        return self._ctr(self.profile(cpu).says)

    @property
    def sanitised_ctr_el0(self) -> int:
        """The system-wide safe CTR_EL0, as Linux computes it (``arm64_ftr_reg_ctrel0``,
        ``read_sanitised_ftr_reg()``: IDC and DIC are lower-safe, so each is set only
        if every CPU advertises it); what the kernel's alternatives and ``read_ctr``
        act on."""
        return self._ctr(CacheType.common([p.says for p in self.cpus] or [self.cache]))


_Buffer = bytearray | memoryview


@dataclass(slots=True)
class _Cpu:
    icache: bytearray
    iview: _Buffer  # possibly shared with an emulator
    invalid: set[int]  # I-cache words that hold no value
    pending: set[int]  # words where the next catch-up may change the I-view
    changed: set[int]  # I-view words that differ from the initial text (for reset)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a run can change in the model, for save/restore during search."""

    dside: bytes
    pou: bytes
    cpus: tuple[tuple[bytes, frozenset[int], frozenset[int], bytes, frozenset[int]], ...]
    touched: frozenset[int]
    pieces: tuple[tuple[int, int, int], ...]
    torn: tuple[tuple[int, frozenset[int]], ...]
    whole: tuple[tuple[int, frozenset[int]], ...]
    queues: tuple[tuple[tuple[int, int], ...], ...] = ()
    pou_time: tuple[tuple[int, int], ...] = ()
    key: list[bytes] = field(default_factory=list, compare=False)  # its state key, once known


# FetchModel._key_tail when there are no torn words, no queued maintenance and no cleans
# with a time (the repr of what it digests then)
_EMPTY_TAIL = repr(([], [], None, [])).encode()


def _word(buf: _Buffer | bytes, off: int) -> int:
    return int.from_bytes(buf[off:off + 4], "little")


class FetchModel:
    """The instruction-fetch model of one machine (one text, ``ncpus`` CPUs)."""

    def __init__(self, config: FetchConfig, text: bytes, ncpus: int, *,
                 dside: _Buffer | None = None,
                 iviews: Sequence[_Buffer] | None = None) -> None:
        if len(text) % max(config.iline, config.dline):
            raise ModelError(f"text size {len(text):#x} is not a whole number of cache lines")
        if ncpus < 1:
            raise ModelError("a machine needs at least one CPU")
        if config.cpus and len(config.cpus) != ncpus:
            raise ModelError(f"{len(config.cpus)} CPU cache profiles for {ncpus} CPUs")
        self.config = config
        # Rule 11: per CPU, whether its stores reach the PoU at once (IDC) and whether
        # the PoU's changes invalidate its I-cache (DIC); the PoU is the D-side itself
        # when every CPU is IDC=1.
        caches = [config.profile(i).cache for i in range(ncpus)]
        self.idc = [c.idc for c in caches]
        self.pou_shared = all(self.idc)
        self.mixed = config.mixed
        self.size = len(text)
        self.ncpus = ncpus
        self.initial = bytes(text)
        self.dside: _Buffer = dside if dside is not None else bytearray(text)
        if len(self.dside) != self.size:
            raise ModelError("the D-side buffer must be as large as the text")
        self.dside[0:self.size] = self.initial
        self.pou: _Buffer = self.dside if self.pou_shared else bytearray(text)
        views: list[_Buffer] = (list(iviews) if iviews is not None
                                else [bytearray(text) for _ in range(ncpus)])
        if len(views) != ncpus or any(len(v) != self.size for v in views):
            raise ModelError("one I-view buffer per CPU, each as large as the text")
        self.cpus: list[_Cpu] = []
        for view in views:
            view[0:self.size] = self.initial
            self.cpus.append(_Cpu(bytearray(text), view, set(), set(), set()))
        self._dic_cpus = [c for c, cache in zip(self.cpus, caches, strict=True) if cache.dic]
        self._imask = ~(config.iline - 1)
        self._dmask = ~(config.dline - 1)
        # Words the D-side ever stored to in this run: only they can differ anywhere.
        self.touched: set[int] = set()
        # Per CPU, the words it can ever fetch (None: any).  A hint from whoever knows
        # the code (e.g. a litmus test's control flow): choices and state-key parts for
        # words a CPU never fetches cannot change any outcome, so they are left out.
        self.scopes: list[frozenset[int] | None] = [None] * ncpus
        # Per CPU, the words it may still fetch from where it is now (None: any), set by
        # the machine before it asks for choices or a key (``Machine.set_fetch_liveness``):
        # the same, for the rest of the run (a CPU switched off fetches nothing more).
        self.live: list[frozenset[int] | None] = [None] * ncpus
        # And the words whose I-view copy it may still fetch: those it may reach before a
        # context synchronization event, whose catch-up overwrites the whole I-view.
        self.view_live: list[frozenset[int] | None] = [None] * ncpus
        self._live_key: tuple[bytes, int, tuple[frozenset[int] | None, ...]] = (b"", -1, ())
        # Torn-word bookkeeping: word -> (value before the first piece, bytes written).
        self._pieces: dict[int, tuple[int, int]] = {}
        self._torn: dict[int, set[int]] = {}  # word -> values that mixed two writes
        self._whole: dict[int, set[int]] = {}  # word -> values it held whole (torn words only)
        # Rule 9: per CPU, its cache maintenance not yet complete, in issue order, as
        # (operation, argument): _INVAL_LINE line, _INVAL_ALL -1, _INVAL_CPU cpu,
        # _CLEAN_LINE line, _INVAL_CPU_LINE line | cpu << 32.  Only with ``deferred``.
        self.deferred = False
        self.queues: list[list[tuple[int, int]]] = [[] for _ in range(ncpus)]
        # Rule 10: the text's history, and per D-cache line the time of what the PoU
        # holds (absent: the initial text, or no history)
        self.history: TextHistory | None = None
        self.pou_time: dict[int, int] = {}
        # Generations (issue 15): every change of the state above counts one, so that a
        # search that comes back to a snapshot the model still holds restores nothing,
        # and a key or snapshot of an unchanged state is not made again.
        self.gen = 0
        self._holds: tuple[Snapshot | None, int] = (None, -1)  # (snapshot, generation)
        self._key: tuple[bytes, int] = (b"", -1)  # (state key, generation)
        self.stale: set[int] = set()  # see restore()
        # Rule 7 and the words of the reset in C (``_fastpath.catch_up``,
        # ``model_reset``), set by a machine with the compiled path
        self.catch_up_c: Callable[[FetchModel, int], list[int]] | None = None
        self.reset_c: Callable[[FetchModel], list[list[int]]] | None = None
        # the words' part of the state key (``_fastpath.key_words``), and the CPUs' part
        # of a restore (``_fastpath.restore_cpus``)
        self.key_words_c: Callable[[FetchModel], bytes] | None = None
        self.restore_c: Callable[[FetchModel, tuple[object, ...]], list[list[int]]] | None = None

    # -- reset and snapshots ---------------------------------------------------------
    def reset(self) -> list[list[int]]:
        """Back to the initial text everywhere; returns, per CPU, the I-view words changed."""
        self.gen += 1
        out: list[list[int]]
        if self.reset_c is not None:
            out = self.reset_c(self)
        else:
            init = self.initial
            for w in self.touched:
                self.dside[w:w + 4] = init[w:w + 4]
                if not self.pou_shared:
                    self.pou[w:w + 4] = init[w:w + 4]
            out = []
            for cpu in self.cpus:
                changed = sorted(cpu.changed)
                for w in changed:
                    cpu.iview[w:w + 4] = init[w:w + 4]
                for w in self.touched | cpu.invalid:
                    cpu.icache[w:w + 4] = init[w:w + 4]
                cpu.invalid.clear()
                cpu.pending.clear()
                cpu.changed.clear()
                out.append(changed)
        self.touched.clear()
        self._pieces.clear()
        self._torn.clear()
        self._whole.clear()
        for q in self.queues:
            q.clear()
        self.pou_time.clear()
        return out

    def set_scope(self, cpu: int, words: frozenset[int] | None) -> None:
        """``scopes[cpu]`` (see ``__init__``); the key depends on it."""
        self.scopes[cpu] = words
        self.gen += 1

    def holds(self, snap: Snapshot) -> bool:
        """Whether the model is in ``snap``'s state, known without comparing: nothing
        changed since ``snap`` was taken or restored."""
        held, gen = self._holds
        return held is snap and gen == self.gen

    def snapshot(self) -> Snapshot:
        held, gen = self._holds
        if held is not None and gen == self.gen:
            return held  # snapshots are immutable: the same state, the same snapshot
        snap = Snapshot(
            bytes(self.dside[0:self.size]),
            bytes(self.pou[0:self.size]) if not self.pou_shared else b"",
            tuple((bytes(c.icache), frozenset(c.invalid), frozenset(c.pending),
                   bytes(c.iview[0:self.size]), frozenset(c.changed)) for c in self.cpus),
            frozenset(self.touched),
            tuple((w, v, m) for w, (v, m) in self._pieces.items()),
            tuple((w, frozenset(s)) for w, s in self._torn.items()),
            tuple((w, frozenset(s)) for w, s in self._whole.items()),
            tuple(tuple(q) for q in self.queues),
            tuple(self.pou_time.items()),
        )
        self._holds = (snap, self.gen)
        if self._key[1] == self.gen:
            snap.key.append(self._key[0])
        return snap

    def restore(self, snap: Snapshot) -> list[list[int]]:
        """Return to ``snap``; returns, per CPU, the I-view words whose bytes changed."""
        if self.holds(snap):
            self.stale = set()
            return [[] for _ in self.cpus]
        self.gen += 1
        # Words whose fetch kind may change besides the I-view words returned: those
        # that became touched or untouched, and torn words (textside.kind_for)
        self.stale = self.touched.symmetric_difference(snap.touched)
        if self._torn or snap.torn:
            self.stale.update(self._torn)
            self.stale.update(w for w, _ in snap.torn)
        self.dside[0:self.size] = snap.dside
        if not self.pou_shared:
            self.pou[0:self.size] = snap.pou
        out = (self._restore_cpus(snap) if self.restore_c is None
               else self.restore_c(self, snap.cpus))
        if self.stale or self.touched != snap.touched:
            self.touched = set(snap.touched)
        self._pieces = {w: (v, m) for w, v, m in snap.pieces}
        self._torn = {w: set(s) for w, s in snap.torn}
        self._whole = {w: set(s) for w, s in snap.whole}
        self.queues = ([list(q) for q in snap.queues] if snap.queues
                       else [[] for _ in range(self.ncpus)])
        self.pou_time = dict(snap.pou_time)
        self._holds = (snap, self.gen)
        if snap.key:
            self._key = (snap.key[0], self.gen)
        return out

    def _restore_cpus(self, snap: Snapshot) -> list[list[int]]:
        """``restore``'s per-CPU part: each CPU takes its part of ``snap``; per CPU, the
        I-view words whose bytes changed.  (A search often comes back to a state where
        most CPUs' parts are as they were: compared in C, and only what differs is
        copied.)"""
        out: list[list[int]] = []
        for cpu, (icache, invalid, pending, iview, changed) in zip(self.cpus, snap.cpus,
                                                                   strict=True):
            if cpu.icache != icache:
                cpu.icache[:] = icache
            if cpu.invalid != invalid:
                cpu.invalid = set(invalid)
            if cpu.pending != pending:
                cpu.pending = set(pending)
            if not cpu.changed and not changed:
                out.append([])
                continue
            diff = [w for w in cpu.changed | changed if bytes(cpu.iview[w:w + 4]) != iview[w:w + 4]]
            for w in diff:
                cpu.iview[w:w + 4] = iview[w:w + 4]
            if cpu.changed != changed:
                cpu.changed = set(changed)
            out.append(sorted(diff))
        return out

    def state_key(self) -> bytes:
        """A digest of the state that can affect what any CPU will ever fetch.

        Words never stored to hold the initial text everywhere, so only touched words
        (and the validity of lines) enter the key.
        """
        live = (*self.live, *self.view_live)
        if any(words is not None for words in live):
            key, gen, held = self._live_key
            if gen == self.gen and held == live:
                return key
            key = self._digest()
            self._live_key = (key, self.gen, live)
            return key
        key, gen = self._key
        if gen == self.gen:
            return key
        key = self._digest()
        self._key = (key, self.gen)
        held_snap, gen = self._holds
        if held_snap is not None and gen == self.gen:
            held_snap.key[:] = [key]
        return key

    def _digest(self) -> bytes:
        if self.key_words_c is not None:
            return digest(self.key_words_c(self) + self._key_tail())
        parts: list[Bytes] = []
        add = parts.append
        dside, pou = self.dside, self.pou
        for w in sorted(self.touched):
            add(w.to_bytes(4, "little"))
            add(dside[w:w + 4])
            add(pou[w:w + 4])
            for cpu, scope, live, view_live in zip(self.cpus, self.scopes, self.live,
                                                   self.view_live, strict=True):
                if (scope is not None and w not in scope) or (live is not None
                                                              and w not in live):
                    continue  # this CPU never fetches w (again): its copies cannot matter
                add(b"i" if w in cpu.invalid else cpu.icache[w:w + 4])
                # (before a catch-up, which refills the I-view from the I-cache)
                add(cpu.iview[w:w + 4] if view_live is None or w in view_live else b"----")
        # Invalid untouched words refill to the initial text, so they cannot matter.
        add(self._key_tail())
        return digest(b"".join(parts))

    def _key_tail(self) -> bytes:
        """The state key's part after the words: torn words, queued maintenance and the
        times of the PoU's lines."""
        if not (self._pieces or self._torn or self.pou_time or any(self.queues)):
            return _EMPTY_TAIL
        return repr((sorted(self._pieces.items()),
                     sorted((w, sorted(s)) for w, s in self._torn.items()),
                     self.queues if any(self.queues) else None,
                     sorted(self.pou_time.items()))).encode()

    # -- rule 1: stores -----------------------------------------------------------
    def store(self, off: int, data: bytes, cpu: int | None = None) -> None:
        """A data store of ``data`` at text offset ``off`` (single-copy atomic) by ``cpu``
        (``None``: a store whose DIC=1 invalidation completes at once)."""
        self.gen += 1
        end = off + len(data)
        if off < 0 or end > self.size:
            raise ModelError(f"store at {off:#x}+{len(data)} is outside the text")
        first = off & ~3
        for w in range(first, end, 4):
            lo = max(off, w) - w
            hi = min(end, w + 4) - w
            old = _word(self.dside, w)
            self.touched.add(w)
            if lo == 0 and hi == 4:
                self._pieces.pop(w, None)
                new = int.from_bytes(data[w - off:w - off + 4], "little")
                if w in self._whole:
                    self._whole[w].add(new)
                continue
            orig, mask = self._pieces.get(w, (old, 0))
            mask |= ((1 << hi) - 1) & ~((1 << lo) - 1)
            cur = bytearray(self.dside[w:w + 4])
            cur[lo:hi] = data[w + lo - off:w + hi - off]
            new = int.from_bytes(cur, "little")
            whole = self._whole.setdefault(w, {_word(self.initial, w), orig})
            if mask == 0xF:
                self._pieces.pop(w, None)
                whole.add(new)
            else:
                self._pieces[w] = (orig, mask)
                if new != orig:
                    self._torn.setdefault(w, set()).add(new)
        self.dside[off:end] = data
        if self.mixed:
            self._store_mixed(off, end, cpu)
        elif self.config.cache.dic:
            self._dic_store(off, end, cpu, self.cpus)

    def _dic_store(self, off: int, end: int, cpu: int | None, dic: Sequence[_Cpu]) -> None:
        """A store reached the PoU: its lines invalidated in the ``dic`` CPUs' I-caches."""
        for line in range(off & self._imask, end, self.config.iline):
            if cpu is None or not self.deferred:
                self._invalidate_line(line, dic)
                continue
            # Rule 9: other CPUs' I-caches are coherent with the store as soon as
            # they can see it; the storing CPU's own line only once it completes.
            own = self.cpus[cpu]
            self._invalidate_line(line, [c for c in dic if c is not own])
            if own in dic:
                self.queues[cpu].append((_INVAL_CPU_LINE, line | cpu << 32))

    def _store_mixed(self, off: int, end: int, cpu: int | None) -> None:
        """Rule 11: a store by ``cpu`` (``None``: as an IDC=0 CPU's) on a machine whose
        CPUs' caches differ."""
        if not self.pou_shared:
            if cpu is None or not self.idc[cpu]:
                return  # in the D-side until a clean or a write-back
            for line in range(off & self._dmask, end, self.config.dline):
                self._clean(line, invalidate=False)  # its line, written back whole
        if self._dic_cpus:
            self._dic_store(off, end, cpu, self._dic_cpus)

    # -- rules 2, 6: cleaning to the PoU -----------------------------------------
    def dc_cvau(self, off: int, cpu: int | None = None, as_of: int | None = None) -> None:
        """``DC CVAU`` on the line holding ``off`` (any CPU: the PoU is shared); issued by
        ``cpu`` (rule 9; ``None``: complete at once); ``as_of``: the line as it was at
        that time of the history (rule 10), else as it is when the clean completes."""
        self._check(off)
        if self.pou_shared:
            return
        line = off & self._dmask
        if as_of is None:
            self._issue(cpu, _CLEAN_LINE, line)
        else:
            if self.history is None:
                raise ModelError("a clean as of a time needs the text's history")
            self._issue(cpu, _CLEAN_AS_OF, line | as_of << 32)

    def write_back(self, line: int) -> None:
        """A spontaneous write-back of a D-cache line to the PoU (IDC=0 only)."""
        if self.pou_shared:
            raise ModelError("write-back is not a choice when IDC=1: stores reach the PoU")
        self.gen += 1
        self._clean(line)

    def _clean(self, line: int, invalidate: bool = True) -> None:
        end = line + self.config.dline
        self.pou[line:end] = bytes(self.dside[line:end])
        if self.history is not None:
            self.pou_time[line] = self.history.now()
        if invalidate:
            self._pou_changed(line)

    def _pou_changed(self, line: int) -> None:
        """Rule 11: a DIC=1 CPU's I-cache is coherent with the PoU (with every CPU alike,
        no PoU copy of its own changes when DIC=1: a no-op)."""
        if self.mixed:
            for i in range(line, line + self.config.dline, self.config.iline):
                self._invalidate_line(i & self._imask, self._dic_cpus)

    def _clean_as_of(self, line: int, t: int) -> None:
        assert self.history is not None
        if t <= self.pou_time.get(line, 0):
            return  # rule 10: the PoU holds the line as of a later time already
        self.pou[line:line + self.config.dline] = self.history.line_at(line, self.config.dline, t)
        self.pou_time[line] = t
        self._pou_changed(line)

    # -- rule 3: invalidation -----------------------------------------------------------
    def ic_ivau(self, off: int, cpu: int | None = None) -> None:
        """``IC IVAU``: the line holding ``off`` becomes invalid in every CPU's I-cache."""
        self._check(off)
        self._issue(cpu, _INVAL_LINE, off & self._imask)

    def ic_iallu(self, cpu: int, *, deferred: bool = False) -> None:
        """``IC IALLU``: invalidate all of the issuing CPU's I-cache (not broadcast)."""
        if self.config.iallu_broadcast:
            self._issue(cpu if deferred else None, _INVAL_ALL, -1)
        else:
            self._issue(cpu if deferred else None, _INVAL_CPU, cpu)

    def ic_ialluis(self, cpu: int | None = None) -> None:
        """``IC IALLUIS``: invalidate every CPU's whole I-cache."""
        self._issue(cpu, _INVAL_ALL, -1)

    # -- rule 9: completion ---------------------------------------------------------------
    def _issue(self, cpu: int | None, op: int, arg: int) -> None:
        self.gen += 1
        if cpu is not None and self.deferred:
            self.queues[cpu].append((op, arg))
        else:
            self._perform(op, arg)

    def _perform(self, op: int, arg: int) -> None:
        if op == _INVAL_LINE:
            self._invalidate_line(arg, self.cpus)
        elif op == _INVAL_ALL:
            self._invalidate_all(self.cpus)
        elif op == _INVAL_CPU:
            self._invalidate_all([self.cpus[arg]])
        elif op == _INVAL_CPU_LINE:
            self._invalidate_line(arg & 0xFFFF_FFFF, [self.cpus[arg >> 32]])
        elif op == _CLEAN_AS_OF:
            self._clean_as_of(arg & 0xFFFF_FFFF, arg >> 32)
        else:
            self._clean(arg)

    def complete(self, cpu: int, index: int) -> None:
        """Rule 9: perform ``cpu``'s ``index``-th outstanding maintenance now."""
        q = self.queues[cpu]
        if not 0 <= index < len(q):
            raise ModelError(f"CPU{cpu} has no outstanding cache maintenance {index}")
        self.gen += 1
        self._perform(*q.pop(index))

    def describe_pending(self, cpu: int, index: int) -> str:
        """``cpu``'s ``index``-th outstanding maintenance, in words (for timelines)."""
        if not 0 <= index < len(self.queues[cpu]):
            raise ModelError(f"CPU{cpu} has no outstanding cache maintenance {index}")
        op, arg = self.queues[cpu][index]
        if op == _INVAL_LINE:
            return f"(invalidate line +{arg:#x} everywhere)"
        if op == _INVAL_ALL:
            return "(invalidate every I-cache)"
        if op == _INVAL_CPU:
            return f"(invalidate CPU{arg}'s I-cache)"
        if op == _INVAL_CPU_LINE:
            return f"(invalidate line +{arg & 0xFFFF_FFFF:#x} in its own I-cache)"
        if op == _CLEAN_AS_OF:
            return (f"(clean line +{arg & 0xFFFF_FFFF:#x} to the PoU as it was at time "
                    f"{arg >> 32})")
        return f"(clean line +{arg:#x} to the PoU)"

    def complete_all(self, cpu: int) -> None:
        """Rule 9: a ``DSB`` of ``cpu``: all its outstanding maintenance, in order."""
        q = self.queues[cpu]
        if q:
            self.gen += 1
        while q:
            self._perform(*q.pop(0))

    def complete_cleans(self, cpu: int) -> None:
        """Rule 9: a ``DMB`` of ``cpu`` that orders stores: its outstanding ``DC CVAU``s,
        which a DMB orders as it orders stores (an ``IC`` needs a DSB)."""
        q = self.queues[cpu]
        if q:
            self.gen += 1
        for item in [i for i in q if i[0] in _CLEANS]:
            q.remove(item)
            self._perform(*item)

    def complete_choices(self, cpu: int) -> list[int]:
        """The outstanding maintenance of ``cpu`` a scheduler may complete now (one per
        distinct operation: completing either of two equal ones is the same)."""
        seen: set[tuple[int, int]] = set()
        out = []
        for i, item in enumerate(self.queues[cpu]):
            if item not in seen:
                seen.add(item)
                out.append(i)
        return out

    def _invalidate_line(self, line: int, cpus: Sequence[_Cpu]) -> None:
        words = range(line, line + self.config.iline, 4)
        for cpu in cpus:
            cpu.invalid.update(words)
            cpu.pending.update(words)

    def _invalidate_all(self, cpus: Sequence[_Cpu]) -> None:
        words = range(0, self.size, 4)
        for cpu in cpus:
            cpu.invalid.update(words)
            cpu.pending.update(words)

    # -- rules 4, 5: fills and evictions --------------------------------------------
    def fill(self, cpu: int, word: int, from_dside: bool = False) -> None:
        """An invalid I-cache word takes its value from the PoU (or, IDC=0, the D-side)."""
        c = self.cpus[cpu]
        if word not in c.invalid:
            raise ModelError(f"fill of CPU{cpu} word {word:#x}: the word is valid")
        if from_dside and self.pou_shared:
            raise ModelError("fill from the D-side is only a distinct choice when IDC=0")
        src = self.dside if from_dside else self.pou
        self.gen += 1
        c.icache[word:word + 4] = bytes(src[word:word + 4])
        c.invalid.discard(word)
        c.pending.add(word)

    def refill(self, cpu: int, word: int, from_dside: bool = False) -> None:
        """Rules 5 then 4 as one choice: the word is evicted if valid, then filled.

        For exploration this loses nothing: an eviction only matters through the fill
        that follows it, either chosen or done by the next catch-up (which a refill from
        the PoU just before that catch-up reproduces).
        """
        c = self.cpus[cpu]
        if word not in c.invalid:
            self.evict(cpu, word)
        self.fill(cpu, word, from_dside)

    def refill_choices(self, cpu: int) -> list[tuple[int, bool]]:
        """Refills that change the I-cache word (its value, or its being invalid):
        ``(word, from_dside)``, as ``choices`` offers them when compact."""
        return [(w, code == CHOICE_FILL_DSIDE) for code, _, w in self.choices([cpu], True)
                if code in (CHOICE_FILL, CHOICE_FILL_DSIDE)]

    def evict(self, cpu: int, word: int) -> None:
        """A valid I-cache word becomes invalid."""
        c = self.cpus[cpu]
        self._check(word)
        if word in c.invalid:
            raise ModelError(f"evict of CPU{cpu} word {word:#x}: the word is already invalid")
        self.gen += 1
        c.invalid.add(word)
        c.pending.add(word)

    # -- rule 7: catch-up -------------------------------------------------------------
    def catch_up(self, cpu: int) -> list[int]:
        """Fill every invalid word from the PoU, then copy the I-cache into the I-view.

        Returns the words whose I-view value changed, in address order.
        """
        if self.catch_up_c is not None:
            return self.catch_up_c(self, cpu)
        c = self.cpus[cpu]
        if not c.invalid and not c.pending:
            return []
        self.gen += 1
        pou, icache, iview = self.pou, c.icache, c.iview
        for w in c.invalid:
            icache[w:w + 4] = pou[w:w + 4]
        c.invalid.clear()
        changed: list[int] = []
        init = self.initial
        for w in c.pending:
            new = icache[w:w + 4]
            if iview[w:w + 4] != new:
                iview[w:w + 4] = new
                changed.append(w)
                if new == init[w:w + 4]:
                    c.changed.discard(w)
                else:
                    c.changed.add(w)
        c.pending.clear()
        changed.sort()
        return changed

    def catch_up_would_change(self, cpu: int) -> bool:
        """Whether a catch-up of ``cpu`` now would change its I-view (``choices``)."""
        return any(code == CHOICE_CATCH_UP for code, _, _ in self.choices([cpu], False))

    # -- rule 8: fetch ----------------------------------------------------------------
    def fetch(self, cpu: int, off: int) -> int:
        """The word ``cpu`` executes at ``off``: whole, from its I-view."""
        if off & 3:
            raise ModelError(f"misaligned fetch at {off:#x}")
        return _word(self.cpus[cpu].iview, off)

    def is_torn(self, cpu: int, off: int) -> bool:
        """Whether the I-view word of ``cpu`` at ``off`` is a torn mix of two writes."""
        torn = self._torn.get(off)
        if not torn:
            return False
        value = self.fetch(cpu, off)
        return value in torn and value not in self._whole.get(off, ())

    # -- choices a scheduler may make -------------------------------------------------
    def choices(self, cpus: Sequence[int], compact: bool) -> list[tuple[int, int, int]]:
        """Every choice of the rules above that can change an outcome now, for the CPUs
        ``cpus`` (those that can still run), as ``(CHOICE_*, cpu, word or line or
        index)``: per CPU in order its catch-up, fills (``compact``: refills) and
        evictions (none when ``compact``), completions; then the write-backs, if
        ``cpus`` is not empty.  One pass over the touched words with the bytes of each
        read once, since a random walk asks at every model draw; the per-rule methods
        below are views of it, and ``tests/test_fetch_choices.py`` checks it against a
        reference written rule by rule."""
        out: list[tuple[int, int, int]] = []
        touched = self.touched
        shared = self.pou_shared
        pou, dside = self.pou, self.dside
        words = sorted(touched)
        pous = [pou[w:w + 4] for w in words]
        dsides = pous if shared else [dside[w:w + 4] for w in words]
        both = list(zip(words, pous, dsides, strict=True))
        for i in cpus:
            c = self.cpus[i]
            scope = self.scopes[i]
            if c.pending:  # catch_up_would_change
                view_live, iview, icache, invalid = self.view_live[i], c.iview, c.icache, c.invalid
                for w in c.pending:
                    if (scope is not None and w not in scope) or (view_live is not None
                                                                  and w not in view_live):
                        continue
                    src = pou if w in invalid else icache
                    if src[w:w + 4] != iview[w:w + 4]:
                        out.append((CHOICE_CATCH_UP, i, -1))
                        break
            if both:
                live, invalid, icache = self.live[i], c.invalid, c.icache
                evicts: list[tuple[int, int, int]] = []
                for w, p, d in both:
                    if (scope is not None and w not in scope) or (live is not None
                                                                  and w not in live):
                        continue
                    if compact:  # refill_choices
                        gone = w in invalid
                        cached = icache[w:w + 4]
                        if gone or cached != p:
                            out.append((CHOICE_FILL, i, w))
                        if not shared and d != p and (gone or cached != d):
                            out.append((CHOICE_FILL_DSIDE, i, w))
                    elif w in invalid:  # fill_choices
                        out.append((CHOICE_FILL, i, w))
                        if not shared and d != p:
                            out.append((CHOICE_FILL_DSIDE, i, w))
                    else:  # evict_choices
                        cached = icache[w:w + 4]
                        if cached != p or cached != d:
                            evicts.append((CHOICE_EVICT, i, w))
                out += evicts
            queue = self.queues[i]
            if queue:  # complete_choices
                out += [(CHOICE_COMPLETE, i, k) for k in self.complete_choices(i)]
        if cpus and not shared and touched:
            out += [(CHOICE_WRITE_BACK, -1, ln) for ln in self.write_back_choices()]
        return out

    def fill_choices(self, cpu: int) -> list[tuple[int, bool]]:
        """Fills that can change an outcome: ``(word, from_dside)``, as ``choices``
        offers them.

        Only touched words can hold anything but the initial text, and a fill of an
        untouched word gives what the next catch-up would give anyway.
        """
        return [(w, code == CHOICE_FILL_DSIDE) for code, _, w in self.choices([cpu], False)
                if code in (CHOICE_FILL, CHOICE_FILL_DSIDE)]

    def evict_choices(self, cpu: int) -> list[int]:
        """Valid words whose refill could give another value than the one cached, as
        ``choices`` offers their evictions."""
        return [w for code, _, w in self.choices([cpu], False) if code == CHOICE_EVICT]

    def write_back_choices(self) -> list[int]:
        """D-cache lines whose PoU copy differs from the D-side (IDC=0 only)."""
        if self.pou_shared:
            return []
        lines = sorted({w & self._dmask for w in self.touched})
        return [ln for ln in lines
                if self.pou[ln:ln + self.config.dline] != self.dside[ln:ln + self.config.dline]]

    def _check(self, off: int) -> None:
        if not 0 <= off < self.size:
            raise ModelError(f"offset {off:#x} is outside the text")
