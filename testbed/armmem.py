"""The Arm data-memory model: Promising-ARM, executable one decision at a time.

Which model, and why
--------------------
Promising-ARM (Pulte, Pichon-Pharabod, Kang, Lee, Hur, "Promising-ARM/RISC-V: a simpler
and faster operational concurrency model", PLDI 2019; Coq development
``snu-sf/promising-arm``, ``src/promising/Promising.v``) is proven equivalent to the
Arm ARM's axiomatic model (the one herd7's ``aarch64.cat`` implements, other-multi-copy
atomic).  It is chosen over Flat (Pulte et al., POPL 2018) because its threads execute
*in program order*: each CPU of the machine runs its instructions one after the other
on Unicorn, as now, and the weakness lives entirely in which write a load may read
(views over a timestamped message memory), not in out-of-order instruction instances
and speculation, which an emulator that executes instructions one at a time cannot
provide.  Every choice the model leaves open (which message a load reads, whether a
store-exclusive fails) is a decision the scheduler records, so replay stays exact.

Memory is a list of messages ``<loc := value>_tid``; a message's timestamp is its
position (1, 2, ...); timestamp 0 is the initial value of every location.  A *view* is
a timestamp.  Each thread keeps (names as in Promising.v):

- ``coh[loc]``: the latest message of ``loc`` it has read or written (coherence);
- ``vrp``/``vwp``: the views its later reads/writes must be at least (set by barriers
  and acquires: "p" for post);
- ``vrm``/``vwm``: the maximum of its reads'/writes' views so far ("m" for max), which
  barriers and releases propagate;
- ``vcap``: control and address dependencies so far (an ISB makes later reads respect
  it);
- ``vrel``: its last release write (a later ``LDAR``, RCsc, respects it);
- ``fwd[loc]``: its last write to ``loc`` (timestamp, the write's dependency view,
  whether exclusive): a read of its own write takes that view instead of the timestamp
  (forwarding from the store buffer);
- ``exbank``: the message its last load-exclusive read, for the store-exclusive;
- ``regs[r]``: the view of each register's value (address and data dependencies);
  register 32 is NZCV.

The rules, numbered; ``tests/test_armmem.py`` has one test per rule, named after it:

- **R1 coherence**: a read of ``loc`` reads a message at or after ``coh[loc]``.
- **R2 latest**: with pre-view ``v = vaddr | vrp | (vrel if RCsc acquire)``, the read
  reads a message no older than the last message of ``loc`` at or below ``v``.
- **R3 forwarding**: reading the thread's own last write to ``loc`` gives the write's
  dependency view, not its timestamp (unless that write was exclusive and the read is an
  acquire); otherwise the message's timestamp.  The read's view is the join with ``v``.
- **R4 acquire**: ``LDAR`` (RCsc) includes ``vrel`` in ``v``; ``LDAPR`` (RCpc) does not.
  Both raise ``vrp`` and ``vwp`` to the read's view: later accesses are ordered after.
- **R5 read bookkeeping**: ``coh[loc]`` becomes the message read; ``vrm`` joins the
  read's view; ``vcap`` joins the address view; a load-exclusive fills ``exbank``.
- **W1 fresh timestamp**: a write that fulfils no promise appends a message after every
  other one (see "Promises" below for the other kind).
- **W2 write view**: ``vaddr | vdata | vcap | vwp``, plus ``vrm | vwm`` for a release
  (``STLR``): a release is ordered after everything before it.
- **W3 write bookkeeping**: ``coh[loc]``, ``vwm``, ``fwd[loc]`` take the new message;
  ``vcap`` joins the address view; a release sets ``vrel``.
- **W4 exclusive**: a store-exclusive succeeds only if the thread holds an ``exbank``
  and no other thread wrote ``loc`` between the message the load-exclusive read and the
  new one; it may always fail (the architecture allows a spurious failure), which
  clears ``exbank``.  Its status register's view is bottom.
- **A1 atomics** (``CAS``, ``SWP``, ``LD<op>``): a load-exclusive and a store-exclusive
  that cannot fail; with writes always last, the read reads the latest message.  The
  write's data view joins the read's view and its value's registers (the new value's
  for ``CAS``, not the compare value's; the operand for ``SWP`` and ``LD<op>``), so a
  later read of the write by the same thread is ordered after the atomic's read.
- **A2 no-return atomics** (``ST<op>``, and ``LD<op>``/``SWP`` whose destination or
  ``CAS`` whose compare register is ``XZR``): their read is not acquire and "not
  regarded as doing a read for the purpose of a DMB LD barrier" (Arm ARM, B2.3): it
  does not join ``vrm`` (``read(..., noret=True)``).
- **A3 CAS result**: a ``CAS`` that fails returns the read's value, with its view.  One
  that succeeds returns its compare value, which the CPU may take from the compare
  register or from memory: for later reads each result register's view is the lesser
  of the two (its own and the read's); later writes are ordered after the read, as
  after a control dependency (``vcap``), and its own write after the compare value
  too (``vctl``: whether it writes depends on it; ``LB+rel+CAS``, Forbidden).  Arm's
  catalogue decides
  ``MP+rel+CAS-ok-MRs-addr``, ``MP+rel+CAS-ok-RsRs-addr`` and ``LB+rel+CAS-ok-RsRs-addr``
  Allowed, ``MP+rel+CAS-ok-bothRs-addr`` and ``LB+rel+CAS-ok-MRs-addr`` Forbidden: this
  rule gives all five.  It orders more than the architecture in one case: a write after
  a successful ``CAS`` that depends on nothing the ``CAS`` returned (``CAS+data1``).
- **B1 DMB**: ``DMB SY/ISH`` orders reads and writes before against reads and writes
  after (``vrp``, ``vwp`` join ``vrm`` and ``vwm``); ``DMB LD`` orders reads before
  against reads and writes after; ``DMB ST`` writes before against writes after.
  ``DSB`` orders at least as ``DMB`` of the same domain and type.
- **B2 ISB**: ``vrp`` joins ``vcap``: a read after a control dependency and an ISB
  cannot be satisfied before the branch's inputs.
- **C1 control**: a conditional branch joins the view of what it tested into ``vcap``
  (writes after it are ordered, reads are not until an ISB).
- **F1 fetch**: the text is memory like any other: its granules are locations and its
  stores messages, and which value a fetch gets is the fetch model's (``memory.py``).
  A CPU that executes a word fetched from a store has its later reads and writes
  ordered after what that store was ordered after (its W2 view, ``text_write``): an
  instruction executes after its fetch, and a fetched value is what a read of the
  store would give (ESOP 2020's ``f-ob``; ``MP.FR+dmb+fpo-fe`` Forbidden), and its
  coherence on the word's granule reaches the store (``CoFR`` Forbidden).  The W2
  view, not the store's timestamp: with promises the store could have been promised
  just above that view (its writer's earlier stores need not be visible first), and
  scenarios run without promises (``fetched``).
- **F2 cache clean**: a ``DC CVAU`` of a text line may be performed before program-order
  earlier accesses it is not ordered after, so the line it cleans to the PoU may be the
  line as it was at any timestamp from ``clean_view`` on: its address register's view,
  the thread's control view (``vctrl``: ``ctrl; [DC.CVAU]``; not ``vcap``, whose
  address views of earlier accesses do not order a ``DC``), ``vrp`` and ``vwp`` (full
  barriers order it, ``bob``; the other barriers and acquires do not, so this orders a
  little more than the architecture), and its coherence on the line's granules
  (``po-scl-ob``: same-line accesses before it).  ``MP.RF+dmb+addr-cachesync``
  (Allowed): the clean may miss a store that a program-order-earlier load saw.  Which
  timestamp is a scheduler's choice; the fetch model keeps the PoU from going back
  (rule 10 in ``memory.py``).
- **I1 interrupt sent**: an IPI (the write to the interrupt controller) carries the
  sender's W2 view at that point: after a ``DSB``/``DMB`` it covers the sender's earlier
  writes, without one it does not (the IPI may overtake them, which is why Linux's
  ``gic_ipi_send_mask`` issues ``dsb(ishst)`` first).
- **I2 interrupt acknowledged**: the value the receiver reads from the acknowledge
  register has the view the signals sent to it carried, like a read of a message: its
  later accesses are ordered after the sender's writes only through a dependency, a
  control dependency and ``ISB``, or a barrier, which is what Linux's GICv3 driver
  relies on ("the control dependency from gic_read_iar to the ISB in gic_write_eoir is
  enough", ``irq-gic-v3.c``).  Taking the interrupt orders nothing by itself: the
  exception may have been taken for an earlier interrupt.

Promises
--------
A thread may *promise* a write at any time (``promise``: a message appended now, with
the thread's id), and later *fulfil* it when the store executes (``fulfill``), instead
of appending a fresh message:

- **P1 promise**: any message ``<loc := value>_tid`` may be appended at any time.
- **P2 fulfil**: a store fulfils one of its thread's outstanding promises of the same
  location and value whose timestamp is above ``coh[loc]`` and above the write's view
  (W2); the bookkeeping is W3's, at the promise's timestamp.
- **P3 valid end**: an execution counts (its final state is an outcome, its findings
  are findings) only if every promise was fulfilled by then.  A promise that can no
  longer be fulfilled (``coh[loc]`` has reached it) makes the execution dead at once.

This is Promising.v's ``Machine.exec``: steps of any kind, no promise left at the end;
there is no certification step in it (certification there only guarantees that a
thread never gets stuck), so these rules lose nothing and admit nothing more.  A
promise is how ``LB``, ``S``, ``2+2W`` and ``MP+po+...``-shaped outcomes arise: a write
visible before program-order-earlier accesses of its own thread.  Which values to
promise is the caller's question; the machine asks a solo run of the CPU from the
current state (what Promising calls certification) which stores it would perform.

How the machine drives it
-------------------------
``testbed/dataside.py`` (its docstring says how): the host buffers hold each granule's
latest message; a ``READ`` decision makes a load read an older readable one; stores
become messages or fulfil promises; store-exclusives are performed in Python
(``FAIL``: a spurious failure); register views follow ``deps.apply``; promises come
first (``PROMISE``, litmus tests only), from a solo run of the CPU; ``save``/``load``/
``key`` join the machine's snapshot and state key.

Accesses of different sizes
---------------------------
Locations are 8-byte aligned granules; a message holds a granule's 8 bytes.  A store
of fewer bytes appends a message whose other bytes are those of the granule's latest
message, as if the writer had rewritten them; a load extracts its bytes from one
message.  This never lets an aligned access tear (each reads or writes one message),
and it only adds ordering (a narrow write carries the bytes of the latest write beside
it), so it is sound; the cost is completeness for mixed-size tests where parts of one
granule are seen out of order: two narrow stores to one granule, by one CPU or two,
are seen by another in the order of their messages (herd7 -variant mixed allows
``MP-halves``, two 4-byte stores read in the other order; here it is not produced,
``tests/test_dataside.py``).  A protocol whose correctness rests on two fields of one
8-byte word being published in order is therefore not checked here.
"""

