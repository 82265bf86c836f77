"""A plain-text timeline of a run: one column per CPU, one row per decision.

Each row shows the visible operation the chosen CPU performed (disassembled, with its
symbol), executions of watched addresses (such as a patch site, marked with what
ran there), and memory-model events.  Repetitive stretches are folded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from .asm import Image
from .machine import EventKind
from .scheduler import RunResult

__all__ = ["Row", "render", "rows"]


@dataclass(frozen=True)
class Row:
    step: int
    cpu: int  # -1: a memory-model choice not tied to a CPU
    text: str
    mark: str = ""  # e.g. "OLD" / "NEW" at a watched address, or a finding


_NOTABLE = {EventKind.CATCH_UP, EventKind.IC, EventKind.DC, EventKind.EXCEPTION,
            EventKind.IRQ, EventKind.IPI_SEND, EventKind.TEXT_STORE, EventKind.HALT,
            EventKind.FILL, EventKind.EVICT, EventKind.WRITE_BACK}


def _disasm(cs: Cs, word: int, addr: int) -> str:
    for insn in cs.disasm(word.to_bytes(4, "little"), addr, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return f".word {word:#010x}"


def rows(result: RunResult, image: Image,
         watch: Mapping[int, Mapping[int, str]] | None = None) -> list[Row]:
    """The timeline rows.  ``watch``: address -> {word: label} to mark executions."""
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    watch = watch or {}
    by_step: dict[int, list[Row]] = {}
    for cpu, seq in enumerate(result.ground_truth()):
        seen: set[int] = set()
        for step, addr, word in seq:
            if step not in seen:
                seen.add(step)
                if addr not in watch:  # a watched address gets its own, marked row
                    by_step.setdefault(step, []).append(Row(
                        step, cpu, f"{_disasm(cs, word, addr):<28} {image.symbolize(addr)}"))
            if addr in watch:
                label = watch[addr].get(word, f"{word:#010x}")
                by_step.setdefault(step, []).append(Row(
                    step, cpu, f"{image.symbolize(addr)}: {_disasm(cs, word, addr)}", label))
    for ev in result.events:
        if ev.kind in _NOTABLE:
            where = image.symbolize(ev.addr) if ev.addr >= 0 else ""
            text = f"[{ev.kind.value}] {where} {ev.detail}".rstrip()
            by_step.setdefault(ev.step, []).append(Row(ev.step, ev.cpu, text))
    for f in result.findings:
        by_step.setdefault(f.step, []).append(Row(f.step, f.cpu, f"!! {f.oracle}", "FINDING"))
    out: list[Row] = []
    for step in sorted(by_step):
        out.extend(by_step[step])
    return out


def render(result: RunResult, image: Image, ncpus: int, *,
           watch: Mapping[int, Mapping[int, str]] | None = None, width: int = 48,
           fold: int = 3) -> str:
    """The timeline as text, ``width`` characters per CPU column."""
    lines = ["step  " + "".join(f"{'CPU' + str(c):<{width}}" for c in range(ncpus))]
    lines.append("-" * (6 + width * ncpus))
    all_rows = rows(result, image, watch)
    folded = 0
    prev: tuple[int, str] | None = None
    repeat = 0
    for r in all_rows:
        key = (r.cpu, r.text.split("  ")[0])
        repeat = repeat + 1 if key == prev and not r.mark else 0
        prev = key
        if repeat >= fold:
            folded += 1
            continue
        if folded:
            lines.append(f"      ... {folded} similar steps ...")
            folded = 0
        text = r.text + (f"  <== {r.mark}" if r.mark else "")
        col = max(r.cpu, 0)
        cells = [" " * width] * ncpus
        cells[col] = f"{text[:width - 1]:<{width}}" if col < ncpus - 1 else text
        lines.append(f"{r.step:>4}  " + "".join(cells).rstrip())
    if folded:
        lines.append(f"      ... {folded} similar steps ...")
    return "\n".join(lines)
