r"""Assembler and linker for ``kernels/*.S``: GNU as syntax in, Keystone encodings out.

Keystone 0.9.2 is used only to encode single instructions, because on its own it gets
wrong exactly what kernel code needs (each measured on this machine; see
``/work/shared/notes/TOOLCHAIN.md``):

* ``b foo+8`` and ``adr x2, foo-4`` silently drop the addend; ``adrp`` with a symbol is
  mis-encoded; ``ldr x0, =sym`` places the literal right after the instruction;
* ``mov x0, #SYM`` fails, ``.inst`` is dropped without a word, ``.section`` is unknown;
* some invalid forms (``ldr x1, [x1], #8``) give no bytes and no error;
* once a symbol resolver is installed, Keystone reads numbers in *hex* (``#16`` encodes
  0x16); the setting even leaks into Keystone handles created later in the process
  (heap reuse), so no handle can be trusted to read decimal;
* PC-relative targets out of range wrap around instead of failing.

So this module does everything else itself: comments, labels, directives, macros,
``.rept``, expressions (with GNU as precedence), literal pools and a two-pass layout
across files. Keystone then sees one instruction at a time in which every number is
written as ``0x...`` (floats as C99 hex floats, ``0x1.8p+1``) and the only symbol is a
synthetic one holding the final target address; every PC-relative encoding is decoded
again and checked against that target.
A differential test (``tests/test_asm_gnu.py``) compares the result with GNU as + ld.

Keystone knows no Armv8.1+ memory instructions, so these are encoded here from the Arm
ARM and never reach it: FEAT_LSE ``CAS``/``CASP``/``SWP``/``LD<op>``/``ST<op>`` (op: add
clr eor set smax smin umax umin) with their ``A``/``L``/``AL`` and ``B``/``H`` variants,
FEAT_LRCPC ``LDAPR{B,H}`` and FEAT_LRCPC2 ``LDAPUR{B,H,SB,SH,SW}``/``STLUR{B,H}``.
Their syntax and register checks are GNU as's (``-march=armv8.4-a``): ``[Xn|SP]`` with an
optional ``#0`` (``#simm9`` for LDAPUR/STLUR), CASP pairs even-numbered and consecutive.

Layout: files are placed in the given order. Each file's ``.text`` starts at the next
multiple of ``max(file_align, the file's largest .text alignment)``, from ``text_base``.
Each file's ``.data`` starts likewise from ``data_base``, and its ``.bss`` (zeros)
follows its ``.data``; an empty section takes no room and is not aligned. Gaps are zero
(``udf #0``). ``Image.text`` is padded to whole words. Literal pools go to the next
``.ltorg`` or the end of the file's ``.text``: 4-byte entries first, then 8-byte entries
aligned to 8, zero padding, entries shared by equal constant or equal symbol+addend,
as GNU as does.

Symbols: ``Image.symbols`` holds every non-numeric label. Globals are keyed by their
name; file-local labels by ``"<source name>:<label>"`` (``Image.addr`` takes either).
``Symbol.name`` is always the bare label. A name resolves to the file's own label or
``.equ`` first, then to a define, then to another file's global. ``symbolize`` uses
the nearest preceding label of the same file and section (globals win ties; GNU
assembler-temporary ``.L`` labels are skipped).

Syntax (a subset of GNU as; anything else is an error, never ignored): comments ``//``
and ``/* */``; ``;`` separators; labels ``name:`` (several per line) and numeric ``1:``
with ``1b``/``1f``; ``.text .data .bss .global .globl .type .size .align .p2align
.balign .byte .hword .short .2byte .word .long .4byte .quad .8byte .xword .space .skip
.zero .ascii .asciz .string .equ .set`` and ``NAME = expr``, ``.macro``/``.endm``
(``\arg``, ``arg=default``, ``arg:req``, ``arg:vararg``, keyword arguments, ``\@``,
``\()``), ``.rept``/``.endr``, ``.ltorg``/``.pool``; ``ldr Xt|Wt, =expr``. Expressions:
decimal, ``0x``, ``0b``, octal ``0NN``, chars ``'a``/``'a'``, symbols, ``.``, unary
``- ~ +``, binary ``* / % << >>`` (tightest), then ``| & ^``, then ``+ -`` -- GNU
precedence, not C's: ``1 + 2 << 3`` is 17.

Known differences from GNU as. Errors here, accepted by GNU: an instruction at an
unaligned ``.text`` offset (GNU pads silently), instructions outside ``.text``, data
directives in ``.bss``, ``.global`` of an ``.equ`` constant, values that do not fit
their data directive (GNU truncates with a warning), comparison and logical operators
in expressions, ``#`` line comments (GNU ignores them, which would silently swallow a
C-preprocessor line), ``adrp``, ``:lo12:``-style operators, ``udf`` (Keystone cannot),
and ``ldr =`` into registers other than Xn/Wn. Accepted here, errors in GNU: a
difference of labels in different sections (all addresses are final here).
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

# No type stubs exist; pyproject also silences them, hence unused-ignore.
import capstone  # type: ignore[import-untyped,unused-ignore]
import keystone  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "AsmError",
    "Image",
    "ListingLine",
    "Source",
    "Symbol",
    "link",
    "link_files",
]

# ---------------------------------------------------------------------------- records


class AsmError(Exception):
    """An assembly or link error at ``file:line``.

    Lines produced by a macro report the line of the (outermost) macro invocation and
    name the macro in ``reason``.
    """

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason

    def __reduce__(self) -> tuple[type[AsmError], tuple[str, int, str]]:
        # Default pickling would re-call __init__ with the formatted message only.
        return (AsmError, (self.file, self.line, self.reason))


@dataclass(frozen=True)
class Source:
    """One assembly file; ``name`` is what errors print (a path, or e.g. ``"P0"``)."""

    name: str
    text: str

    @classmethod
    def from_path(cls, path: str | Path) -> Source:
        return cls(name=str(path), text=Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Symbol:
    name: str
    addr: int
    section: str  # "text" or "data" (.bss labels are "data")
    file: str
    line: int
    is_global: bool


@dataclass(frozen=True)
class ListingLine:
    """One 4-byte word of ``.text``."""

    addr: int
    word: int
    text: str  # Capstone "mnemonic op_str", or ".word 0x........" for non-instructions
    is_insn: bool
    symbol: str  # "func+0x14"
    file: str  # "" for padding between files
    line: int
    source: str  # the source line, stripped


@dataclass(frozen=True)
class _SymbolIndex:
    """Sorted lookup tables behind ``Image.symbolize``."""

    addrs: tuple[int, ...]
    names: tuple[str, ...]
    region_starts: tuple[int, ...]
    region_ends: tuple[int, ...]

    @classmethod
    def build(
        cls, symbols: Iterable[Symbol], ranges: Iterable[tuple[int, int, int, int]]
    ) -> _SymbolIndex:
        # At one address prefer a global, then the label defined first.
        ranked = sorted(
            (s.addr, s.is_global, -i, s.name)
            for i, s in enumerate(symbols)
            if not s.name.startswith(".L")  # GNU assembler-temporary labels
        )
        regions = sorted(
            (start, end)
            for ts, te, ds, de in ranges
            for start, end in ((ts, te), (ds, de))
            if end > start
        )
        return cls(
            addrs=tuple(r[0] for r in ranked),
            names=tuple(r[3] for r in ranked),
            region_starts=tuple(r[0] for r in regions),
            region_ends=tuple(r[1] for r in regions),
        )

    def symbolize(self, addr: int) -> str:
        r = bisect.bisect_right(self.region_starts, addr) - 1
        if r >= 0 and addr < self.region_ends[r]:
            i = bisect.bisect_right(self.addrs, addr) - 1
            # Never name an address after a symbol of another file or section.
            if i >= 0 and self.addrs[i] >= self.region_starts[r]:
                off = addr - self.addrs[i]
                return self.names[i] if off == 0 else f"{self.names[i]}+{off:#x}"
        return f"{addr:#x}"


@dataclass(frozen=True)
class Image:
    """A linked image: bytes, symbols and a per-word listing of ``.text``."""

    text_base: int
    text: bytes
    data_base: int
    data: bytes
    symbols: Mapping[str, Symbol]
    listing: tuple[ListingLine, ...]
    file_ranges: Mapping[str, tuple[int, int, int, int]]
    digest: str
    _index: _SymbolIndex = field(init=False, repr=False, compare=False)
    _insn_addrs: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: derived lookup tables are set once here.
        index = _SymbolIndex.build(self.symbols.values(), self.file_ranges.values())
        object.__setattr__(self, "_index", index)
        insns = tuple(line.addr for line in self.listing if line.is_insn)
        object.__setattr__(self, "_insn_addrs", insns)

    def addr(self, name: str) -> int:
        """Address of a global (``name``) or file-local (``"file:label"``) symbol."""
        sym = self.symbols.get(name)
        if sym is None:
            close = difflib.get_close_matches(name, list(self.symbols), n=5, cutoff=0.6)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise KeyError(f"no symbol {name!r} in image{hint}")
        return sym.addr

    def symbolize(self, addr: int) -> str:
        """``"name+0x14"`` for the nearest preceding label of the same file and section."""
        return self._index.symbolize(addr)

    def line_of(self, addr: int) -> ListingLine | None:
        off = addr - self.text_base
        if 0 <= off < len(self.listing) * 4:
            return self.listing[off // 4]
        return None

    def insn_addrs(self) -> tuple[int, ...]:
        """Addresses of words assembled from instructions (not data, pools or padding)."""
        return self._insn_addrs


# ------------------------------------------------------------------------- constants

_MASK64 = (1 << 64) - 1
_NOP = (0xD503201F).to_bytes(4, "little")
_RESERVED_PREFIX = "__tb_"
_TARGET = "__tb_target"  # the one synthetic symbol Keystone ever sees
_MAX_STATEMENTS = 2_000_000  # guards against runaway .rept/macro recursion
_MAX_MACRO_DEPTH = 100
_IDENT = r"[A-Za-z_.$][A-Za-z0-9_.$]*"
_IDENT_RE = re.compile(_IDENT + r"\Z")
_LABEL_RE = re.compile(r"\s*(" + _IDENT + r"|[0-9]+):")
_ASSIGN_RE = re.compile(r"(" + _IDENT + r")\s*=(?!=)\s*(.*)\Z", re.S)
_DIRECTIVE_RE = re.compile(r"(\.[A-Za-z0-9_]+)(?:\s+(.*))?\Z", re.S)
_INSN_RE = re.compile(r"(\S+)\s*(.*)\Z", re.S)
_LDR_LITERAL_RE = re.compile(r"ldr\s+([A-Za-z0-9]+)\s*,\s*=(.*)\Z", re.S | re.I)
_MACRO_REF_RE = re.compile(r"\\(\(\)|@|[A-Za-z_][A-Za-z0-9_]*)")
_PARAM_RE = re.compile(r"(" + _IDENT + r")\s*(?::\s*(req|vararg))?\s*(?:=\s*(.*))?\Z", re.S)
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
_SHIFT_RE = re.compile(r"(lsl|lsr|asr|ror|msl|[us]xt[bhwx])\b\s*(.*)\Z", re.S | re.I)
_COND = "eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al|nv"
_BCOND_RE = re.compile(rf"b\.?(?:{_COND})\Z")
# Names that are operands in their own right; never replaced by a symbol's value.
_RESERVED_OPERAND_RE = re.compile(
    rf"(?:[xwvqdshbz](?:[0-9]|[12][0-9]|3[01])|v(?:[0-9]|[12][0-9]|3[01])\.[0-9]*[bhsdq]"
    rf"|sp|wsp|xzr|wzr|lr|fp|ip0|ip1|{_COND})\Z",
    re.I,
)
# Mnemonics whose operands include names (barrier options, system registers, cache and
# TLB operations, prefetch kinds): there an unknown name is for Keystone to judge.
_NAMED_OPERAND_MNEMONICS = frozenset({
    "dc", "ic", "tlbi", "at", "sys", "sysl", "msr", "mrs", "dmb", "dsb", "isb",
    "prfm", "prfum", "hint", "psb", "bti",
})
_SIMPLE_LINE_RE = re.compile(r"[^\"';/]*\Z")  # fast path: nothing to scan for
_DATA_WIDTHS: Mapping[str, int] = MappingProxyType({
    ".byte": 1,
    ".hword": 2,
    ".short": 2,
    ".2byte": 2,
    ".word": 4,
    ".long": 4,
    ".4byte": 4,
    ".quad": 8,
    ".8byte": 8,
    ".xword": 8,
})
_SECTIONS = ("text", "data", "bss")


def _s64(value: int) -> int:
    """Wrap to a signed 64-bit value, as GNU as evaluates expressions."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _hex(value: int) -> str:
    # Always spell numbers for Keystone in hex: with a resolver it parses them in hex.
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


