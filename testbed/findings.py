"""Findings: what an oracle reports, how it is printed, stored and read back.

The records every other layer shares live here, in a module with no emulator in it:
``Finding`` (an oracle's verdict), ``Event`` (something the machine or the memory model
did), the names of the project's oracles (``OracleName``), a finding as text and as
JSON, and the reproducer file (a schedule with the findings it produced recorded in
it) that every command writes the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "Event",
    "EventKind",
    "Finding",
    "OracleName",
    "Signature",
    "disasm",
    "finding_json",
    "finding_text",
    "make_event",
    "recorded_findings",
    "reproducer_name",
    "safe_name",
    "signature_key",
]


class OracleName(enum.StrEnum):
    """The oracles of the project (``testbed/oracles/``).  A scenario of one's own may
    report findings under a name of its own; these are the names the testbed knows."""

    # The machine's own, judged while the CPUs run.
    CMODX_VIOLATION = "cmodx-violation"
    TORN_WORD = "torn-word"
    GUEST_FAULT = "guest-fault"
    KERNEL_DIE = "kernel-die"
    LIVENESS = "liveness"
    FETCH_SCOPE = "fetch-scope"
    USE_AFTER_FREE = "use-after-free"
    # Judged on a finished run.
    STALE_AFTER_FLUSH = "stale-after-flush"
    STATIC_KEY_INCOHERENCE = "static-key-incoherence"
    BRK_EMULATION = "brk-emulation"
    TRACE_DECODE = "trace-decode"
    PERF_RING = "perf-ring"
    STALE_LITERAL = "stale-literal"
    KPROBE_XOL = "kprobe-xol"
    NOT_LINEARIZABLE = "not-linearizable"


class EventKind(enum.Enum):
    CATCH_UP = "catch-up"
    FILL = "fill"
    EVICT = "evict"
    WRITE_BACK = "write-back"
    TEXT_STORE = "text-store"
    DC = "dc"
    IC = "ic"
    EXCEPTION = "exception"
    IRQ = "irq"
    ERET = "eret"
    IPI_SEND = "ipi-send"
    IPI_ACK = "ipi-ack"
    HALT = "halt"
    READ = "read"  # Arm model: a load reads an older message than the latest
    PROMISE = "promise"  # Arm model: a CPU promises a write (P1)
    COMPLETE = "complete"  # Arm model: a CPU's cache maintenance completes (fetch rule 9)


@dataclass(frozen=True, slots=True)
class Event:
    """Something the memory model or the machine did, for timelines and oracles."""

    step: int
    cpu: int
    kind: EventKind
    addr: int = -1
    value: int = -1
    detail: str = ""


# ``Event``'s slots, set through their member descriptors by ``make_event``
_SET_STEP, _SET_CPU, _SET_KIND, _SET_ADDR, _SET_VALUE, _SET_DETAIL = (
    getattr(Event, name).__set__ for name in ("step", "cpu", "kind", "addr", "value", "detail"))


def make_event(step: int, cpu: int, kind: EventKind, addr: int, value: int,
               detail: str) -> Event:
    """``Event(step, cpu, kind, addr, value, detail)``, made at half the cost: a frozen
    dataclass's ``__init__`` goes through ``object.__setattr__`` for each field (a run
    records about 20 events: ``Machine.add_event``); equal to the one ``Event`` makes
    (tests/test_findings_layer.py)."""
    e = object.__new__(Event)
    _SET_STEP(e, step)
    _SET_CPU(e, cpu)
    _SET_KIND(e, kind)
    _SET_ADDR(e, addr)
    _SET_VALUE(e, value)
    _SET_DETAIL(e, detail)
    return e


Signature = tuple[str, int, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Finding:
    """An oracle's verdict that something went wrong, with what a reader needs."""

    oracle: str  # an ``OracleName``, or a scenario's own name for its check
    message: str
    cpu: int = -1
    addr: int = -1
    words: tuple[int, ...] = ()
    step: int = -1

    def signature(self) -> Signature:
        """What makes two findings the same: oracle, address, instruction words."""
        return (str(self.oracle), self.addr, self.words)


def signature_key(sig: Signature) -> str:
    """A signature as one string (a JSON key, a file name's seed)."""
    oracle, addr, words = sig
    return f"{oracle}@{addr:#x}:" + ",".join(f"{w:08x}" for w in words)


@lru_cache(maxsize=4096)
def disasm(word: int) -> str:
    """One instruction word, disassembled without context (``(undefined)`` if none)."""
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
    for insn in Cs(CS_ARCH_ARM64, CS_MODE_ARM).disasm(word.to_bytes(4, "little"), 0, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(undefined)"


def finding_text(f: Finding) -> str:
    """One line: oracle, step, message, the instruction words involved."""
    words = ", ".join(f"{w:#010x} ({disasm(w)})" for w in f.words)
    return f"[{f.oracle}] step {f.step}: {f.message}" + (f"; words: {words}" if words else "")


def finding_json(f: Finding, symbolize: Callable[[int], str]) -> dict[str, Any]:
    return {"oracle": str(f.oracle), "cpu": f.cpu, "address": f.addr,
            "symbol": symbolize(f.addr) if f.addr >= 0 else "",
            "message": f.message, "words": list(f.words),
            "instructions": [disasm(w) for w in f.words], "step": f.step}


def safe_name(name: str) -> str:
    """``name`` as one file-name component (a scenario's name, never a path)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "_"


def reproducer_name(scenario: str, tag: str) -> str:
    """A reproducer's file name: the scenario's name and a tag."""
    return f"{safe_name(scenario)}-{tag}.json"


def recorded_findings(meta: Mapping[str, Any], source: str) -> list[tuple[str, int]]:
    """The (oracle, address) pairs a reproducer says it produced (``meta.findings``).

    Raises ``ValueError`` naming the file and the field when that list is malformed."""
    items = meta.get("findings")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{source}: field 'meta.findings' is not a list")
    out: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("oracle"), str) \
                or not isinstance(item.get("address"), int) \
                or isinstance(item.get("address"), bool):
            raise ValueError(f"{source}: field 'meta.findings[{i}]' needs a string "
                             "'oracle' and an integer 'address'")
        out.append((item["oracle"], item["address"]))
    return out


def display_path(path: Path) -> str:
    """A path as a user should type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())