from __future__ import annotations

import array
import bisect
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .statehash import digest

__all__ = [
    "GRANULE",
    "NZCV",
    "ArmMemory",
    "Fwd",
    "ReadOrd",
    "ThreadState",
    "WriteOrd",
    "granules",
]

GRANULE = 8
NZCV = 32  # the flags' slot in ThreadState.regs
NREGS = 33


class ReadOrd(enum.IntEnum):
    PLAIN = 0
    ACQUIRE_PC = 1  # LDAPR: RCpc
    ACQUIRE = 2  # LDAR, LDAXR, the A forms of atomics: RCsc


class WriteOrd(enum.IntEnum):
    PLAIN = 0
    RELEASE = 1  # STLR, STLXR, the L forms of atomics


def granules(addr: int, size: int) -> list[tuple[int, int, int]]:
    """The granules an access of ``size`` bytes at ``addr`` touches: (granule address,
    offset in it, bytes in it)."""
    out = []
    end = addr + size
    while addr < end:
        base = addr - addr % GRANULE
        n = min(end, base + GRANULE) - addr
        out.append((base, addr - base, n))
        addr += n
    return out


@dataclass(frozen=True, slots=True)
class Fwd:
    ts: int
    view: int
    ex: bool


_NO_FWD = Fwd(0, 0, False)


