"""The ground-truth trace: every instruction each CPU executed, with its global step.

The machine logs code blocks as they run (the CPU's block hook) and I-view words as
catch-ups change them; ``cut`` trims a block that ran only partly.  This module expands
that log into (step, address, word) per CPU and digests it, so two runs can be compared
byte for byte.  Plain Python: no Unicorn.
"""

from __future__ import annotations

import array
import hashlib
import sys
from collections.abc import Sequence

from . import layout

__all__ = ["Entry", "LogItem", "cut", "digest", "expand", "expand_words", "instructions",
           "words"]

Entry = tuple[int, int, int]  # (global step, address, instruction word)
LogItem = tuple[int, int, int]  # (step, start, end) code run, or (step, ~word, value)


def cut(log: list[LogItem], end: int) -> None:
    """The last code block of ``log`` ran only up to ``end``."""
    if log:
        step, start, stop = log[-1]
        if 0 <= start <= end < stop:
            if start == end:
                log.pop()
            else:
                log[-1] = (step, start, end)


def expand(initial: bytes, logs: Sequence[Sequence[LogItem]],
           text_base: int = layout.TEXT_BASE) -> list[list[Entry]]:
    """Per CPU, every executed instruction, in the order it ran."""
    out = []
    for log in logs:
        view = bytearray(initial)
        seq: list[Entry] = []
        for step, start, end in log:
            if start < 0:  # the CPU's I-view changed at a catch-up
                w = ~start
                view[w:w + 4] = end.to_bytes(4, "little")
                continue
            for addr in range(start, end, 4):
                off = addr - text_base
                seq.append((step, addr, int.from_bytes(view[off:off + 4], "little")))
        out.append(seq)
    return out


def words(initial: bytes) -> list[int]:
    """The text as a list of little-endian words (for ``expand_words``)."""
    out = array.array("I", initial)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tolist()


def expand_words(initial: list[int], logs: Sequence[Sequence[LogItem]],
                 text_base: int = layout.TEXT_BASE) -> list[list[Entry]]:
    """The same as ``expand`` with the text as ``words(initial)``, faster (oracles ask
    for the trace after every run): the words come from a list, not from bytes."""
    out = []
    for log in logs:
        view = initial.copy()
        seq: list[Entry] = []
        append = seq.append
        for step, start, end in log:
            if start < 0:  # the CPU's I-view changed at a catch-up
                view[~start >> 2] = end
                continue
            i = (start - text_base) >> 2
            for addr in range(start, end, 4):
                append((step, addr, view[i]))
                i += 1
        out.append(seq)
    return out


def digest(trace: Sequence[Sequence[Entry]]) -> str:
    """SHA-256 of the canonical text form of a trace."""
    h = hashlib.sha256()
    for cpu, seq in enumerate(trace):
        h.update(f"CPU{cpu}\n".encode())
        h.update("".join(f"{s} {a:x} {w:08x}\n" for s, a, w in seq).encode())
    return h.hexdigest()


def instructions(logs: Sequence[Sequence[LogItem]]) -> int:
    n = 0
    for log in logs:
        for _, start, end in log:
            if start >= 0:  # (not an I-view change)
                n += (end - start) >> 2
    return n