# -------------------------------------------------------------------- source lines


@dataclass(frozen=True)
class _Origin:
    """Where a statement came from: errors and listing lines point here."""

    file: str
    line: int
    source: str
    macros: tuple[str, ...] = ()

    def error(self, reason: str) -> AsmError:
        if self.macros:
            reason += f" (in expansion of macro {' > '.join(self.macros)})"
        return AsmError(self.file, self.line, reason)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class _Stmt(NamedTuple):
    origin: _Origin
    text: str


def _char_literal_end(text: str, i: int) -> int:
    """End index of a GNU char literal at ``text[i] == "'"`` (``'a``, ``'a'``, ``'\\n``)."""
    j = i + 1
    if j < len(text) and text[j] == "\\":
        j += 1
    j += 1
    if j < len(text) and text[j] == "'":
        j += 1
    return min(j, len(text))


def _string_end(text: str, i: int, origin: _Origin) -> int:
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == '"':
            return j + 1
        j += 1
    raise origin.error("unterminated string")


def _split_source(src: Source) -> tuple[list[_Stmt], int]:
    """Statements of a file (comments removed, ``;`` split) and its line count."""
    stmts: list[_Stmt] = []
    comment_from: _Origin | None = None  # set while inside /* ... */
    lines = src.text.split("\n")
    for lineno, raw in enumerate(lines, 1):
        raw = raw.rstrip("\r")
        origin = _Origin(src.name, lineno, raw.strip())
        if comment_from is None and _SIMPLE_LINE_RE.match(raw):
            if raw.strip():
                stmts.append(_Stmt(origin, raw))
            continue
        cur: list[str] = []
        i = 0
        while i < len(raw):
            if comment_from is not None:
                end = raw.find("*/", i)
                if end < 0:
                    break
                comment_from, i = None, end + 2
                cur.append(" ")
                continue
            c = raw[i]
            if c == '"':
                j = _string_end(raw, i, origin)
            elif c == "'":
                j = _char_literal_end(raw, i)
            elif raw.startswith("//", i):
                break
            elif raw.startswith("/*", i):
                comment_from, i = origin, i + 2
                continue
            elif c == ";":
                if "".join(cur).strip():
                    stmts.append(_Stmt(origin, "".join(cur)))
                cur, i = [], i + 1
                continue
            else:
                j = i + 1
            cur.append(raw[i:j])
            i = j
        if "".join(cur).strip():
            stmts.append(_Stmt(origin, "".join(cur)))
    if comment_from is not None:
        raise comment_from.error("unterminated /* comment")
    return stmts, len(lines)


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets, parentheses, braces, strings and char literals."""
    parts: list[str] = []
    depth = 0
    start = i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'":
            i = _char_literal_end(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (c == sep or (sep == " " and c.isspace())):
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _first_directive(text: str) -> str:
    """The directive a statement starts with, after any labels ("" if none)."""
    while (m := _LABEL_RE.match(text)) is not None:
        text = text[m.end() :]
    m = _DIRECTIVE_RE.match(text.strip())
    return m.group(1).lower() if m else ""


# ------------------------------------------------------------------------ expressions


@dataclass(frozen=True)
class _Num:
    value: int


@dataclass(frozen=True)
class _Name:
    name: str


@dataclass(frozen=True)
class _Dot:
    pass


@dataclass(frozen=True)
class _LocalRef:
    label: str
    forward: bool


@dataclass(frozen=True)
class _Unary:
    op: str
    operand: _Expr


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Expr
    right: _Expr


_Expr = _Num | _Name | _Dot | _LocalRef | _Unary | _Binary
_Leaf = _Name | _Dot | _LocalRef


class _ExprError(Exception):
    """An expression problem; the caller knows the file and line."""


class _Unresolved(_ExprError):
    """A name without a value yet (pass 1): only an error where a constant is required."""


class _Undefined(_ExprError):
    def __init__(self, name: str) -> None:
        super().__init__(f"undefined symbol '{name}'")
        self.name = name


_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<hex>0[xX][0-9a-fA-F]+)(?![0-9A-Za-z_.$])
    | (?P<bin>0[bB][01]+)(?![0-9A-Za-z_.$])
    | (?P<local>[0-9]+)(?P<dir>[bf])(?![0-9A-Za-z_.$])
    | (?P<dec>[0-9]+)(?![0-9A-Za-z_.$])
    | (?P<name>[A-Za-z_.$][A-Za-z0-9_.$]*)
    | (?P<char>'(?:\\(?:[xX][0-9a-fA-F]+|[0-7]{1,3}|.)|[^\\])'?)
    | (?P<op><<|>>|[-+*/%&|^~()])
    )""",
    re.X | re.S,
)
_SIMPLE_ESCAPES: Mapping[str, int] = MappingProxyType(
    {"b": 8, "f": 12, "n": 10, "r": 13, "t": 9, '"': 34, "\\": 92, "'": 39}
)


def _escape_value(body: str) -> tuple[int, int]:
    """Value and length of the escape after a backslash (GNU: hex digits all taken)."""
    c = body[0]
    if c in "xX":
        m = re.match(r"[0-9a-fA-F]+", body[1:])
        if m is None:
            raise _ExprError("\\x needs hex digits")
        return int(m.group(0), 16) & 0xFF, 1 + m.end()
    if c in "01234567":
        m = re.match(r"[0-7]{1,3}", body)
        assert m is not None
        return int(m.group(0), 8) & 0xFF, m.end()
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], 1
    raise _ExprError(f"unknown escape '\\{c}'")


