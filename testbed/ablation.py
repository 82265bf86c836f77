"""Barrier ablation: every ordering and maintenance point of a protocol, weakened one at a
time in a real image (issue 14).

A *point* is one instruction of the kernel code that orders or maintains:

- barriers: ``DMB``, ``DSB`` (any domain and type) and ``ISB``, weakened to ``NOP``;
- cache maintenance: ``DC CVAU``/``CVAC``/``CIVAC``/``CVAP``/``CVADP``, ``IC IVAU``,
  ``IC IALLU``, ``IC IALLUIS``, weakened to ``NOP``;
- acquire and release forms, weakened to their plain forms: ``LDAR``/``LDAPR`` to
  ``LDR``, ``STLR`` to ``STR`` (unsigned offset 0, same size and registers), the
  acquire/release exclusives (``LDAXR``, ``STLXR``, ``LDAXP``, ``STLXP``) to ``LDXR``,
  ``STXR``..., and ``CAS``/``SWP``/``LD<op>`` with ``A``/``L`` to their relaxed forms;
- calls (``BL``) of helpers a scenario declares ablatable (``kick_all_cpus_sync``),
  weakened to ``NOP``.

``weaken`` rebuilds an image with some points weakened: a real image, with its own
digest, so that a schedule made on it records the points (config ``ablate``: function,
offset, the word there and the word put in) and replay rebuilds the same image, or
refuses when the kernel changed (the recorded word is not the one at that offset any
more).  Nothing here runs a scenario: ``testbed.ablate`` (the runner) does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .asm import Image, ListingLine
from .isa import NOP, MemKind, decode_mem

__all__ = ["AblationError", "Point", "find_points", "from_config", "functions_at",
           "plain_form", "to_config", "weaken"]

# Barrier and maintenance words (the register field masked where there is one).
_DSB, _DMB, _ISB = 0xD503309F, 0xD50330BF, 0xD50330DF
_SYS_DC_IC = {  # (op1, CRn, CRm, op2) of SYS -> name
    (3, 7, 11, 1): "dc cvau", (3, 7, 10, 1): "dc cvac", (3, 7, 14, 1): "dc civac",
    (3, 7, 12, 1): "dc cvap", (3, 7, 13, 1): "dc cvadp", (3, 7, 5, 1): "ic ivau",
    (0, 7, 5, 0): "ic iallu", (0, 7, 1, 0): "ic ialluis",
}


class AblationError(Exception):
    """A point that does not exist, or an ablation that no longer matches the image."""


@dataclass(frozen=True, slots=True)
class Point:
    """One ordering or maintenance instruction and its weakened form."""

    addr: int
    function: str  # the symbol it is in (global, or a file-local label)
    offset: int  # from that symbol
    original: int
    weakened: int
    kind: str  # "barrier", "maintenance", "acquire", "release", "call"
    what: str  # e.g. "dmb ish -> nop", "stlr -> str"
    file: str = ""
    line: int = 0
    source: str = ""

    @property
    def name(self) -> str:
        return f"{self.function}+{self.offset:#x}"


def plain_form(word: int) -> tuple[int, str, str] | None:
    """The plain form of an acquire/release access ``word``: (word, kind, "ldar -> ldr"),
    ``None`` if it is neither.  Encodings from the Arm ARM (C4.1.66 load/store); the
    result has the same size and registers."""
    op = decode_mem(word)
    if op is None or op.simd or not (op.acquire or op.acquire_pc or op.release):
        return None
    size, rn, rt = word >> 30, (word >> 5) & 31, word & 31
    top = (word >> 24) & 0x3F
    kind = "acquire" if (op.acquire or op.acquire_pc) and not op.release else (
        "release" if op.release and not (op.acquire or op.acquire_pc) else "acquire-release")
    if top == 0b001000:
        o2, o1 = (word >> 23) & 1, (word >> 21) & 1
        if not o2:  # exclusives (o0 = bit 15 is the acquire/release); CASP: L and o0
            if o1 and not size >> 1:
                return word & ~((1 << 22) | (1 << 15)), kind, "caspal -> casp"
            new = word & ~(1 << 15)
            names = {(True, False): ("ldaxr", "ldxr"), (False, False): ("stlxr", "stxr"),
                     (True, True): ("ldaxp", "ldxp"), (False, True): ("stlxp", "stxp")}
            a, b = names[(op.kind is MemKind.LOAD, bool(o1))]
            return new, kind, f"{a} -> {b}"
        if not o1:  # LDAR -> LDR, STLR -> STR (unsigned offset 0)
            if op.kind is MemKind.LOAD:
                return (size << 30) | 0x39400000 | (rn << 5) | rt, kind, "ldar -> ldr"
            return (size << 30) | 0x39000000 | (rn << 5) | rt, kind, "stlr -> str"
        return word & ~((1 << 22) | (1 << 15)), kind, "cas with acquire/release -> cas"
    if top == 0b011001:  # LDAPUR/STLUR -> LDUR/STUR (same imm9)
        what = "ldapur -> ldur" if op.kind is MemKind.LOAD else "stlur -> stur"
        return (word & ~(0x3F << 24)) | (0b111000 << 24), kind, what
    if op.kind is MemKind.LOAD and op.acquire_pc and (word & 0x3FFFFC00) == 0x38BFC000:
        return (size << 30) | 0x39400000 | (rn << 5) | rt, kind, "ldapr -> ldr"
    if op.kind is MemKind.RMW:  # SWP, LD<op>: A = bit 23, R = bit 22
        return word & ~((1 << 23) | (1 << 22)), kind, f"{op.op} with acquire/release -> {op.op}"
    return None


def _barrier_or_maintenance(word: int) -> tuple[str, str] | None:
    """(kind, mnemonic) of a barrier or cache maintenance word, else ``None``."""
    if word & 0xFFFFF0FF in (_DSB, _DMB):
        return "barrier", "dsb" if word & 0xFFFFF0FF == _DSB else "dmb"
    if word & 0xFFFFF0FF == _ISB:
        return "barrier", "isb"
    if word & 0xFFF80000 == 0xD5080000:  # SYS #op1, Cn, Cm, #op2, Xt
        key = ((word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15, (word >> 5) & 7)
        name = _SYS_DC_IC.get(key)
        if name is not None:
            return "maintenance", name
    return None


def _bl_target(line: ListingLine) -> int | None:
    word = line.word
    if word & 0xFC000000 != 0x94000000:
        return None
    off = word & 0x3FFFFFF
    if off & (1 << 25):
        off -= 1 << 26
    return line.addr + 4 * off


def functions_at(image: Image, addrs: Iterable[int] | None = None) -> set[str]:
    """The names the listing gives the code at ``addrs`` (global symbols and file-local
    labels; ``None``: all the code)."""
    lines = (image.listing if addrs is None
             else (line for a in addrs if (line := image.line_of(a)) is not None))
    return {line.symbol.partition("+")[0] for line in lines if line.symbol}


def find_points(image: Image, functions: Collection[str] | None = None,
                calls: Collection[str] = ()) -> list[Point]:
    """Every point in ``functions`` (the names the listing gives code: global symbols
    and file-local labels; ``None``: all of the image), in address order; ``calls``:
    helpers whose ``BL`` is a point."""
    targets = {image.addr(c): c for c in calls if c in image.symbols}
    targets.update({line.addr: line.symbol for line in image.listing  # file-local helpers
                    if line.is_insn and line.symbol in calls})
    wanted = None if functions is None else set(functions)
    if wanted is not None:
        unknown = sorted(wanted - functions_at(image))
        if unknown:
            raise AblationError(f"no function {unknown[0]!r} in the image")
    out: list[Point] = []
    for line in image.listing:
        if not line.is_insn or not line.symbol:
            continue
        function, _, off = line.symbol.partition("+")
        if wanted is not None and function not in wanted:
            continue
        offset = int(off, 16) if off else 0
        word = line.word
        found: tuple[int, str, str] | None = None
        bm = _barrier_or_maintenance(word)
        if bm is not None:
            found = (NOP, bm[0], f"{line.text} -> nop")
        else:
            found = plain_form(word)
            if found is None:
                target = _bl_target(line)
                if target is not None and target in targets:
                    found = (NOP, "call", f"bl {targets[target]} -> nop")
        if found is not None:
            out.append(Point(line.addr, function, offset, word, found[0], found[1], found[2],
                             line.file, line.line, line.source))
    return out


def weaken(image: Image, points: Iterable[Point]) -> Image:
    """``image`` with each point's word replaced by its weakened form: a new image (its
    digest covers the change)."""
    text = bytearray(image.text)
    listing = list(image.listing)
    h = hashlib.sha256(image.digest.encode())
    for p in sorted(points, key=lambda q: q.addr):
        off = p.addr - image.text_base
        if not 0 <= off < len(text) or int.from_bytes(text[off:off + 4], "little") != p.original:
            raise AblationError(f"{p.name}: the image does not hold {p.original:#010x} there "
                                "(the kernel changed since the ablation was recorded)")
        text[off:off + 4] = p.weakened.to_bytes(4, "little")
        line = listing[off // 4]
        listing[off // 4] = dataclasses.replace(line, word=p.weakened,
                                                text=f"{line.text} (ablated: {p.what})")
        h.update(f"{p.addr:x}:{p.original:x}>{p.weakened:x};".encode())
    return dataclasses.replace(image, text=bytes(text), listing=tuple(listing),
                               digest=h.hexdigest()[:len(image.digest)])


def to_config(points: Sequence[Point]) -> list[dict[str, object]]:
    """What a schedule records of an ablation (config ``ablate``)."""
    return [{"function": p.function, "offset": p.offset, "from": p.original,
             "to": p.weakened} for p in points]


def from_config(image: Image, entries: object, calls: Collection[str] = ()) -> list[Point]:
    """The points a schedule's config ``ablate`` names, found in ``image`` (refused,
    naming the entry, when one is malformed or no longer matches the image)."""
    if not isinstance(entries, list):
        raise AblationError("config.ablate is not a list")
    out = []
    for i, e in enumerate(entries):
        where = f"config.ablate[{i}]"
        if not isinstance(e, Mapping) or set(e) != {"function", "offset", "from", "to"}:
            raise AblationError(f"{where}: not an object with function, offset, from, to")
        function, offset, old, new = e["function"], e["offset"], e["from"], e["to"]
        if not isinstance(function, str) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 32
                for x in (offset, old, new)):
            raise AblationError(f"{where}: a function name and three 32-bit integers")
        if function not in functions_at(image):
            raise AblationError(f"{where}: no function {function!r} in the image")
        hits = [p for p in find_points(image, [function], calls)
                if p.offset == offset and p.original == old and p.weakened == new]
        if not hits:
            raise AblationError(f"{where}: {function}+{offset:#x} holds no point "
                                f"{old:#010x} -> {new:#010x} (the kernel changed)")
        out.append(hits[0])
    return out
