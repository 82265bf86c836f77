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
  that cannot fail; with writes always last, the read reads the latest message.
- **B1 DMB**: ``DMB SY/ISH`` orders reads and writes before against reads and writes
  after (``vrp``, ``vwp`` join ``vrm`` and ``vwm``); ``DMB LD`` orders reads before
  against reads and writes after; ``DMB ST`` writes before against writes after.
  ``DSB`` orders at least as ``DMB`` of the same domain and type.
- **B2 ISB**: ``vrp`` joins ``vcap``: a read after a control dependency and an ISB
  cannot be satisfied before the branch's inputs.
- **C1 control**: a conditional branch joins the view of what it tested into ``vcap``
  (writes after it are ordered, reads are not until an ISB).

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

How the machine drives it (the plan; not wired yet)
--------------------------------------------------
- Modelled regions: the shared data and the per-CPU areas (every access to them is a
  visible operation already); the text stays with the fetch model, stacks are private.
  The host buffers hold each granule's *latest* message, so that the emulator's view of
  memory is the coherence-latest one.
- A STEP of a CPU whose next operation is a load reads the latest message; a model
  decision ``READ cpu ts`` reads an older readable one (``readable``): the machine puts
  that message's bytes in the buffer, lets the emulator execute the one load, and puts
  the latest back.  A store is executed by the emulator, and its granule's new bytes
  become a message (``write``), or fulfil a promise (a model decision ``FULFIL``).
  Store-exclusives the model fails are failed in Python (status 1, PC + 4); the others
  run in the emulator.  Barriers, acquire and release update views only.