def _decode_string(literal: str) -> bytes:
    """Bytes of a ``"..."`` literal with GNU as escapes."""
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise _ExprError(f"expected a string in double quotes, got {literal!r}")
    body = literal[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            value, n = _escape_value(body[i + 1 :])
            out.append(value)
            i += 1 + n
        else:
            out += body[i].encode("utf-8")
            i += 1
    return bytes(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise _ExprError(f"cannot parse expression at {text[pos:].strip()!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "dir":
            kind = "local"
        tokens.append((kind, m.group(0).strip()))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent with GNU as precedence (tighter first):
    unary ``- ~ +``; ``* / % << >>``; ``| & ^``; ``+ -``."""

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("+", "-"),
        ("|", "&", "^"),
        ("*", "/", "%", "<<", ">>"),
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> _Expr:
        if not self.tokens:
            raise _ExprError("missing expression")
        expr = self._binary(0)
        if self.pos != len(self.tokens):
            raise _ExprError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text.strip()!r}")
        return expr

    def _peek_op(self) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op":
            return self.tokens[self.pos][1]
        return None

    def _binary(self, level: int) -> _Expr:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (op := self._peek_op()) in self._LEVELS[level]:
            assert op is not None
            self.pos += 1
            left = _Binary(op, left, self._binary(level + 1))
        return left

    def _unary(self) -> _Expr:
        op = self._peek_op()
        if op in ("-", "~", "+"):
            assert op is not None
            self.pos += 1
            return _Unary(op, self._unary())
        return self._primary()

    def _primary(self) -> _Expr:
        if self.pos >= len(self.tokens):
            raise _ExprError(f"expression {self.text.strip()!r} ends early")
        kind, tok = self.tokens[self.pos]
        self.pos += 1
        if kind == "hex":
            return _Num(_s64(int(tok, 16)))
        if kind == "bin":
            return _Num(_s64(int(tok[2:], 2)))
        if kind == "dec":
            if len(tok) > 1 and tok[0] == "0":  # GNU: a leading 0 means octal
                if not re.fullmatch(r"[0-7]+", tok):
                    raise _ExprError(f"bad octal number {tok!r}")
                return _Num(_s64(int(tok, 8)))
            return _Num(_s64(int(tok)))
        if kind == "local":
            return _LocalRef(tok[:-1], tok[-1] == "f")
        if kind == "char":
            body = tok[1:]
            if body.endswith("'") and len(body) > 1 and body != "\\'":
                body = body[:-1]
            if body.startswith("\\"):
                return _Num(_escape_value(body[1:])[0])
            return _Num(ord(body))
        if kind == "name":
            return _Dot() if tok == "." else _Name(tok)
        if tok == "(":
            inner = self._binary(0)
            if self._peek_op() != ")":
                raise _ExprError(f"missing ')' in {self.text.strip()!r}")
            self.pos += 1
            return inner
        raise _ExprError(f"unexpected {tok!r} in {self.text.strip()!r}")


def _parse_expr(text: str) -> _Expr:
    if ":" in text:
        raise _ExprError(
            "relocation operators like :lo12: are not supported (adrp is unusable with "
            "Keystone); use adr or ldr Xn, =sym"
        )
    return _Parser(text).parse()


class _Val(NamedTuple):
    """An expression value: absolute (``section is None``) or an offset in a section."""

    section: str | None
    offset: int


def _evaluate(expr: _Expr, leaf: Callable[[_Leaf], _Val]) -> _Val:
    if isinstance(expr, _Num):
        return _Val(None, expr.value)
    if isinstance(expr, (_Name, _Dot, _LocalRef)):
        return leaf(expr)
    if isinstance(expr, _Unary):
        v = _evaluate(expr.operand, leaf)
        if expr.op == "+":
            return v
        if v.section is not None:
            raise _ExprError(f"cannot apply unary {expr.op} to an address")
        return _Val(None, _s64(-v.offset if expr.op == "-" else ~v.offset))
    a = _evaluate(expr.left, leaf)
    b = _evaluate(expr.right, leaf)
    op = expr.op
    if op == "+":
        if a.section is not None and b.section is not None:
            raise _ExprError("cannot add two addresses")
        return _Val(a.section or b.section, _s64(a.offset + b.offset))
    if op == "-":
        if b.section is None:
            return _Val(a.section, _s64(a.offset - b.offset))
        if a.section == b.section:
            return _Val(None, _s64(a.offset - b.offset))
        raise _ExprError("cannot subtract addresses in different sections here")
    if a.section is not None or b.section is not None:
        raise _ExprError(f"operator {op} needs constants, not addresses")
    x, y = a.offset, b.offset
    if op in ("/", "%"):
        if y == 0:
            raise _ExprError("division by zero")
        q = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)  # C truncation
        return _Val(None, _s64(q if op == "/" else x - q * y))
    if op in ("<<", ">>"):
        if not 0 <= y < 64:
            raise _ExprError(f"shift count {y} out of range")
        # GNU shifts right as unsigned.
        return _Val(None, _s64(x << y if op == "<<" else (x & _MASK64) >> y))
    result = {"*": x * y, "|": x | y, "&": x & y, "^": x ^ y}[op]
    return _Val(None, _s64(result))


def _render(expr: _Expr) -> str:
    if isinstance(expr, _Num):
        return str(expr.value)
    if isinstance(expr, _Name):
        return expr.name
    if isinstance(expr, _Dot):
        return "."
    if isinstance(expr, _LocalRef):
        return expr.label + ("f" if expr.forward else "b")
    if isinstance(expr, _Unary):
        return f"{expr.op}({_render(expr.operand)})"
    return f"({_render(expr.left)}{expr.op}{_render(expr.right)})"


# ---------------------------------------------------------------- pass 1: layout


@dataclass(frozen=True)
class _Param:
    name: str
    default: str | None
    required: bool
    vararg: bool


@dataclass(frozen=True)
class _Macro:
    name: str
    params: tuple[_Param, ...]
    body: tuple[_Stmt, ...]
    origin: _Origin


@dataclass(frozen=True)
class _LabelDef:
    name: str
    section: str
    offset: int
    origin: _Origin
    seq: int


_PoolKey = tuple[int, str, int]  # (size, symbolic base or "", offset/value)


@dataclass(frozen=True)
class _InsnItem:
    origin: _Origin
    seq: int
    offset: int  # in .text
    text: str
    literal: tuple[int, _PoolKey] | None  # (pool id, key) for ldr Rt, =expr


@dataclass(frozen=True)
class _DataItem:
    origin: _Origin
    seq: int
    section: str
    offset: int
    width: int
    exprs: tuple[_Expr, ...]


@dataclass(frozen=True)
class _BytesItem:
    origin: _Origin
    section: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class _EquItem:
    origin: _Origin
    seq: int
    name: str
    expr: _Expr
    section: str  # where "." was
    offset: int


@dataclass(frozen=True)
class _PoolEntry:
    key: _PoolKey
    size: int
    expr: _Expr
    origin: _Origin  # the first ldr that asked for it
    seq: int
    ldr_offset: int  # "." in the expression is that ldr


@dataclass(frozen=True)
class _PoolItem:
    origin: _Origin
    offset: int  # in .text; entries are consecutive, all of one size
    entries: tuple[_PoolEntry, ...]


_Item = _InsnItem | _DataItem | _BytesItem | _EquItem | _PoolItem


@dataclass(frozen=True)
class _FileLayout:
    """Pass-1 result for one file: section-relative offsets, no addresses yet."""

    source: Source
    items: tuple[_Item, ...]
    sizes: Mapping[str, int]
    aligns: Mapping[str, int]
    labels: Mapping[str, _LabelDef]
    numeric: Mapping[str, tuple[_LabelDef, ...]]
    equs: Mapping[str, tuple[_EquItem, ...]]
    globals: Mapping[str, _Origin]
    pool_slots: Mapping[tuple[int, _PoolKey], int]


_Handler = Callable[[_Origin, str, "deque[_Stmt]"], None]


class _Pass1:
    """Expands one file (macros, ``.rept``) and lays it out section by section."""

    def __init__(self, source: Source, defines: Mapping[str, int]) -> None:
        self.source = source
        self.defines = defines
        self.macros: dict[str, _Macro] = {}
        self.macro_count = 0  # GNU's \@: one number per macro expansion, per file
        self.section = "text"
        self.offsets = dict.fromkeys(_SECTIONS, 0)
        self.aligns = {"text": 4, "data": 1, "bss": 1}
        self.labels: dict[str, _LabelDef] = {}
        self.numeric: dict[str, list[_LabelDef]] = {}
        self.env: dict[str, _Val | None] = {}  # running .equ values; None: unknown yet
        self.equs: dict[str, list[_EquItem]] = {}
        self.globals: dict[str, _Origin] = {}
        self.items: list[_Item] = []
        self.seq = 0
        self.pool_id = 0
        self.pending: dict[_PoolKey, _PoolEntry] = {}  # insertion order is pool order
        self.pool_slots: dict[tuple[int, _PoolKey], int] = {}
        self.directives: dict[str, _Handler] = {
            ".text": self._section_directive("text"),
            ".data": self._section_directive("data"),
            ".bss": self._section_directive("bss"),
            ".global": self._global,
            ".globl": self._global,
            ".type": self._ignored,
            ".size": self._ignored,
            ".align": self._align(power=True),
            ".p2align": self._align(power=True),
            ".balign": self._align(power=False),
            ".space": self._space(fill_allowed=True),
            ".skip": self._space(fill_allowed=True),
            ".zero": self._space(fill_allowed=False),
            ".ascii": self._ascii(nul=False),
            ".asciz": self._ascii(nul=True),
            ".string": self._ascii(nul=True),
            ".equ": self._equ_directive,
            ".set": self._equ_directive,
            ".macro": self._macro,
            ".endm": self._stray(".endm", ".macro"),
            ".rept": self._rept,
            ".endr": self._stray(".endr", ".rept"),
            ".ltorg": self._ltorg,
            ".pool": self._ltorg,
        }
        for name, width in _DATA_WIDTHS.items():
            self.directives[name] = self._data(width)

    # -- driver

    def run(self) -> _FileLayout:
        stmts, nlines = _split_source(self.source)
        work: deque[_Stmt] = deque(stmts)
        count = 0
        while work:
            st = work.popleft()
            count += 1
            if count > _MAX_STATEMENTS:
                raise st.origin.error("too many statements (runaway .rept or macro?)")
            self._statement(st, work)
        self._flush_pool(_Origin(self.source.name, nlines, "<literal pool at end of .text>"))
        return _FileLayout(
            source=self.source,
            items=tuple(self.items),
            sizes=MappingProxyType(dict(self.offsets)),
            aligns=MappingProxyType(dict(self.aligns)),
            labels=MappingProxyType(self.labels),
            numeric=MappingProxyType({k: tuple(v) for k, v in self.numeric.items()}),
            equs=MappingProxyType({k: tuple(v) for k, v in self.equs.items()}),
            globals=MappingProxyType(self.globals),
            pool_slots=MappingProxyType(self.pool_slots),
        )

    def _statement(self, st: _Stmt, work: deque[_Stmt]) -> None:
        origin = st.origin
        text = st.text
        while (m := _LABEL_RE.match(text)) is not None:
            self._label(m.group(1), origin)
            text = text[m.end() :]
        text = text.strip()
        if not text:
            return
        if text.startswith("#"):
            raise origin.error("'#' comments are not supported (GNU ignores such lines); use //")
        if (m := _ASSIGN_RE.match(text)) is not None:
            self._equ(origin, m.group(1), m.group(2))
            return
        if text.startswith("."):
            d = _DIRECTIVE_RE.match(text)
            if d is None:
                raise origin.error(f"malformed directive {text!r}")
            name = d.group(1).lower()
            handler = self.directives.get(name)
            if handler is None:
                raise origin.error(f"unsupported directive {name}{_DIRECTIVE_HINTS.get(name, '')}")
            handler(origin, (d.group(2) or "").strip(), work)
            return
        word = text.split(None, 1)[0]
        macro = self.macros.get(word.lower())
        if macro is not None:
            self._invoke(macro, text[len(word) :].strip(), origin, work)
            return
        self._instruction(origin, text)

    # -- helpers

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _check_new_name(self, name: str, origin: _Origin) -> None:
        if name.startswith(_RESERVED_PREFIX):
            raise origin.error(f"names starting with {_RESERVED_PREFIX} are reserved")
        prev = self.labels.get(name)
        if prev is not None:
            raise origin.error(f"symbol '{name}' is already defined at {prev.origin.where}")

    def _label(self, name: str, origin: _Origin) -> None:
        d = _LabelDef(name, self.section, self.offsets[self.section], origin, self._next_seq())
        if name.isdigit():
            self.numeric.setdefault(name, []).append(d)
            return
        self._check_new_name(name, origin)
        if name in self.equs:
            where = self.equs[name][0].origin.where
            raise origin.error(f"label '{name}' is already a constant (.equ at {where})")
        if name in self.defines:
            raise origin.error(f"label '{name}' clashes with a define of the same name")
        self.labels[name] = d

    def _parse(self, text: str, origin: _Origin) -> _Expr:
        try:
            return _parse_expr(text)
        except _ExprError as e:
            raise origin.error(str(e)) from None

    def _leaf(self, node: _Leaf) -> _Val:
        """Pass-1 values: section-relative; anything not seen yet is unresolved."""
        if isinstance(node, _Dot):
            return _Val(self.section, self.offsets[self.section])
        if isinstance(node, _LocalRef):
            defs = self.numeric.get(node.label)
            if node.forward or not defs:
                raise _Unresolved(f"'{node.label}{'f' if node.forward else 'b'}' is not known yet")
            return _Val(defs[-1].section, defs[-1].offset)
        name = node.name
        if name in self.env:
            value = self.env[name]
            if value is None:
                raise _Unresolved(f"'{name}' is not known yet")
            return value
        label = self.labels.get(name)
        if label is not None:
            return _Val(label.section, label.offset)
        if name in self.defines:
            return _Val(None, _s64(self.defines[name]))
        raise _Unresolved(f"'{name}' is not defined yet")

    def _const(self, text: str, origin: _Origin, what: str) -> int:
        expr = self._parse(text, origin)
        try:
            value = _evaluate(expr, self._leaf)
        except _ExprError as e:
            raise origin.error(f"{what} must be a constant known at this point: {e}") from None
        if value.section is not None:
            raise origin.error(f"{what} must be a constant, not an address")
        return value.offset

    def _emit_bytes(self, origin: _Origin, data: bytes) -> None:
        if data:
            self.items.append(_BytesItem(origin, self.section, self.offsets[self.section], data))
            self.offsets[self.section] += len(data)

    def _pad_to(self, origin: _Origin, boundary: int, fill: int | None, section: str) -> None:
        self.aligns[section] = max(self.aligns[section], boundary)
        off = self.offsets[section]
        pad = -off % boundary
        if not pad:
            return
        if fill is None and section == "text":
            # GNU as: zero bytes up to a word boundary, then NOPs.
            data = bytes(pad % 4) + _NOP * (pad // 4)
        else:
            data = bytes([fill or 0]) * pad
        self.items.append(_BytesItem(origin, section, off, data))
        self.offsets[section] += pad

    def _args(self, args: str, origin: _Origin, directive: str) -> list[str]:
        parts = [p.strip() for p in _split_top(args)] if args else []
        if any(not p for p in parts):
            raise origin.error(f"empty operand in {directive}")
        return parts

    # -- directives

    def _section_directive(self, section: str) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            if args:
                raise origin.error(f".{section} takes no arguments (no subsections here)")
            self.section = section

        return handler

    def _global(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        for name in self._args(args, origin, ".global"):
            if not _IDENT_RE.match(name):
                raise origin.error(f"bad symbol name {name!r} in .global")
            self.globals.setdefault(name, origin)

    def _ignored(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        """``.type``/``.size`` only feed ELF metadata, which an image does not have."""

    def _align(self, power: bool) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            parts = [p.strip() for p in _split_top(args)] if args else []
            if not 1 <= len(parts) <= 2:
                raise origin.error("alignment takes 'n[, fill]' (max-skip is not supported)")
            n = self._const(parts[0], origin, "alignment")
            if power:  # .align/.p2align: a power of two on AArch64, as GNU as does
                if not 0 <= n <= 16:
                    raise origin.error(f"alignment exponent {n} out of range 0..16")
                boundary = 1 << n
            else:
                if n < 1 or n & (n - 1) or n > 1 << 16:
                    raise origin.error(f".balign {n} is not a power of two up to 65536")
                boundary = n
            fill = None
            if len(parts) == 2 and parts[1]:
                fill = self._const(parts[1], origin, "fill value")
                if not 0 <= fill <= 0xFF:
                    raise origin.error(f"fill value {fill:#x} does not fit in a byte")
            if self.section == "bss" and fill:
                raise origin.error(".bss holds only zeros")
            self._pad_to(origin, boundary, fill, self.section)

        return handler

    def _space(self, fill_allowed: bool) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            parts = self._args(args, origin, ".space")
            if not 1 <= len(parts) <= (2 if fill_allowed else 1):
                raise origin.error("expected 'size[, fill]'" if fill_allowed else "expected 'size'")
            n = self._const(parts[0], origin, "size")
            if n < 0:
                raise origin.error(f"negative size {n}")
            fill = self._const(parts[1], origin, "fill value") if len(parts) == 2 else 0
            if not 0 <= fill <= 0xFF:
                raise origin.error(f"fill value {fill:#x} does not fit in a byte")
            if self.section == "bss" and fill:
                raise origin.error(".bss holds only zeros")
            self._emit_bytes(origin, bytes([fill]) * n)

        return handler

    def _ascii(self, nul: bool) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            if self.section == "bss":
                raise origin.error(".bss holds only zeros: use .space/.zero there")
            data = bytearray()
            for part in self._args(args, origin, "string directive"):
                try:
                    data += _decode_string(part)
                except _ExprError as e:
                    raise origin.error(str(e)) from None
                if nul:
                    data.append(0)
            self._emit_bytes(origin, bytes(data))

        return handler

    def _data(self, width: int) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            if self.section == "bss":
                raise origin.error(".bss holds only zeros: use .space/.zero there")
            parts = self._args(args, origin, "data directive")
            exprs = tuple(self._parse(p, origin) for p in parts)
            off = self.offsets[self.section]
            self.items.append(_DataItem(origin, self._next_seq(), self.section, off, width, exprs))
            self.offsets[self.section] += width * len(exprs)

        return handler

    def _equ_directive(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        name, comma, expr = args.partition(",")
        if not comma:
            raise origin.error("expected 'name, expression'")
        self._equ(origin, name.strip(), expr)

    def _equ(self, origin: _Origin, name: str, text: str) -> None:
        if not _IDENT_RE.match(name) or name == ".":
            raise origin.error(f"bad constant name {name!r}")
        self._check_new_name(name, origin)
        expr = self._parse(text, origin)
        dot = self.offsets[self.section]
        item = _EquItem(origin, self._next_seq(), name, expr, self.section, dot)
        self.items.append(item)
        self.equs.setdefault(name, []).append(item)
        try:
            self.env[name] = _evaluate(expr, self._leaf)
        except _ExprError:
            self.env[name] = None  # pass 2 evaluates it again and reports real errors

    def _ltorg(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        if args:
            raise origin.error(".ltorg takes no arguments")
        if self.section == "text":  # pools are per section and only .text has ldr
            self._flush_pool(origin)

    def _stray(self, name: str, opener: str) -> _Handler:
        def handler(origin: _Origin, args: str, work: deque[_Stmt]) -> None:
            raise origin.error(f"{name} without {opener}")

        return handler

    def _collect(
        self, work: deque[_Stmt], origin: _Origin, opener: str, closer: str
    ) -> list[_Stmt]:
        body: list[_Stmt] = []
        depth = 1
        while work:
            st = work.popleft()
            d = _first_directive(st.text)
            if d == opener:
                depth += 1
            elif d == closer:
                depth -= 1
                if depth == 0:
                    return body
            body.append(st)
        raise origin.error(f"{opener} without {closer}")

    def _rept(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        count = self._const(args, origin, ".rept count")
        if count < 0:
            raise origin.error(f"negative .rept count {count}")
        body = self._collect(work, origin, ".rept", ".endr")
        if count * len(body) > _MAX_STATEMENTS:
            raise origin.error(f".rept {count} expands to too many statements")
        work.extendleft(reversed(body * count))

    def _macro(self, origin: _Origin, args: str, work: deque[_Stmt]) -> None:
        m = re.match(r"(" + _IDENT + r")\s*,?\s*(.*)\Z", args, re.S)
        if m is None:
            raise origin.error(".macro needs a name")
        name, params_text = m.group(1), m.group(2).strip()
        params: list[_Param] = []
        if params_text:
            pieces = _split_top(params_text) if "," in params_text else params_text.split()
            for piece in pieces:
                p = _PARAM_RE.match(piece.strip())
                if p is None:
                    raise origin.error(f"bad macro parameter {piece.strip()!r}")
                qual = p.group(2)
                params.append(_Param(p.group(1), p.group(3), qual == "req", qual == "vararg"))
        body = self._collect(work, origin, ".macro", ".endm")
        prev = self.macros.get(name.lower())
        if prev is not None:
            raise origin.error(f"macro '{name}' is already defined at {prev.origin.where}")
        self.macros[name.lower()] = _Macro(name, tuple(params), tuple(body), origin)

    def _bind(self, macro: _Macro, text: str, origin: _Origin) -> dict[str, str]:
        params = macro.params
        if not text:
            pieces: list[str] = []
        elif len(params) > 1 and "," not in text:
            pieces = [p for p in _split_top(text, " ") if p]  # GNU also splits on blanks
        else:
            pieces = [p.strip() for p in _split_top(text)]
        values: dict[str, str] = {}
        index = 0
        for i, piece in enumerate(pieces):
            kw = re.match(r"(" + _IDENT + r")\s*=(?!=)\s*(.*)\Z", piece, re.S)
            if kw is not None and any(p.name == kw.group(1) for p in params):
                values[kw.group(1)] = kw.group(2).strip()
                continue
            if index >= len(params):
                raise origin.error(f"too many arguments for macro '{macro.name}'")
            param = params[index]
            if param.vararg:
                values[param.name] = ", ".join(pieces[i:])
                break
            values[param.name] = piece
            index += 1
        for param in params:
            if param.name not in values or (param.required and not values[param.name]):
                if param.required:
                    raise origin.error(f"missing argument '{param.name}' for macro '{macro.name}'")
                values[param.name] = param.default or ""
        return values

    def _invoke(self, macro: _Macro, text: str, origin: _Origin, work: deque[_Stmt]) -> None:
        if len(origin.macros) >= _MAX_MACRO_DEPTH:
            raise origin.error("macros nested too deeply (recursive macro?)")
        values = self._bind(macro, text, origin)
        number = str(self.macro_count)
        self.macro_count += 1

        def substitute(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref == "()":
                return ""
            if ref == "@":
                return number
            # GNU leaves unknown \names alone (they are string escapes like \n).
            return values.get(ref, m.group(0))

        inner = _Origin(origin.file, origin.line, origin.source, (*origin.macros, macro.name))
        lines = [_Stmt(inner, _MACRO_REF_RE.sub(substitute, st.text)) for st in macro.body]
        work.extendleft(reversed(lines))

    # -- instructions and literal pools

    def _instruction(self, origin: _Origin, text: str) -> None:
        if _RESERVED_PREFIX in text:
            raise origin.error(f"names starting with {_RESERVED_PREFIX} are reserved")
        if self.section != "text":
            raise origin.error(f"instructions are only supported in .text, not .{self.section}")
        off = self.offsets["text"]
        if off % 4:
            raise origin.error(f"instruction at unaligned .text offset {off:#x}; add .align 2")
        literal = None
        seq = self._next_seq()
        m = _LDR_LITERAL_RE.match(text)
        if m is not None:
            reg = m.group(1).lower()
            if not re.fullmatch(r"[xw](?:[0-9]|[12][0-9]|30)", reg):
                raise origin.error(f"ldr {reg}, =...: only Xn (8 bytes) and Wn (4 bytes) work")
            size = 8 if reg[0] == "x" else 4
            expr = self._parse(m.group(2), origin)
            key = self._pool_key(expr, size, seq)
            if key not in self.pending:
                self.pending[key] = _PoolEntry(key, size, expr, origin, seq, off)
            literal = (self.pool_id, key)
        self.items.append(_InsnItem(origin, seq, off, text, literal))
        self.offsets["text"] += 4

    def _pool_key(self, expr: _Expr, size: int, seq: int) -> _PoolKey:
        """Pool entries are shared like GNU as does: same size and either the same
        constant, or the same symbol plus the same addend."""

        def leaf(node: _Leaf) -> _Val:
            if isinstance(node, _Dot):
                return _Val(f"dot:{seq}", 0)  # GNU makes a fresh symbol for each "."
            if isinstance(node, _LocalRef):
                defs = self.numeric.get(node.label, [])
                if node.forward:
                    return _Val(f"fwd:{node.label}:{len(defs)}", 0)
                if not defs:
                    raise _ExprError("no such local label")
                return _Val(f"bwd:{node.label}:{defs[-1].seq}", 0)
            value = self.env.get(node.name)
            if value is not None and value.section is None:
                return value
            shadowed = node.name in self.env or node.name in self.labels
            if not shadowed and node.name in self.defines:
                return _Val(None, _s64(self.defines[node.name]))
            return _Val(f"sym:{node.name}", 0)

        try:
            v = _evaluate(expr, leaf)
        except _ExprError:
            return (size, f"expr:{seq}:{_render(expr)}", 0)  # never shared
        return (size, v.section or "", v.offset)

    def _flush_pool(self, origin: _Origin) -> None:
        if not self.pending:
            return
        for size in (4, 8):
            entries = tuple(e for e in self.pending.values() if e.size == size)
            if not entries:
                continue
            self._pad_to(origin, size, 0, "text")
            off = self.offsets["text"]
            for i, e in enumerate(entries):
                self.pool_slots[(self.pool_id, e.key)] = off + i * size
            self.items.append(_PoolItem(origin, off, entries))
            self.offsets["text"] = off + size * len(entries)
        self.pending = {}
        self.pool_id += 1


_DIRECTIVE_HINTS: Mapping[str, str] = MappingProxyType({
    ".inst": " (Keystone drops it silently; use .word)",
    ".section": " (only .text, .data and .bss exist here)",
    ".include": " (pass every file to link() instead)",
})


# ------------------------------------------- LSE atomics and RCpc loads (no Keystone)
#
# Keystone 0.9.2 knows none of FEAT_LSE (CAS, CASP, SWP, LD<op>, ST<op>), FEAT_LRCPC
# (LDAPR) or FEAT_LRCPC2 (LDAPUR, STLUR), so they are encoded here from the Arm ARM
# (DDI 0487, C6.2) and the word goes into .text like any other instruction. Operand
# syntax and register checks are GNU as's (tests/test_asm_gnu.py compares every form).


class _LseForm(NamedTuple):
    family: str  # "amo" (LD<op>, SWP), "st", "cas", "casp", "ldapr", "rcpc2", "rcpc2s"
    fixed: int  # the word with size, registers and immediate zero
    size: int | None  # 0 (B), 1 (H), 2 (LDAPURSW) or None: from the register width


_LSE_SYNTAX: Mapping[str, str] = MappingProxyType({
    "amo": "Ws|Xs, Wt|Xt, [Xn|SP]",
    "st": "Ws|Xs, [Xn|SP]",
    "cas": "Ws|Xs, Wt|Xt, [Xn|SP]",
    "casp": "Ws, W(s+1), Wt, W(t+1), [Xn|SP] (or X registers)",
    "ldapr": "Wt|Xt, [Xn|SP]",
    "rcpc2": "Wt|Xt, [Xn|SP{, #simm9}]",
    "rcpc2s": "Wt|Xt, [Xn|SP{, #simm9}]",
})
_AMO_OPC = {"add": 0, "clr": 1, "eor": 2, "set": 3, "smax": 4, "smin": 5, "umax": 6, "umin": 7}
_ORDERS = {"": (0, 0), "a": (1, 0), "l": (0, 1), "al": (1, 1)}  # (acquire, release)


def _lse_forms() -> Mapping[str, _LseForm]:
    forms: dict[str, _LseForm] = {}
    for sfx, size in (("", None), ("b", 0), ("h", 1)):
        for order, (acq, rel) in _ORDERS.items():
            # Atomic memory operations: size 111 0 00 A R 1 Rs o3 opc 00 Rn Rt
            for name, opc in _AMO_OPC.items():
                word = 0x38200000 | acq << 23 | rel << 22 | opc << 12
                forms[f"ld{name}{order}{sfx}"] = _LseForm("amo", word, size)
                if not acq:  # ST<op>{L}: LD<op>{L} with Rt = ZR
                    forms[f"st{name}{order}{sfx}"] = _LseForm("st", word, size)
            forms[f"swp{order}{sfx}"] = _LseForm("amo", 0x38208000 | acq << 23 | rel << 22, size)
            # Compare and swap: size 001000 1 L 1 Rs o0 11111 Rn Rt
            forms[f"cas{order}{sfx}"] = _LseForm("cas", 0x08A07C00 | acq << 22 | rel << 15, size)
        # LDAPR: size 111 0 00 1 0 1 11111 1 100 00 Rn Rt
        forms[f"ldapr{sfx}"] = _LseForm("ldapr", 0x38BFC000, size)
        # LDAPUR/STLUR: size 011001 opc 0 imm9 00 Rn Rt (opc 00 store, 01 load)
        forms[f"stlur{sfx}"] = _LseForm("rcpc2", 0x19000000, size)
        forms[f"ldapur{sfx}"] = _LseForm("rcpc2", 0x19400000, size)
    # Sign-extending: opc 10 into Xt, 11 into Wt (chosen from the register).
    forms["ldapursb"] = _LseForm("rcpc2s", 0x19800000, 0)
    forms["ldapursh"] = _LseForm("rcpc2s", 0x19800000, 1)
    forms["ldapursw"] = _LseForm("rcpc2s", 0x19800000, 2)
    for order, (acq, rel) in _ORDERS.items():
        # Compare and swap pair: 0 sz 001000 0 L 1 Rs o0 11111 Rn Rt
        forms[f"casp{order}"] = _LseForm("casp", 0x08207C00 | acq << 22 | rel << 15, None)
    return MappingProxyType(forms)


_LSE_FORMS = _lse_forms()
_NO_ACQUIRE_ST_RE = re.compile(r"st(?:add|clr|eor|set|smax|smin|umax|umin)al?[bh]?\Z")
_GPR_ALIASES = {"lr": 30, "fp": 29, "ip0": 16, "ip1": 17}  # X registers, as GNU as
_GPR_RE = re.compile(r"([wx])([0-9]|[12][0-9]|30)\Z")


def _gpr(op: str, mnem: str) -> tuple[int, bool]:
    """A general register operand: (number, 31 for ZR; whether it is an X register)."""
    name = op.strip().lower()
    if name in ("wzr", "xzr"):
        return 31, name[0] == "x"
    if name in _GPR_ALIASES:
        return _GPR_ALIASES[name], True
    m = _GPR_RE.match(name)
    if m is None:
        what = "the stack pointer is not allowed here" if name in ("sp", "wsp") else (
            "expected a general register (W0-W30, WZR, X0-X30, XZR)")
        raise _ExprError(f"{mnem}: {what}, found '{op}'")
    return int(m.group(2)), m.group(1) == "x"


def _encode_lse(
    mnem: str, form: _LseForm, ops: Sequence[str], value: Callable[[str], int]
) -> int:
    """The word of one LSE/RCpc instruction; ``value`` evaluates an offset expression.

    Problems raise ``_ExprError`` with the reason (the caller adds ``file:line``).
    """
    fam = form.family
    nregs = {"amo": 2, "cas": 2, "casp": 4}.get(fam, 1)
    if len(ops) != nregs + 1:
        raise _ExprError(
            f"{mnem} takes {nregs + 1} operands ({_LSE_SYNTAX[fam]}), found {len(ops)}"
        )
    regs = [_gpr(op, mnem) for op in ops[:nregs]]
    x = regs[0][1]
    if fam == "rcpc2s":
        if form.size == 2 and not x:
            raise _ExprError(f"{mnem}: the destination must be an X register, found '{ops[0]}'")
    elif form.size is not None and x:
        raise _ExprError(f"{mnem}: expected a W register, found '{ops[0]}'")
    for op, (_num, is_x) in zip(ops[1:nregs], regs[1:], strict=True):
        if is_x != x:
            raise _ExprError(
                f"{mnem}: '{op}' must be {'an X' if x else 'a W'} register like '{ops[0]}'"
            )
    if fam == "casp":
        for first, second in ((0, 1), (2, 3)):
            if regs[first][0] % 2:
                raise _ExprError(
                    f"{mnem}: a register pair must start at an even-numbered register, "
                    f"found '{ops[first]}'"
                )
            if regs[second][0] != regs[first][0] + 1:
                raise _ExprError(
                    f"{mnem}: a register pair must be two consecutive registers, found "
                    f"'{ops[first]}, {ops[second]}'"
                )
    simm9 = fam in ("rcpc2", "rcpc2s")
    rn, offset = _lse_address(mnem, ops[nregs], value if simm9 else _zero_offset(mnem))
    if simm9 and not -256 <= offset <= 255:
        raise _ExprError(f"{mnem}: offset {offset} is out of range -256 to 255")
    size = form.size if form.size is not None else (3 if x else 2)
    word = form.fixed | size << 30 | rn << 5
    if fam in ("amo", "cas"):
        return word | regs[0][0] << 16 | regs[1][0]
    if fam == "st":
        return word | regs[0][0] << 16 | 31
    if fam == "casp":
        return form.fixed | int(x) << 30 | regs[0][0] << 16 | rn << 5 | regs[2][0]
    if fam == "rcpc2s" and form.size != 2 and not x:
        word |= 1 << 22  # opc 11: sign-extend into a W register
    if fam in ("rcpc2", "rcpc2s"):
        word |= (offset & 0x1FF) << 12
    return word | regs[0][0]


def _lse_address(mnem: str, op: str, value: Callable[[str], int]) -> tuple[int, int]:
    """Base register number (31 for SP) and offset of ``[Xn|SP{, #imm}]``."""
    text = op.strip()
    if not text.startswith("[") or not text.endswith("]"):
        why = "no writeback or post-index" if text.startswith("[") else "an address"
        raise _ExprError(f"{mnem}: expected [Xn|SP] or [Xn|SP, #imm] ({why}), found '{op}'")
    parts = [p.strip() for p in _split_top(text[1:-1])]
    base = parts[0].lower()
    if base == "sp":
        rn = 31
    elif base in _GPR_ALIASES or (_GPR_RE.match(base) and base[0] == "x"):
        rn = _gpr(base, mnem)[0]
    else:
        raise _ExprError(f"{mnem}: the base register must be X0-X30 or SP, found '{parts[0]}'")
    if len(parts) == 1:
        return rn, 0
    if len(parts) > 2 or not parts[1]:
        raise _ExprError(f"{mnem}: expected [Xn|SP] or [Xn|SP, #imm], found '{op}'")
    imm = parts[1].removeprefix("#").strip()
    if not imm or _gpr_like(imm):
        raise _ExprError(f"{mnem}: the offset must be an immediate, found '{parts[1]}'")
    return rn, value(imm)


def _zero_offset(mnem: str) -> Callable[[str], int]:
    def value(text: str) -> int:
        # GNU as takes only a literal 0 here: not 0x0, not an expression worth 0.
        if text != "0":
            raise _ExprError(f"{mnem}: the only offset allowed is #0, found '#{text}'")
        return 0

    return value


def _gpr_like(text: str) -> bool:
    name = text.lower()
    return bool(_GPR_RE.match(name)) or name in ("sp", "wsp", "wzr", "xzr", *_GPR_ALIASES)


# --------------------------------------------------------------- Keystone wrapper


class _PcRel(Enum):
    """PC-relative encodings: (bits of signed byte offset, word-aligned target)."""

    B26 = (28, True)  # b, bl
    IMM19 = (21, True)  # b.cond, cbz/cbnz, ldr/ldrsw/prfm (literal)
    IMM14 = (16, True)  # tbz/tbnz
    ADR = (21, False)

    def __init__(self, bits: int, aligned: bool) -> None:
        self.bits = bits
        self.aligned = aligned

    def offset_of(self, word: int) -> int:
        """The byte offset an encoded instruction really branches or points to."""
        if self is _PcRel.B26:
            raw, width = word & 0x3FFFFFF, 26
        elif self is _PcRel.IMM19:
            raw, width = (word >> 5) & 0x7FFFF, 19
        elif self is _PcRel.IMM14:
            raw, width = (word >> 5) & 0x3FFF, 14
        else:
            raw = ((word >> 5) & 0x7FFFF) << 2 | (word >> 29) & 3
            return raw - (1 << 21) if raw >> 20 else raw
        value = raw - (1 << width) if raw >> (width - 1) else raw
        return value * 4


def _pcrel_operand(mnemonic: str, ops: Sequence[str]) -> tuple[int, _PcRel] | None:
    """Index of the operand that is a PC-relative target, and its encoding."""
    if mnemonic in ("b", "bl"):
        return 0, _PcRel.B26
    if _BCOND_RE.match(mnemonic):
        return 0, _PcRel.IMM19
    if mnemonic in ("cbz", "cbnz"):
        return 1, _PcRel.IMM19
    if mnemonic in ("tbz", "tbnz"):
        return 2, _PcRel.IMM14
    if mnemonic == "adr":
        return 1, _PcRel.ADR
    literal = len(ops) == 2 and not ops[1].lstrip().startswith(("[", "="))
    if mnemonic in ("ldr", "ldrsw", "prfm") and literal:
        return 1, _PcRel.IMM19
    return None


class _KsFailure(Exception):
    """Keystone refused or produced nothing; the message is its reason."""


class _Keystone:
    """One Keystone handle per link() call, with a cache of address-free encodings."""

    def __init__(self) -> None:
        self._ks: Any = keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN)
        self._ks.sym_resolver = self._resolve  # note: this switches Keystone to radix 16
        self._target = 0
        self._missing: list[str] = []
        self._cache: dict[str, int] = {}

    def _resolve(self, name: bytes, value: Any) -> bool:
        if name == _TARGET.encode():
            value[0] = self._target
            return True
        self._missing.append(name.decode("utf-8", "replace"))
        return False

    def encode(self, text: str, addr: int, target: int | None) -> int:
        if target is None and text in self._cache:
            return self._cache[text]
        self._target = (target or 0) & _MASK64
        self._missing.clear()
        try:
            enc, _count = self._ks.asm(text, addr, as_bytes=True)
        except keystone.KsError as e:
            if self._missing:
                raise _Undefined(self._missing[0]) from None
            raise _KsFailure(_ks_reason(e)) from None
        if not enc:
            raise _KsFailure(
                "Keystone produced no encoding (it drops some invalid or unpredictable "
                "forms silently, e.g. writeback to the loaded register)"
            )
        if len(enc) != 4:
            raise _KsFailure(f"Keystone produced {len(enc)} bytes instead of one instruction")
        word = int.from_bytes(bytes(enc), "little")
        if target is None:  # only PC-relative encodings depend on the address
            self._cache[text] = word
        return word


# Keystone's unnamed errors are LLVM operand-match codes; these were seen on this machine.
_KS_ERROR_HINTS: Mapping[int, str] = MappingProxyType({
    520: "an operand or immediate is not valid here",
    528: "immediate out of range",
    539: "bad PC-relative operand",
    547: "offset not encodable (range, or not a multiple of the access size)",
    561: "immediate not encodable by this instruction",
})


def _ks_reason(e: Exception) -> str:
    text = str(e)
    errno = getattr(e, "errno", None)
    if text.startswith("Unknown error"):
        hint = _KS_ERROR_HINTS.get(errno if isinstance(errno, int) else -1, "operands rejected")
        return f"{hint} (Keystone error {errno})"
    return text[:1].lower() + text[1:]


# --------------------------------------------------------------- pass 2: encoding


@dataclass(frozen=True)
class _Placement:
    text: int
    text_end: int
    data: int
    bss: int
    data_end: int

    def base(self, section: str) -> int:
        return {"text": self.text, "data": self.data, "bss": self.bss}[section]


_Owner = tuple[_Origin, bool]  # (origin, is instruction) of a .text word


class _Pass2:
    """Evaluates and encodes one file at its final addresses."""

    def __init__(
        self,
        layout: _FileLayout,
        place: _Placement,
        defines: Mapping[str, int],
        exported: Mapping[str, int],
        hidden: Mapping[str, list[_Origin]],
        ks: _Keystone,
    ) -> None:
        self.layout = layout
        self.place = place
        self.defines = defines
        self.exported = exported  # globals of all files
        self.hidden = hidden  # local labels by name, for "did you forget .global"
        self.ks = ks
        self.env: dict[str, int] = {}
        self.resolving: set[str] = set()
        self._mnemonic = ""  # of the instruction being encoded
        self.buffers = {s: bytearray(layout.sizes[s]) for s in _SECTIONS}
        self.owners: list[_Owner | None] = [None] * ((layout.sizes["text"] + 3) // 4)

    # -- values

    def _lookup(self, name: str) -> int:
        if name in self.env:
            return self.env[name]
        label = self.layout.labels.get(name)
        if label is not None:
            return self.place.base(label.section) + label.offset
        defs = self.layout.equs.get(name)
        if defs:  # used before its .equ: take the last definition, as GNU as does
            if name in self.resolving:
                raise _ExprError(f"'{name}' is defined in terms of itself")
            self.resolving.add(name)
            try:
                last = defs[-1]
                return self._value(last.expr, self.place.base(last.section) + last.offset, last.seq)
            finally:
                self.resolving.discard(name)
        if name in self.defines:
            return _s64(self.defines[name])
        if name in self.exported:
            return self.exported[name]
        raise _Undefined(name)

    def _value(self, expr: _Expr, dot: int, seq: int) -> int:
        def leaf(node: _Leaf) -> _Val:
            if isinstance(node, _Dot):
                return _Val(None, dot)
            if isinstance(node, _LocalRef):
                defs = self.layout.numeric.get(node.label, ())
                seqs = [d.seq for d in defs]
                if node.forward:
                    i = bisect.bisect_right(seqs, seq)
                    if i == len(defs):
                        raise _ExprError(f"no label '{node.label}:' after this line")
                else:
                    i = bisect.bisect_left(seqs, seq) - 1
                    if i < 0:
                        raise _ExprError(f"no label '{node.label}:' before this line")
                return _Val(None, self.place.base(defs[i].section) + defs[i].offset)
            return _Val(None, self._lookup(node.name))

        return _evaluate(expr, leaf).offset

    def _error(self, origin: _Origin, e: _ExprError) -> AsmError:
        reason = str(e)
        if isinstance(e, _Undefined):
            where = self.hidden.get(e.name)
            if where:
                places = ", ".join(o.where for o in where)
                reason += f" ({places} defines it without .global)"
        return origin.error(reason)

    def value(self, expr: _Expr, dot: int, seq: int, origin: _Origin) -> int:
        try:
            return self._value(expr, dot, seq)
        except _ExprError as e:
            raise self._error(origin, e) from None

    def _known(self, name: str) -> bool:
        try:
            self._lookup(name)
        except _ExprError:
            return False
        return True

    # -- output

    def _write(self, section: str, offset: int, data: bytes, owner: _Owner) -> None:
        self.buffers[section][offset : offset + len(data)] = data
        if section == "text" and data:
            for w in range(offset // 4, (offset + len(data) - 1) // 4 + 1):
                if self.owners[w] is None:
                    self.owners[w] = owner

    @staticmethod
    def _fit(value: int, size: int, origin: _Origin, what: str) -> bytes:
        bits = size * 8
        if not -(1 << (bits - 1)) <= value < 1 << bits:
            raise origin.error(f"value {_hex(value)} does not fit in {what} ({size} bytes)")
        return (value & ((1 << bits) - 1)).to_bytes(size, "little")

    def run(self) -> None:
        for item in self.layout.items:
            if isinstance(item, _InsnItem):
                word = self._encode(item)
                self._write("text", item.offset, word.to_bytes(4, "little"), (item.origin, True))
            elif isinstance(item, _DataItem):
                base = self.place.base(item.section) + item.offset
                for i, expr in enumerate(item.exprs):
                    v = self.value(expr, base + i * item.width, item.seq, item.origin)
                    data = self._fit(v, item.width, item.origin, "the data directive")
                    off = item.offset + i * item.width
                    self._write(item.section, off, data, (item.origin, False))
            elif isinstance(item, _BytesItem):
                self._write(item.section, item.offset, item.data, (item.origin, False))
            elif isinstance(item, _EquItem):
                dot = self.place.base(item.section) + item.offset
                self.env[item.name] = self.value(item.expr, dot, item.seq, item.origin)
            else:
                for i, e in enumerate(item.entries):
                    v = self.value(e.expr, self.place.text + e.ldr_offset, e.seq, e.origin)
                    data = self._fit(v, e.size, e.origin, "the literal")
                    self._write("text", item.offset + i * e.size, data, (e.origin, False))

    # -- instructions

    def _encode(self, item: _InsnItem) -> int:
        origin = item.origin
        addr = self.place.text + item.offset
        m = _INSN_RE.match(item.text)
        assert m is not None
        mnemonic, rest = m.group(1), m.group(2).strip()
        mnem = mnemonic.lower()
        if mnem == "adrp":
            raise origin.error(
                "adrp is not supported (Keystone mis-encodes it); use adr (±1 MiB) or ldr Xn, =sym"
            )
        if mnem == "udf":
            raise origin.error("Keystone does not know udf; use .word 0x00000000 (undefined)")
        ops = [op.strip() for op in _split_top(rest)] if rest else []
        if _NO_ACQUIRE_ST_RE.match(mnem):
            load = "ld" + mnem[2:]
            raise origin.error(
                f"there is no {mnem}: the ST<op> aliases have no acquire form; "
                f"write {load} Ws, WZR, [Xn] (or XZR)"
            )
        form = _LSE_FORMS.get(mnem)
        if form is not None:  # Keystone knows none of these: encoded here
            try:
                return _encode_lse(
                    mnem, form, ops, lambda t: self._value(_parse_expr(t), addr, item.seq)
                )
            except _ExprError as e:
                raise self._error(origin, e) from None
        self._mnemonic = mnem
        target: int | None = None
        pcrel: tuple[int, _PcRel] | None = None
        try:
            if item.literal is not None:
                pcrel = (1, _PcRel.IMM19)
                target = self.place.text + self.layout.pool_slots[item.literal]
                what = "literal pool entry"
            else:
                pcrel = _pcrel_operand(mnem, ops)
                if pcrel is not None and pcrel[0] < len(ops):
                    what = ops[pcrel[0]].removeprefix("#").strip()
                    target = self._value(_parse_expr(what), addr, item.seq)
                else:
                    pcrel = None
            for i, op in enumerate(ops):
                ops[i] = _TARGET if pcrel and i == pcrel[0] else self._operand(op, addr, item.seq)
        except _ExprError as e:
            raise self._error(origin, e) from None
        if pcrel is not None and target is not None:
            self._check_range(mnemonic, what, pcrel[1], target - addr, origin)
        ks_text = f"{mnemonic} {', '.join(ops)}" if ops else mnemonic
        try:
            word = self.ks.encode(ks_text, addr, target)
        except _Undefined as e:
            raise self._error(origin, e) from None
        except _KsFailure as e:
            sent = "" if ks_text == item.text else f" (sent to Keystone as '{ks_text}')"
            raise origin.error(f"{e}: '{item.text}'{sent}") from None
        if pcrel is not None and target is not None and pcrel[1].offset_of(word) != target - addr:
            raise origin.error(
                f"Keystone encoded {word:#010x}, which does not reach {what} at {target:#x}"
            )
        return word

    @staticmethod
    def _check_range(mnemonic: str, what: str, kind: _PcRel, offset: int, origin: _Origin) -> None:
        span = 1 << (kind.bits - 1)
        if not -span <= offset < span:
            raise origin.error(
                f"{what} is out of range for {mnemonic} (offset {_hex(offset)}, limit ±{span:#x})"
            )
        if kind.aligned and offset % 4:
            raise origin.error(f"{what} is not 4-byte aligned relative to this {mnemonic}")

    def _immediate(self, text: str, addr: int, seq: int) -> str:
        text = text.strip()
        if _FLOAT_RE.match(text):
            return float(text).hex()  # Keystone in radix 16 cannot read "1.0", but "0x1p+0"
        return _hex(self._value(_parse_expr(text), addr, seq))

    def _operand(self, op: str, addr: int, seq: int) -> str:
        """Rewrite one operand: every number in hex, every symbol by its value."""
        if not op or op[0] == "{":
            return op
        if op[0] == "=":
            raise _ExprError("'=expr' literals work only as 'ldr Xn, =expr' or 'ldr Wn, =expr'")
        if op[0] == "[":
            close = op.rfind("]")
            if close < 0:
                raise _ExprError(f"missing ']' in {op!r}")
            parts = [p.strip() for p in _split_top(op[1:close])]
            out = [parts[0]]
            for part in parts[1:]:
                text = self._operand(part, addr, seq)
                if text and not text.startswith("#") and _looks_numeric(text):
                    text = "#" + text
                out.append(text)
            tail = op[close + 1 :]
            return "[" + ", ".join(out) + "]" + tail
        if op[0] == "#":
            return "#" + self._immediate(op[1:], addr, seq)
        shift = _SHIFT_RE.match(op)
        if shift is not None:
            if not shift.group(2):
                return op
            amount = self._immediate(shift.group(2).removeprefix("#"), addr, seq)
            return f"{shift.group(1)} #{amount}"
        if _IDENT_RE.match(op):
            # A lone name is a register, condition, system register, barrier option...
            # unless it is one of our symbols.
            if _RESERVED_OPERAND_RE.match(op):
                return op
            if not self._known(op):
                if self._mnemonic not in _NAMED_OPERAND_MNEMONICS:
                    raise _Undefined(op)  # Keystone would only say "error 561"
                return op
            return _hex(self._lookup(op))
        try:
            expr = _parse_expr(op)
        except _ExprError:
            return op  # not an expression (e.g. v0.s[1]): Keystone decides
        return _hex(self._value(expr, addr, seq))


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"-?0x[0-9a-f]+", text))


# --------------------------------------------------------------------------- linking


def link(
    sources: Sequence[Source],
    *,
    text_base: int,
    data_base: int,
    defines: Mapping[str, int] = MappingProxyType({}),
    file_align: int = 0x100,
) -> Image:
    """Assemble ``sources`` and link them into one image (see the module docstring)."""
    if file_align < 1 or file_align & (file_align - 1):
        raise ValueError(f"file_align {file_align:#x} is not a power of two")
    if text_base % 4:
        raise ValueError(f"text_base {text_base:#x} is not 4-byte aligned")
    names = [s.name for s in sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate source names: {sorted(dup)}")
    for name in defines:
        if not _IDENT_RE.match(name):
            raise ValueError(f"bad define name {name!r}")

    layouts = [_Pass1(src, defines).run() for src in sources]

    places: list[_Placement] = []
    t, d = text_base, data_base
    for lay in layouts:
        # An empty section takes no room: it is not aligned and does not pad the image.
        if lay.sizes["text"]:
            t = _align_up(t, max(file_align, lay.aligns["text"]))
        text_start = t
        t += lay.sizes["text"]
        if lay.sizes["data"] or lay.sizes["bss"]:
            d = _align_up(d, max(file_align, lay.aligns["data"], lay.aligns["bss"]))
        data_start = d
        bss_start = d + lay.sizes["data"]
        if lay.sizes["bss"]:
            bss_start = _align_up(bss_start, lay.aligns["bss"])
        d = bss_start + lay.sizes["bss"]
        places.append(_Placement(text_start, t, data_start, bss_start, d))

    exported: dict[str, int] = {}
    owner_of: dict[str, _LabelDef] = {}
    hidden: dict[str, list[_Origin]] = {}
    for lay, place in zip(layouts, places, strict=True):
        for name, gorigin in lay.globals.items():
            label = lay.labels.get(name)
            if label is None:
                if name in lay.equs:
                    raise gorigin.error(f".global of constant '{name}': pass it in defines instead")
                continue  # GNU: a .global without a definition only declares an import
            prev = owner_of.get(name)
            if prev is not None:
                raise label.origin.error(
                    f"duplicate global symbol '{name}' (also defined at {prev.origin.where})"
                )
            owner_of[name] = label
            exported[name] = place.base(label.section) + label.offset
        for name, label in lay.labels.items():
            if name not in lay.globals:
                hidden.setdefault(name, []).append(label.origin)

    ks = _Keystone()
    text_end = max((p.text_end for p in places), default=text_base)
    data_end = max((p.data_end for p in places), default=data_base)
    text = bytearray(_align_up(text_end - text_base, 4))
    data = bytearray(data_end - data_base)
    owners: list[_Owner | None] = [None] * (len(text) // 4)
    for lay, place in zip(layouts, places, strict=True):
        p2 = _Pass2(lay, place, defines, exported, hidden, ks)
        p2.run()
        t0 = place.text - text_base
        text[t0 : t0 + lay.sizes["text"]] = p2.buffers["text"]
        owners[t0 // 4 : t0 // 4 + len(p2.owners)] = p2.owners
        d0 = place.data - data_base
        data[d0 : d0 + lay.sizes["data"]] = p2.buffers["data"]
        # .bss stays zero: nothing but zeros can be put there.

    symbols: dict[str, Symbol] = {}
    for lay, place in zip(layouts, places, strict=True):
        for name, label in lay.labels.items():
            is_global = name in lay.globals
            sym = Symbol(
                name=name,
                addr=place.base(label.section) + label.offset,
                section="text" if label.section == "text" else "data",
                file=lay.source.name,
                line=label.origin.line,
                is_global=is_global,
            )
            symbols[name if is_global else f"{lay.source.name}:{name}"] = sym
    file_ranges = {
        lay.source.name: (p.text, p.text_end, p.data, p.data_end)
        for lay, p in zip(layouts, places, strict=True)
    }
    index = _SymbolIndex.build(symbols.values(), file_ranges.values())
    listing = _listing(text_base, bytes(text), owners, index)

    h = hashlib.sha256(b"testbed-image-v1\0")
    h.update(text_base.to_bytes(8, "little") + len(text).to_bytes(8, "little") + text)
    h.update(data_base.to_bytes(8, "little") + len(data).to_bytes(8, "little") + data)
    for name in sorted(exported):
        h.update(name.encode() + b"\0" + exported[name].to_bytes(8, "little"))

    return Image(
        text_base=text_base,
        text=bytes(text),
        data_base=data_base,
        data=bytes(data),
        symbols=MappingProxyType(symbols),
        listing=listing,
        file_ranges=MappingProxyType(file_ranges),
        digest=h.hexdigest(),
    )


def _listing(
    base: int, text: bytes, owners: Sequence[_Owner | None], index: _SymbolIndex
) -> tuple[ListingLine, ...]:
    cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    lines: list[ListingLine] = []
    for i, owner in enumerate(owners):
        addr = base + 4 * i
        chunk = text[4 * i : 4 * i + 4]
        word = int.from_bytes(chunk, "little")
        is_insn = owner is not None and owner[1]
        desc = f".word {word:#010x}"
        if is_insn:
            decoded = list(cs.disasm_lite(chunk, addr))
            if not decoded:
                assert owner is not None
                raise owner[0].error(f"Keystone produced {word:#010x}; Capstone cannot decode it")
            _a, _s, mnem, op_str = decoded[0]
            desc = f"{mnem} {op_str}".strip()
        origin = owner[0] if owner is not None else None
        lines.append(
            ListingLine(
                addr=addr,
                word=word,
                text=desc,
                is_insn=is_insn,
                symbol=index.symbolize(addr),
                file=origin.file if origin else "",
                line=origin.line if origin else 0,
                source=origin.source if origin else "",
            )
        )
    return tuple(lines)


def link_files(
    paths: Sequence[str | Path],
    *,
    text_base: int,
    data_base: int,
    defines: Mapping[str, int] = MappingProxyType({}),
    file_align: int = 0x100,
) -> Image:
    """``link`` of ``Source.from_path`` for each path."""
    return link(
        [Source.from_path(p) for p in paths],
        text_base=text_base,
        data_base=data_base,
        defines=defines,
        file_align=file_align,
    )
