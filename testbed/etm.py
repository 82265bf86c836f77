"""An ETM-like hardware trace, derived from the ground truth (DESIGN.md section 7).

Per CPU, like CoreSight ETM in its simplest form: an atom (E taken / N not taken) for
each direct branch executed (B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ); the target address of
each indirect branch (BR, BLR, RET, ERET); an exception element with the address it
was taken at and the vector; timestamps (the machine's global step) at trace start, at
each exception and every K elements.  No instruction words and no addresses of
straight-line code: a decoder must walk the code image to follow the trace.

Exceptions come from the machine's events (the ELR it wrote and the vector), matched in
order with the ground truth: a synchronous exception (BRK, UDF, SVC) is taken *at* the
instruction that raised it, which the ground truth shows executed; an IRQ is taken
*before* the instruction at its ELR, which has not executed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .findings import Event, EventKind
from .trace import Entry

__all__ = ["Element", "ElementKind", "TraceError", "branch_kind", "branch_target", "encode"]

DEFAULT_TIMESTAMP_INTERVAL = 64


class TraceError(Exception):
    """A ground truth the encoder cannot explain (a bug in the machine or the encoder)."""


class ElementKind(enum.Enum):
    START = "start"  # address: where tracing starts; time
    ATOM_E = "E"
    ATOM_N = "N"
    INDIRECT = "indirect"  # address: the target
    EXCEPTION = "exception"  # address: where taken; target: the vector; sync; time
    TIMESTAMP = "ts"  # time


@dataclass(frozen=True, slots=True)
class Element:
    kind: ElementKind
    address: int = -1
    target: int = -1
    sync: bool = False  # EXCEPTION: taken at the instruction at `address` (it ran)
    time: int = -1

    def __str__(self) -> str:
        if self.kind in (ElementKind.ATOM_E, ElementKind.ATOM_N):
            return str(self.kind.value)
        parts = [self.kind.value]
        if self.address >= 0:
            parts.append(f"{self.address:#x}")
        if self.target >= 0:
            parts.append(f"-> {self.target:#x}")
        if self.kind is ElementKind.EXCEPTION:
            parts.append("sync" if self.sync else "async")
        if self.time >= 0:
            parts.append(f"@{self.time}")
        return " ".join(parts)


class Branch(enum.Enum):
    NONE = 0
    DIRECT = 1  # always taken (B, BL)
    CONDITIONAL = 2  # B.cond, CB(N)Z, TB(N)Z
    INDIRECT = 3  # BR, BLR, RET, ERET


def branch_kind(word: int) -> Branch:
    if word & 0x7C000000 == 0x14000000:
        return Branch.DIRECT
    if (word & 0xFF000010 == 0x54000000 or word & 0x7E000000 == 0x34000000
            or word & 0x7E000000 == 0x36000000):
        return Branch.CONDITIONAL
    if word & 0xFFFFFC1F in (0xD61F0000, 0xD63F0000, 0xD65F0000) or word == 0xD69F03E0:
        return Branch.INDIRECT
    return Branch.NONE


def branch_target(addr: int, word: int) -> int:
    """The taken target of a direct or conditional branch at ``addr``."""
    if word & 0x7C000000 == 0x14000000:
        return addr + (((word & 0x3FFFFFF) ^ 0x2000000) - 0x2000000) * 4
    if word & 0x7E000000 == 0x36000000:  # TB(N)Z: imm14
        return addr + ((((word >> 5) & 0x3FFF) ^ 0x2000) - 0x2000) * 4
    return addr + ((((word >> 5) & 0x7FFFF) ^ 0x40000) - 0x40000) * 4  # imm19


def _vector(ev: Event) -> int:
    return int(ev.detail.split()[-1], 16)


def encode(truth: Sequence[Entry], events: Sequence[Event], cpu: int,
           interval: int = DEFAULT_TIMESTAMP_INTERVAL) -> list[Element]:
    """The trace of one CPU's ground truth; ``events`` are the run's machine events."""
    if not truth:
        return []
    exceptions = [e for e in events if e.cpu == cpu and e.kind is EventKind.EXCEPTION]
    out: list[Element] = [Element(ElementKind.START, truth[0][1], time=truth[0][0])]
    since_ts = 0

    def emit(el: Element, step: int) -> None:
        nonlocal since_ts
        out.append(el)
        since_ts += 1
        if since_ts >= interval:
            out.append(Element(ElementKind.TIMESTAMP, time=step))
            since_ts = 0

    nexc = 0
    for i, (step, addr, word) in enumerate(truth):
        nxt = truth[i + 1] if i + 1 < len(truth) else None
        exc = exceptions[nexc] if nexc < len(exceptions) else None
        # An exception taken between this instruction and the next one?
        if nxt is not None and exc is not None and nxt[1] == _vector(exc) \
                and exc.step <= nxt[0]:
            sync = exc.addr == addr  # ELR = this instruction: it raised the exception
            if not sync and branch_kind(word) is not Branch.NONE:
                # An IRQ right after a branch: the branch's own outcome comes first.
                _branch_element(addr, word, exc.addr, emit, step)
            out.append(Element(ElementKind.EXCEPTION, exc.addr, _vector(exc), sync,
                               nxt[0]))
            since_ts = 0
            nexc += 1
            continue
        if nxt is None:
            kind = branch_kind(word)
            if kind is Branch.DIRECT:
                emit(Element(ElementKind.ATOM_E), step)
            continue  # the trace ends here (the CPU stopped): no more outcomes known
        _branch_element(addr, word, nxt[1], emit, step)
    return out


def _branch_element(addr: int, word: int, nxt: int, emit: Callable[[Element, int], None],
                    step: int) -> None:
    kind = branch_kind(word)
    if kind is Branch.NONE:
        if nxt != addr + 4:
            raise TraceError(f"{addr:#x} ({word:#010x}) is followed by {nxt:#x}")
        return
    if kind is Branch.INDIRECT:
        emit(Element(ElementKind.INDIRECT, nxt), step)
        return
    taken = nxt == branch_target(addr, word)
    if not taken and nxt != addr + 4:
        raise TraceError(f"branch at {addr:#x} ({word:#010x}) is followed by {nxt:#x}")
    if kind is Branch.DIRECT and not taken:
        raise TraceError(f"B at {addr:#x} not taken")
    emit(Element(ElementKind.ATOM_E if taken else ElementKind.ATOM_N), step)