- Register views: ``deps.apply`` over the instructions of each stretch the emulator ran
  (the CPU's block log), a branch's control view into ``control``; a loaded register
  takes the read's view; a store's address and data views come from its registers.
- Promises: a model decision ``PROMISE cpu k`` appends the k-th store a solo run of the
  CPU from the current state would perform (``Machine.save``/``load`` around it: what
  Promising calls certification); a run that ends with a promise unfulfilled is not an
  execution (no outcome, no finding), and one whose promise is dead ends at once.
- ``ArmMemory.save``/``load``/``key`` join the machine's snapshot and state key.

Accesses of different sizes
---------------------------
Locations are 8-byte aligned granules; a message holds a granule's 8 bytes.  A store
of fewer bytes appends a message whose other bytes are those of the granule's latest
message, as if the writer had rewritten them; a load extracts its bytes from one
message.  This never lets an aligned access tear (each reads or writes one message),
and it only adds ordering (a narrow write carries the bytes of the latest write beside
it), so it is sound; the cost is completeness for mixed-size tests where two halves
of one granule are written by different threads and read out of order.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
from dataclasses import dataclass, field

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

    def copy(self) -> ThreadState:
        return ThreadState(dict(self.coh), self.vrp, self.vwp, self.vrm, self.vwm,
                           self.vcap, self.vrel, dict(self.fwd), self.exbank,
                           list(self.regs), set(self.promises))

    def key(self) -> tuple[object, ...]:
        return (tuple(sorted(self.coh.items())), self.vrp, self.vwp, self.vrm, self.vwm,
                self.vcap, self.vrel, tuple(sorted((k, v.ts, v.view, v.ex)
                                                   for k, v in self.fwd.items())),
                self.exbank, tuple(self.regs), tuple(sorted(self.promises)))


class ArmMemory:
    """Messages and thread views; every operation is one rule of the module docstring.

    Values are the granules' bytes; the caller (the machine) keeps the host buffer equal
    to each granule's latest message, so that what it reads there is what a CPU that
    reads the latest message sees."""

    def __init__(self, nthreads: int) -> None:
        self.threads = [ThreadState() for _ in range(nthreads)]
        self.msgs: list[tuple[int, bytes, int]] = []  # (loc, value, tid); ts = index + 1
        self.by_loc: dict[int, list[int]] = {}  # loc -> timestamps of its messages
        self.initial: dict[int, bytes] = {}  # loc -> its value at timestamp 0

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
        stamps = self.by_loc.get(loc, [])
        out = [0] if low == 0 else []
        out += stamps[bisect.bisect_left(stamps, max(low, 1)):]
        return out

    def read(self, tid: int, loc: int, ts: int, vaddr: int = 0,
             ord: ReadOrd = ReadOrd.PLAIN, ex: bool = False) -> tuple[bytes, int]:
        """Read message ``ts`` of ``loc`` (one of ``readable``): its value and the view
        of the result (R3, R4, R5)."""
        th = self.threads[tid]
        pre = self._pre(th, vaddr, ord)
        f = th.fwd.get(loc, _NO_FWD)
        forwarded = f.ts == ts and ts and not (f.ex and ord >= ReadOrd.ACQUIRE_PC)  # R3
        view = max(pre, f.view if forwarded else ts)
        th.coh[loc] = max(th.coh.get(loc, 0), ts)  # R5
        if ord >= ReadOrd.ACQUIRE_PC:  # R4
            th.vrp = max(th.vrp, view)
            th.vwp = max(th.vwp, view)
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
        return all(self.msgs[t - 1][2] == tid for t in self.by_loc.get(loc, [])
                   if eb[1] < t < ts)

    def _append(self, loc: int, value: bytes, tid: int) -> int:
        self.msgs.append((loc, bytes(value), tid))
        ts = len(self.msgs)
        self.by_loc.setdefault(loc, []).append(ts)
        return ts

    def promise(self, tid: int, loc: int, value: bytes) -> int:
        """P1: append ``<loc := value>_tid`` as a promise of ``tid``; its timestamp."""
        ts = self._append(loc, value, tid)
        self.threads[tid].promises.add(ts)
        return ts

    def fulfillable(self, tid: int, loc: int, value: bytes, vaddr: int = 0,
                    vdata: int = 0, ord: WriteOrd = WriteOrd.PLAIN,
                    ex: bool = False) -> list[int]:
        """P2: the promises a store of ``value`` to ``loc`` by ``tid`` may fulfil now."""
        th = self.threads[tid]
        if not th.promises:
            return []
        low = max(th.coh.get(loc, 0), self.write_view(tid, vaddr, vdata, ord))
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
              fulfil: int | None = None) -> int:
        """A store: append ``<loc := value>`` (W1), or fulfil promise ``fulfil`` (P2,
        one of ``fulfillable``), and update ``tid``'s views (W2, W3); returns the
        message's timestamp.  A store-exclusive calls ``exclusive_ok`` first."""
        th = self.threads[tid]
        if fulfil is not None:
            if fulfil not in self.fulfillable(tid, loc, value, vaddr, vdata, ord, ex):
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
                   ord: WriteOrd = WriteOrd.PLAIN) -> int:
        """The view a write must be after (W2); with writes always last it is a check:
        it is always below the new timestamp."""
        th = self.threads[tid]
        v = max(vaddr, vdata, th.vcap, th.vwp)
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

    # -- snapshots ---------------------------------------------------------------------
    def save(self) -> tuple[object, ...]:
        return (len(self.msgs), [t.copy() for t in self.threads], dict(self.initial))

    def load(self, state: tuple[object, ...]) -> None:
        n, threads, initial = state
        assert isinstance(n, int) and isinstance(threads, list) and isinstance(initial, dict)
        for loc, _, _ in self.msgs[n:]:
            self.by_loc[loc].pop()
            if not self.by_loc[loc]:
                del self.by_loc[loc]
        del self.msgs[n:]
        self.threads = [t.copy() for t in threads]
        self.initial = dict(initial)

    def key(self) -> bytes:
        """A digest of everything that decides what can happen next."""
        h = hashlib.blake2b(digest_size=16)
        for loc, value, tid in self.msgs:
            h.update(loc.to_bytes(8, "little") + value + tid.to_bytes(2, "little"))
        h.update(repr([t.key() for t in self.threads]).encode())
        return h.digest()