@dataclass
class ThreadState:
    """One thread's views (Promising.v's ``Local.t``) and its registers' views."""

    coh: dict[int, int] = field(default_factory=dict)
    vrp: int = 0
    vwp: int = 0
    vrm: int = 0
    vwm: int = 0
    vcap: int = 0
    vrel: int = 0
    fwd: dict[int, Fwd] = field(default_factory=dict)
    exbank: tuple[int, int, int] | None = None  # (loc, ts, view)
    regs: list[int] = field(default_factory=lambda: [0] * NREGS)
    promises: set[int] = field(default_factory=set)  # timestamps promised, not yet fulfilled
    spill: int = 0  # the join of the views stored to the CPU's own stack (deps.apply)
    signal: int = 0  # I1: the view an interrupt sent to this thread carries
    vctrl: int = 0  # F2: control dependencies alone (``vcap`` also has address views)

    def copy(self) -> ThreadState:
        return ThreadState(dict(self.coh), self.vrp, self.vwp, self.vrm, self.vwm,
                           self.vcap, self.vrel, dict(self.fwd), self.exbank,
                           list(self.regs), set(self.promises), self.spill, self.signal,
                           self.vctrl)


class ArmMemory:
    """Messages and thread views; every operation is one rule of the module docstring.

    Values are the granules' bytes; the caller (the machine) keeps the host buffer equal
    to each granule's latest message, so that what it reads there is what a CPU that
    reads the latest message sees."""

    def __init__(self, nthreads: int) -> None:
        self.threads = [ThreadState() for _ in range(nthreads)]
        self.msgs: list[tuple[int, bytes, int]] = []  # (loc, value, tid); ts = index + 1
        # loc -> timestamps of its messages (tuples: saves and loads copy the dict only)
        self.by_loc: dict[int, tuple[int, ...]] = {}
        self.initial: dict[int, bytes] = {}  # loc -> its value at timestamp 0
        self.wviews: dict[int, int] = {}  # F1: a text message's timestamp -> its W2 view
        # Granules no thread ever reads (Machine.set_history): left out of ``key``
        self.history: frozenset[int] = frozenset()
        # What ``key`` digests, built in C (``_fastpath.arm_key``), set by a machine with
        # the compiled path
        self.key_bytes_c: Callable[[ArmMemory], bytes] | None = None

    # -- memory ------------------------------------------------------------------------
    def value(self, loc: int, ts: int) -> bytes:
        return self.initial[loc] if ts == 0 else self.msgs[ts - 1][1]

    def latest(self, loc: int) -> int:
        stamps = self.by_loc.get(loc)
        return stamps[-1] if stamps else 0

    def _last_at_or_below(self, loc: int, view: int) -> int:
        stamps = self.by_loc.get(loc)
        if not stamps:
            return 0
        i = bisect.bisect_right(stamps, view)
        return stamps[i - 1] if i else 0

    def know(self, loc: int, initial: bytes) -> None:
        """Record ``loc``'s initial value (the caller's buffer before any message)."""
        if loc not in self.initial:
            self.initial[loc] = bytes(initial)

    # -- reads -------------------------------------------------------------------------
    def _pre(self, th: ThreadState, vaddr: int, ord: ReadOrd) -> int:
        v = max(vaddr, th.vrp)  # R2
        if ord is ReadOrd.ACQUIRE:
            v = max(v, th.vrel)  # R4: RCsc
        return v

    def readable(self, tid: int, loc: int, vaddr: int = 0,
                 ord: ReadOrd = ReadOrd.PLAIN) -> list[int]:
        """The timestamps a read of ``loc`` by ``tid`` may read, oldest first (R1, R2);
        the last is always the latest message."""
        th = self.threads[tid]
        low = max(th.coh.get(loc, 0),  # R1
                  self._last_at_or_below(loc, self._pre(th, vaddr, ord)))  # R2
        stamps = self.by_loc.get(loc, ())
        out = [0] if low == 0 else []
        out += stamps[bisect.bisect_left(stamps, max(low, 1)):]
        return out

    def read(self, tid: int, loc: int, ts: int, vaddr: int = 0,
             ord: ReadOrd = ReadOrd.PLAIN, ex: bool = False,
             noret: bool = False) -> tuple[bytes, int]:
        """Read message ``ts`` of ``loc`` (one of ``readable``): its value and the view
        of the result (R3, R4, R5; A2 with ``noret``: no acquire, no ``vrm``)."""
        th = self.threads[tid]
        if noret:
            ord = ReadOrd.PLAIN
        pre = self._pre(th, vaddr, ord)
        f = th.fwd.get(loc, _NO_FWD)
        forwarded = f.ts == ts and ts and not (f.ex and ord >= ReadOrd.ACQUIRE_PC)  # R3
        view = max(pre, f.view if forwarded else ts)
        th.coh[loc] = max(th.coh.get(loc, 0), ts)  # R5
        if ord >= ReadOrd.ACQUIRE_PC:  # R4
            th.vrp = max(th.vrp, view)
            th.vwp = max(th.vwp, view)
        if not noret:
            th.vrm = max(th.vrm, view)
        th.vcap = max(th.vcap, vaddr)
        if ex:
            th.exbank = (loc, ts, view)
        return self.value(loc, ts), view

    # -- writes ------------------------------------------------------------------------
    def exclusive_ok(self, tid: int, loc: int) -> bool:
        """Whether a store-exclusive of ``loc`` by ``tid`` may succeed now (W4)."""
        return self._exclusive_until(tid, loc, len(self.msgs) + 1)

    def _exclusive_until(self, tid: int, loc: int, ts: int) -> bool:
        eb = self.threads[tid].exbank
        if eb is None:
            return False
        if eb[0] != loc:
            return True  # Promising.v: the condition only binds the same location
        return all(self.msgs[t - 1][2] == tid for t in self.by_loc.get(loc, ())
                   if eb[1] < t < ts)

    def _append(self, loc: int, value: bytes, tid: int) -> int:
        if loc not in self.initial:
            raise ValueError(f"{loc:#x}: its initial value is not known (call know first)")
        self.msgs.append((loc, bytes(value), tid))
        ts = len(self.msgs)
        self.by_loc[loc] = (*self.by_loc.get(loc, ()), ts)
        return ts

    def promise(self, tid: int, loc: int, value: bytes) -> int:
        """P1: append ``<loc := value>_tid`` as a promise of ``tid``; its timestamp."""
        ts = self._append(loc, value, tid)
        self.threads[tid].promises.add(ts)
        return ts

    def fulfillable(self, tid: int, loc: int, value: bytes, vaddr: int = 0,
                    vdata: int = 0, ord: WriteOrd = WriteOrd.PLAIN,
                    ex: bool = False, vctl: int = 0) -> list[int]:
        """P2: the promises a store of ``value`` to ``loc`` by ``tid`` may fulfil now."""
        th = self.threads[tid]
        if not th.promises:
            return []
        low = max(th.coh.get(loc, 0), self.write_view(tid, vaddr, vdata, ord, vctl))
        out = []
        for ts in sorted(th.promises):
            ploc, pval, _ = self.msgs[ts - 1]
            if ploc == loc and pval == value and ts > low \
                    and (not ex or self._exclusive_until(tid, loc, ts)):
                out.append(ts)
        return out

    def dead(self, tid: int) -> bool:
        """P3: ``tid`` holds a promise it can never fulfil (coherence has passed it)."""
        th = self.threads[tid]
        return any(self.msgs[ts - 1][0] in th.coh and th.coh[self.msgs[ts - 1][0]] >= ts
                   for ts in th.promises)

    def outstanding(self) -> int:
        """P3: promises not yet fulfilled, over every thread (0: the execution counts)."""
        return sum(len(t.promises) for t in self.threads)

    def write(self, tid: int, loc: int, value: bytes, vaddr: int = 0, vdata: int = 0,
              ord: WriteOrd = WriteOrd.PLAIN, ex: bool = False,
              fulfil: int | None = None, vctl: int = 0) -> int:
        """A store: append ``<loc := value>`` (W1), or fulfil promise ``fulfil`` (P2,
        one of ``fulfillable``), and update ``tid``'s views (W2, W3); returns the
        message's timestamp.  A store-exclusive calls ``exclusive_ok`` first."""
        th = self.threads[tid]
        if fulfil is not None:
            if fulfil not in self.fulfillable(tid, loc, value, vaddr, vdata, ord, ex, vctl):
                raise ValueError(f"thread {tid} cannot fulfil promise {fulfil} now")
            th.promises.discard(fulfil)
            ts = fulfil
        else:
            if ex and not self.exclusive_ok(tid, loc):
                raise ValueError(f"store-exclusive of {loc:#x} by thread {tid} cannot "
                                 "succeed")
            ts = self._append(loc, value, tid)
        th.coh[loc] = ts  # W3
        th.vwm = max(th.vwm, ts)
        th.vcap = max(th.vcap, vaddr)
        if ord is WriteOrd.RELEASE:
            th.vrel = max(th.vrel, ts)
        th.fwd[loc] = Fwd(ts, max(vaddr, vdata), ex)
        if ex:
            th.exbank = None
        return ts

    def write_view(self, tid: int, vaddr: int = 0, vdata: int = 0,
                   ord: WriteOrd = WriteOrd.PLAIN, vctl: int = 0) -> int:
        """The view a write must be after (W2; ``vctl``: what decides whether it writes
        at all, a CAS's compare value, A3); with writes always last it is a check: it
        is always below the new timestamp."""
        th = self.threads[tid]
        v = max(vaddr, vdata, th.vcap, th.vwp, vctl)
        if ord is WriteOrd.RELEASE:
            v = max(v, th.vrm, th.vwm)
        return v

    def fail_exclusive(self, tid: int) -> None:
        """A store-exclusive that fails (W4): ``exbank`` is cleared."""
        self.threads[tid].exbank = None

    # -- barriers and dependencies -----------------------------------------------------
    def dmb(self, tid: int, rr: bool = True, rw: bool = True, wr: bool = True,
            ww: bool = True) -> None:
        """B1: reads (r) / writes (w) before, against reads / writes after."""
        th = self.threads[tid]
        th.vrp = max(th.vrp, th.vrm if rr else 0, th.vwm if wr else 0)
        th.vwp = max(th.vwp, th.vrm if rw else 0, th.vwm if ww else 0)

    def isb(self, tid: int) -> None:
        """B2."""
        th = self.threads[tid]
        th.vrp = max(th.vrp, th.vcap)

    def control(self, tid: int, view: int) -> None:
        """C1: a conditional branch on something of view ``view``."""
        th = self.threads[tid]
        th.vcap = max(th.vcap, view)
        th.vctrl = max(th.vctrl, view)

    # -- instruction fetch ---------------------------------------------------------------
    def text_write(self, tid: int, loc: int, value: bytes, vaddr: int = 0,
                   vdata: int = 0, ord: WriteOrd = WriteOrd.PLAIN) -> int:
        """A store to the text (W1-W3), its W2 view kept for F1; its timestamp."""
        view = self.write_view(tid, vaddr, vdata, ord)
        ts = self.write(tid, loc, value, vaddr, vdata, ord)
        self.wviews[ts] = view
        return ts

    def fetched(self, tid: int, loc: int, off: int, value: bytes) -> int:
        """F1: ``tid`` executes ``value`` fetched from bytes ``off``.. of text granule
        ``loc``: its later reads and writes are ordered after the W2 view of the store
        that gave those bytes that value (with the value written more than once, the
        latest store: more order, never less); returns that view (0: none did, the value
        was there from the start)."""
        n = len(value)
        stamps = self.by_loc.get(loc, ())
        i = len(stamps) - 1
        while i >= 0 and self.msgs[stamps[i] - 1][1][off:off + n] != value:
            i -= 1
        if i < 0:
            return 0
        while i > 0 and self.msgs[stamps[i - 1] - 1][1][off:off + n] == value:
            i -= 1  # back to the message that wrote the value (the others kept it)
        if i == 0 and self.initial[loc][off:off + n] == value:
            return 0  # there from the start: nothing to be ordered after
        view = self.wviews.get(stamps[i], stamps[i])
        th = self.threads[tid]
        th.coh[loc] = max(th.coh.get(loc, 0), stamps[i])  # as a read of it (R5; CoFR)
        th.vrp = max(th.vrp, view)
        th.vwp = max(th.vwp, view)
        return view

    def clean_view(self, tid: int, vaddr: int, locs: list[int]) -> int:
        """F2: the timestamp from which a ``DC CVAU`` by ``tid`` of the line whose
        granules are ``locs`` may clean the line as it was (``vaddr``: its address
        register's view)."""
        th = self.threads[tid]
        return max(vaddr, th.vctrl, th.vrp, th.vwp, *(th.coh.get(loc, 0) for loc in locs))

    def last_at_or_below(self, loc: int, view: int) -> int:
        """The timestamp of ``loc``'s last message at or below ``view`` (0: initial)."""
        return self._last_at_or_below(loc, view)

    # -- interrupts --------------------------------------------------------------------
    def send_interrupt(self, src: int, dst: int) -> None:
        """I1: ``src`` signals ``dst`` (an IPI): the signal carries what a plain write of
        ``src`` issued now would be ordered after (W2 without the write's registers)."""
        view = self.write_view(src)
        th = self.threads[dst]
        th.signal = max(th.signal, view)

    def acknowledge(self, tid: int) -> int:
        """I2: the view of the value a read of the interrupt controller's acknowledge
        register returns: what the signals sent to ``tid`` so far carried."""
        return self.threads[tid].signal

    # -- snapshots ---------------------------------------------------------------------
    def save(self) -> tuple[object, ...]:
        return (tuple(self.msgs), [t.copy() for t in self.threads], dict(self.initial),
                dict(self.wviews), dict(self.by_loc))

    def load(self, state: tuple[object, ...]) -> None:
        """Back to a saved state (any: an ancestor of this one or not)."""
        msgs, threads, initial, wviews, by_loc = state
        assert isinstance(msgs, tuple) and isinstance(threads, list) \
            and isinstance(initial, dict) and isinstance(wviews, dict) \
            and isinstance(by_loc, dict)
        self.msgs = list(msgs)
        self.by_loc = dict(by_loc)
        self.threads = [t.copy() for t in threads]
        self.initial = dict(initial)
        self.wviews = dict(wviews)

    def _history_key(self) -> bytes:
        """The whole history and every thread's views, coherence, forwarding, exclusive
        bank, register views and promises as they are, as one array of integers and the
        values (``key`` with promises outstanding)."""
        nums: list[int] = [len(self.msgs)]
        values: list[bytes] = []
        for loc, value, tid in self.msgs:
            nums += (loc, tid, len(value))
            values.append(value)
        nums.append(len(self.wviews))
        for ts, view in sorted(self.wviews.items()):
            nums += (ts, view)
        for t in self.threads:
            nums.append(len(t.coh))
            for loc, ts in sorted(t.coh.items()):
                nums += (loc, ts)
            nums += (t.vrp, t.vwp, t.vrm, t.vwm, t.vcap, t.vrel, t.spill, t.signal, t.vctrl,
                     len(t.fwd))
            for loc, f in sorted(t.fwd.items()):
                nums += (loc, f.ts, f.view, f.ex)
            ex = t.exbank
            nums += (-1,) if ex is None else (1, *ex)
            nums.append(len(t.regs))
            nums += t.regs
            nums.append(len(t.promises))
            nums += sorted(t.promises)
        values.append(array.array("q", nums).tobytes())
        return digest(b"".join(values))

    def key(self) -> bytes:
        """A digest of everything that decides what can happen next.

        Without promises the digest is canonical: two states that differ only in
        messages no thread can read any more, or in the timestamps themselves (not
        their order), get the same key.  What a view decides is, per location, which
        message is the last at or below it (R2's bound; every later use is a join or
        that comparison, and new messages come after every view), so each view is
        digested as those positions, counted from the oldest message some thread can
        still read (or holds in its exclusive bank); each location's messages from
        there on are digested with their values and writers (W4 needs the writers),
        and so is their order across locations: a read joins a view with its message's
        timestamp, which then places other locations' messages (the key left the order
        out until 2026-12-01, and merged states that went on differently:
        ``tests/test_armmem.py``'s check that states with one key go on alike).
        With promises outstanding, fulfilment compares views with the promises'
        timestamps directly: the whole history is digested.  Locations in ``history``
        are left out (no thread reads them: what they hold decides nothing)."""
        if any(t.promises for t in self.threads):
            return self._history_key()
        if self.key_bytes_c is not None:
            return digest(self.key_bytes_c(self))
        threads = self.threads
        by_loc, msgs = self.by_loc, self.msgs
        bisect_right = bisect.bisect_right
        nums: list[int] = []  # per location: loc, floor, messages digested; per message:
        values: list[bytes] = []  # its writer and length; and the values, in order
        floor_of: dict[int, int] = {}  # location -> position of its oldest readable message
        active: list[tuple[int, tuple[int, ...], int]] = []  # (loc, stamps, floor), loc order
        bounds = [(t.coh, t.vrp, t.exbank) for t in threads]
        hist = self.history
        # (stamps, first digested, floor, place among the active locations if active)
        digested: list[tuple[tuple[int, ...], int, int, int]] = []
        for loc in sorted(by_loc):
            if loc in hist:
                continue
            stamps = by_loc[loc]
            n = len(stamps)
            latest = stamps[-1]
            low = n
            for coh, vrp, ex in bounds:
                bound = coh.get(loc, 0)
                # R2: the last at or below vrp (``_last_at_or_below``, inlined: the
                # key's hottest loop)
                if bound != latest and vrp > bound:
                    i = bisect_right(stamps, vrp)
                    if i and stamps[i - 1] > bound:
                        bound = stamps[i - 1]
                if ex is not None and ex[0] == loc and ex[1] < bound:
                    bound = ex[1]
                if bound != latest:  # (the latest: every message is at or below it)
                    i = bisect_right(stamps, bound)
                    if i < low:
                        low = i
            floor_of[loc] = low
            first = low - 1 if low else 0
            nums += (loc, low, n - first)
            digested.append((stamps, first, low, len(active)))
            if low == 0:
                values.append(self.initial[loc])
                nums.append(len(self.initial[loc]))
            for ts in stamps[first:]:
                _, value, tid = msgs[ts - 1]
                values.append(value)
                nums += (tid, len(value))
            if low < n:
                active.append((loc, stamps, low))
        # Settled locations (every thread must read the latest message) give every view
        # the same position: only the others enter the views' digests, and coherence
        # only there.  A view's positions grow with it, so the distinct positions of the
        # views in the state are ranked in order, and each view is digested as its
        # rank, the ranked positions once: the same information, far fewer bytes.
        views: set[int] = set(self.wviews.values())
        for t in threads:
            views.update((t.vrp, t.vwp, t.vrm, t.vwm, t.vcap, t.vrel, t.spill, t.signal,
                          t.vctrl))
            views.update(t.regs)
            views.update(f.view for f in t.fwd.values())
            if t.exbank is not None:
                views.add(t.exbank[2])
        # Every digested message in timestamp order, once: (its timestamp, its location's
        # place among the digested ones, among the active ones or -1 below the floor).
        order = sorted((ts, k, j if i >= low else -1)
                       for k, (stamps, first, low, j) in enumerate(digested)
                       for i, ts in enumerate(stamps[first:], first))
        # The positions of each distinct view, in one sweep over the active messages.
        ordered = sorted(views)
        rank: dict[int, int] = {}
        nums.append(len(active))
        if active:
            merged = [(ts, j) for ts, _, j in order if j >= 0]
            counts = [0] * len(active)
            i, end, distinct = 0, len(merged), -1
            for v in ordered:
                moved = distinct < 0
                while i < end and merged[i][0] <= v:
                    counts[merged[i][1]] += 1
                    i += 1
                    moved = True
                if moved:
                    distinct += 1
                    nums += counts
                rank[v] = distinct
            nums.append(distinct + 1)
        else:  # every view has the same (empty) positions
            rank = dict.fromkeys(ordered, 0)

        def at(loc: int, ts: int) -> int:  # a message's position from its floor; -1: dead
            low = floor_of.get(loc)
            if low is None:
                return 0
            p = bisect_right(by_loc[loc], ts) - low
            return p if p >= 0 else -1

        for t in threads:
            coh_of = t.coh
            for loc, stamps, low in active:  # (no entry: nothing read, as 0: R1, P3)
                place = bisect_right(stamps, coh_of.get(loc, 0)) - low
                nums.append(place if place >= 0 else -1)
            nums += (rank[t.vrp], rank[t.vwp], rank[t.vrm], rank[t.vwm], rank[t.vcap],
                     rank[t.vrel], rank[t.spill], rank[t.signal], rank[t.vctrl], len(t.regs))
            nums += map(rank.__getitem__, t.regs)
            fwd = sorted((loc, a, rank[f.view], f.ex) for loc, f in t.fwd.items()
                         if loc not in hist and (a := at(loc, f.ts)) >= 0) if t.fwd else []
            nums.append(len(fwd))
            for loc, a, r, exclusive in fwd:
                nums += (loc, a, r, exclusive)
            ex = t.exbank
            nums += (-1,) if ex is None else (1, ex[0], at(ex[0], ex[1]), rank[ex[2]])
        # F1: every text store's W2 view (a stale fetch may pick any), by its place
        # among its location's messages
        texts = sorted((msgs[ts - 1][0], bisect.bisect_left(by_loc[msgs[ts - 1][0]], ts),
                        rank[view]) for ts, view in self.wviews.items())
        nums.append(len(texts))
        for text in texts:
            nums += text
        # The order of the digested messages across locations (each by its location's
        # place above): a read joins a view with its message's timestamp, which later
        # compares with other locations' messages (R2), so two states whose messages of
        # different locations interleave otherwise can go on differently.
        nums.append(len(order))
        nums += [k for _, k, _ in order]
        values.append(array.array("q", nums).tobytes())
        return digest(b"".join(values))
