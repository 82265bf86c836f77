"""The ground-truth trace: every instruction each CPU executed, with its global step.

The machine logs code blocks as they run and I-view words as catch-ups change them;
this module expands that log into (step, address, word) per CPU and digests it, so two
runs can be compared byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from . import layout

__all__ = ["Entry", "digest", "expand"]

Entry = tuple[int, int, int]  # (global step, address, instruction word)
LogItem = tuple[int, int, int]  # (step, start, end) code run, or (step, ~word, value)


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


def digest(trace: Sequence[Sequence[Entry]]) -> str:
    """SHA-256 of the canonical text form of a trace."""
    h = hashlib.sha256()
    for cpu, seq in enumerate(trace):
        h.update(f"CPU{cpu}\n".encode())
        h.update("".join(f"{s} {a:x} {w:08x}\n" for s, a, w in seq).encode())
    return h.hexdigest()


def instructions(logs: Sequence[Sequence[LogItem]]) -> int:
    return sum((end - start) >> 2 for log in logs for _, start, end in log if start >= 0)
