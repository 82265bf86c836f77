"""Parser for herd7's AArch64 litmus format.

The testbed's conformance data (``/work/shared/litmus``) is written in herd's format, so this
module turns such a file into plain records: register and memory initialisation, the code of
each thread (and of its fault handler ``Pn.F``), and the final condition.  It only parses and
checks names (and that a ``CacheType=`` value is one herd accepts); it does not assemble the
code or decide what the condition means.

Layout of a test, as this parser reads it::

    AArch64 NAME                      header line (other architectures: LitmusUnsupported)
    "optional doc string"
    Key=value                         any number of metadata lines (CacheType=IDC, Stable=X9)
    { 0:X0=NOP; [x]=P1:L0; ... }      init block, ';'-separated entries, may span lines
    P0 | P1 | P0.F ;                  thread header; one row per line, '|'-separated cells,
    STR W0,[X1] | L0: B l1 | ... ;    each row ended by ';'
    locations [x; 0:X1;]              optional
    exists (1:X0=1 /\\ x=2)            exists / ~exists / forall and a proposition, with
                                      an optional ';' after it (as herd's grammar)

``(* ... *)`` comments (nested, as in OCaml) may appear anywhere.  Every error is a
`LitmusError` carrying the file, the 1-based line and what was expected; herd features this
module chooses not to support raise `LitmusUnsupported`.
"""

from __future__ import annotations

import enum
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn, TypeAlias

from .memory import CacheType, parse_per_thread, per_thread_words

__all__ = [
    "And",
    "Atom",
    "AtomKind",
    "CodeLine",
    "Condition",
    "Const",
    "LitmusError",
    "LitmusTest",
    "LitmusUnsupported",
    "LocInit",
    "Not",
    "Or",
    "Prop",
    "Quantifier",
    "RegInit",
    "Thread",
    "Value",
    "ValueKind",
    "atoms",
    "evaluate",
    "format_condition",
    "format_prop",
    "format_value",
    "parse",
    "parse_condition",
    "parse_file",
]

_UNSUPPORTED = "unsupported: "
_CACHE_TYPE_KEY = "cachetype"  # herd's MiscParser.cache_type_key, compared in lower case


class LitmusError(Exception):
    """A litmus file that cannot be read: ``str(e) == f"{file}:{line}: {reason}"``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        # All three go to Exception.args so that the error survives pickling (pytest-xdist,
        # multiprocessing) and is rebuilt with the same constructor arguments.
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class LitmusUnsupported(LitmusError):
    """Valid herd syntax (or another architecture) that this parser does not handle."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        # Idempotent so that unpickling, which calls __init__ with the prefixed reason, does
        # not prefix it twice.
        if not reason.startswith(_UNSUPPORTED):
            reason = _UNSUPPORTED + reason
        super().__init__(file, line, reason)

    @property
    def feature(self) -> str:
        """The unsupported feature, without the ``unsupported: `` prefix."""
        return self.reason[len(_UNSUPPORTED):]


# --------------------------------------------------------------------------------------------
# Records


class ValueKind(enum.Enum):
    INT = "int"
    LABEL = "label"
    LOCATION = "location"
    INSTR = "instr"


@dataclass(frozen=True)
class Value:
    """An initial value or a value in the condition."""

    kind: ValueKind
    number: int = 0  # INT
    thread: int = -1  # LABEL: the thread whose code holds the label (P1:L0 -> 1)
    name: str = ""  # LABEL: label name; LOCATION: location name
    text: str = ""  # INSTR: assembly text ("NOP", "B .+8")


@dataclass(frozen=True)
class RegInit:
    """``[type] N:Xn[=value]`` in the init block.  ``value`` is None for a declaration."""

    thread: int
    reg: str  # canonical "X0".."X30"
    value: Value | None
    type: str  # "" if not declared; "int32_t" for an untyped W register; pointers as "void*"
    line: int


@dataclass(frozen=True)
class LocInit:
    """``[type] x[=value]`` or ``[x]=value`` in the init block."""

    name: str
    value: Value | None
    type: str
    line: int


@dataclass(frozen=True)
class CodeLine:
    """One non-empty cell of a thread column."""

    labels: tuple[str, ...]
    text: str  # "" when the cell only holds labels
    line: int


@dataclass(frozen=True)
class Thread:
    index: int
    handler: bool  # True for a "Pn.F" column: the fault handler of thread n
    lines: tuple[CodeLine, ...]


class AtomKind(enum.Enum):
    REG = "reg"
    LOC = "loc"


@dataclass(frozen=True)
class Atom:
    """``N:Xn=value`` (REG) or ``x=value`` / ``[x]=value`` (LOC)."""

    kind: AtomKind
    thread: int  # REG only, else -1
    reg: str  # REG only, else ""
    loc: str  # LOC only, else ""
    value: Value
    # Atoms compare by meaning, not position: a re-parsed condition equals the original, and
    # an atom is usable as a dictionary key for observed outcomes.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    prop: Prop


@dataclass(frozen=True)
class And:
    props: tuple[Prop, ...]


@dataclass(frozen=True)
class Or:
    props: tuple[Prop, ...]


@dataclass(frozen=True)
class Const:
    value: bool


Prop: TypeAlias = Atom | Not | And | Or | Const


class Quantifier(enum.Enum):
    EXISTS = "exists"
    NOT_EXISTS = "~exists"
    FORALL = "forall"


@dataclass(frozen=True)
class Condition:
    quantifier: Quantifier
    prop: Prop
    text: str  # as written, whitespace folded, comments removed


@dataclass(frozen=True)
class LitmusTest:
    path: str
    arch: str
    name: str
    # Mappings are read-only proxies; they are left out of the hash (a proxy is unhashable)
    # but still take part in equality.
    meta: Mapping[str, str] = field(hash=False)
    regs: tuple[RegInit, ...]
    locs: tuple[LocInit, ...]
    threads: tuple[Thread, ...]
    handlers: Mapping[int, Thread] = field(hash=False)
    condition: Condition
    locations: tuple[Atom | str, ...]
    doc: str = ""  # the optional quoted line under the header (diy's cycle description)

    @property
    def cache_type(self) -> str | None:
        """The ``CacheType=`` value as written; herd matches the key in any case."""
        for key, value in self.meta.items():
            if key.lower() == _CACHE_TYPE_KEY:
                return value
        return None

    @property
    def cache(self) -> CacheType | None:
        """The cache configuration the file asks for (None: herd's default, IDC=0 DIC=0;
        with one per thread, the system-wide value: IDC or DIC only if every thread
        has it)."""
        text = self.cache_type
        if text is None:
            return None
        per = parse_per_thread(text, len(self.threads))
        return CacheType.parse(text) if per is None else CacheType.common(per)

    @property
    def thread_caches(self) -> tuple[CacheType, ...]:
        """One cache type per thread when ``CacheType=`` names threads (herd's
        per-processor syntax), else ()."""
        text = self.cache_type
        per = None if text is None else parse_per_thread(text, len(self.threads))
        return per or ()

    def location_names(self) -> tuple[str, ...]:
        """Every memory location named in the init, the condition or ``locations``, sorted."""
        names: set[str] = set()
        for reg in self.regs:
            if reg.value is not None and reg.value.kind is ValueKind.LOCATION:
                names.add(reg.value.name)
        for loc in self.locs:
            names.add(loc.name)
            if loc.value is not None and loc.value.kind is ValueKind.LOCATION:
                names.add(loc.value.name)
        for atom in atoms(self.condition.prop):
            if atom.kind is AtomKind.LOC:
                names.add(atom.loc)
            if atom.value.kind is ValueKind.LOCATION:
                names.add(atom.value.name)
        names.update(item for item in self.locations if isinstance(item, str))
        return tuple(sorted(names))


# --------------------------------------------------------------------------------------------
# Propositions


def atoms(prop: Prop) -> list[Atom]:
    """The atoms of ``prop`` in order of appearance (repeats included)."""
    out: list[Atom] = []
    _collect_atoms(prop, out)
    return out


def _collect_atoms(prop: Prop, out: list[Atom]) -> None:
    if isinstance(prop, Atom):
        out.append(prop)
    elif isinstance(prop, Not):
        _collect_atoms(prop.prop, out)
    elif isinstance(prop, And | Or):
        for sub in prop.props:
            _collect_atoms(sub, out)


def evaluate(prop: Prop, holds: Callable[[Atom], bool]) -> bool:
    """Truth value of ``prop`` given the truth of each atom.  Empty And is true, empty Or false."""
    if isinstance(prop, Atom):
        return holds(prop)
    if isinstance(prop, Const):
        return prop.value
    if isinstance(prop, Not):
        return not evaluate(prop.prop, holds)
    if isinstance(prop, And):
        return all(evaluate(sub, holds) for sub in prop.props)
    return any(evaluate(sub, holds) for sub in prop.props)


def format_value(value: Value) -> str:
    """herd syntax for ``value``; parses back to an equal Value."""
    if value.kind is ValueKind.INT:
        # Instruction encodings read better in hex (0x14000001); small numbers in decimal.
        return hex(value.number) if value.number >= 0x10000 else str(value.number)
    if value.kind is ValueKind.LABEL:
        return f"P{value.thread}:{value.name}"
    if value.kind is ValueKind.LOCATION:
        return value.name
    return "NOP" if value.text == "NOP" else f'instr:"{value.text}"'


def _format_atom(atom: Atom) -> str:
    if atom.kind is AtomKind.REG:
        return f"{atom.thread}:{atom.reg}={format_value(atom.value)}"
    # A location called like a keyword only parses back in brackets.
    where = f"[{atom.loc}]" if atom.loc in _PROP_KEYWORDS else atom.loc
    return f"{where}={format_value(atom.value)}"


def format_prop(prop: Prop) -> str:
    """herd-like text (``1:X9=2 /\\ 2:X0=1``), parenthesised only where precedence needs it."""
    if isinstance(prop, Atom):
        return _format_atom(prop)
    if isinstance(prop, Const):
        return "true" if prop.value else "false"
    if isinstance(prop, Not):
        inner = format_prop(prop.prop)
        # "~1:X0=1" would read as a negated number; bracket everything but ~true and ~~p.
        return "~" + inner if isinstance(prop.prop, Const | Not) else f"~({inner})"
    if isinstance(prop, And):
        if not prop.props:
            return "true"
        parts = []
        for sub in prop.props:
            text = format_prop(sub)
            # \/ binds more loosely than /\, so a real disjunction under /\ needs brackets.
            needs = isinstance(sub, Or) and len(sub.props) > 1
            parts.append(f"({text})" if needs else text)
        return " /\\ ".join(parts)
    if not prop.props:
        return "false"
    return " \\/ ".join(format_prop(sub) for sub in prop.props)


def format_condition(condition: Condition) -> str:
    """``exists ...`` text for ``condition``, with the prop in `format_prop` form."""
    return f"{condition.quantifier.value} {format_prop(condition.prop)}"


# --------------------------------------------------------------------------------------------
# Lexical pieces shared by the init block, the condition and `locations`

# Depth of '(' and '~' in a condition.  It bounds the depth of the Prop tree, so neither the
# parser nor atoms()/evaluate()/format_prop() can reach Python's recursion limit.
_MAX_NESTING = 64
_LABEL = r"[A-Za-z_.$][A-Za-z0-9_.$]*"  # GNU as symbol syntax, which herd's labels follow
_LABEL_RE = re.compile(_LABEL)
_LOC_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REG_RE = re.compile(r"([XxWw])([0-9]{1,2})")
# Thread numbers are capped at 9 digits: int() refuses decimal strings over 4300 digits.
_THREAD_NAME_RE = re.compile(r"P([0-9]{1,9})")
_HEADER_CELL_RE = re.compile(r"P([0-9]{1,9})(\.F)?")
_INT_RE = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)")
_LABEL_VALUE_RE = re.compile(r"\s*P([0-9]{1,9})\s*:\s*(" + _LABEL + r")\s*")
_META_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)\s*=(.*)")
_CELL_LABEL_RE = re.compile(r"(" + _LABEL + r")\s*:")
_ARCH_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A line that starts what follows the thread table.
_TAIL_START_RE = re.compile(r"(?:~|exists\b|forall\b|locations\b|filter\b)")
# A line that looks like a thread header, used to place a "missing '}'" error.
_HEADER_LINE_RE = re.compile(r"\s*P[0-9]+(?:\.F)?\s*[|;]")
_PROP_KEYWORDS = frozenset({"true", "false"})


class _Tok(enum.Enum):
    IDENT = "identifier"
    NUM = "number"
    STRING = "string"
    LPAREN = "("
    RPAREN = ")"
    LBRACK = "["
    RBRACK = "]"
    SEMI = ";"
    COLON = ":"
    EQ = "="
    STAR = "*"
    COMMA = ","
    AND = "/\\"
    OR = "\\/"
    NOT = "~"
    IMPLIES = "=>"
    EOF = "end of file"


_WORDS = (_Tok.IDENT, _Tok.NUM, _Tok.STRING, _Tok.EOF)
_PUNCT = types.MappingProxyType({t.value: t for t in _Tok if t not in _WORDS})
_GROUP_KINDS = types.MappingProxyType(
    {"string": _Tok.STRING, "num": _Tok.NUM, "ident": _Tok.IDENT}
)

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[^\S\n]+)
    | (?P<newline>\n)
    | (?P<punct>/\\|\\/|=>|[()\[\];:=*,~])
    | (?P<string>"[^"\n]*")
    | (?P<badstring>"[^"\n]*)
    | (?P<num>-?[0-9][A-Za-z0-9_]*)
    | (?P<ident>[A-Za-z_.$][A-Za-z0-9_.$]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: _Tok
    text: str
    line: int
    start: int  # offsets into the tokenized chunk, to recover the condition as written
    end: int

    def describe(self) -> str:
        return "end of file" if self.kind is _Tok.EOF else f"'{self.text}'"


def _fold(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Parser


class _Cursor:
    """A token stream that never runs past its EOF token."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.last = tokens[0]  # the last token consumed

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        tok = self.peek()
        if tok.kind is not _Tok.EOF:
            self.pos += 1
            self.last = tok
        return tok

    def accept(self, kind: _Tok) -> _Token | None:
        if self.peek().kind is kind:
            return self.next()
        return None

    def peek_ident(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind is _Tok.IDENT and tok.text in words


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        # Old Mac and DOS line ends count as one line end each, as in any editor.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.lines = self._strip_comments(text).split("\n")

    # -- helpers ---------------------------------------------------------------------------

    def last_line(self) -> int:
        """1-based number of the last line with text (1 for an empty file)."""
        for idx in range(len(self.lines) - 1, -1, -1):
            if self.lines[idx].strip():
                return idx + 1
        return 1

    def fail(self, line: int, reason: str) -> NoReturn:
        raise LitmusError(self.path, line, reason)

    def unsupported(self, line: int, feature: str) -> NoReturn:
        raise LitmusUnsupported(self.path, line, feature)

    def _strip_comments(self, text: str) -> str:
        """Blank out ``(* ... *)`` comments (nested), keeping every newline in place."""
        out: list[str] = []
        depth = 0
        in_string = False
        opened: list[int] = []  # lines of the open comments, for the error
        line = 1
        i = 0
        n = len(text)
        while i < n:
            c = text[i]
            pair = text[i:i + 2]
            if c == "\n":
                line += 1
                in_string = False  # strings never span lines
                out.append(c)
                i += 1
            elif depth == 0 and in_string:
                in_string = c != '"'
                out.append(c)
                i += 1
            elif pair == "(*":
                depth += 1
                opened.append(line)
                out.append("  ")
                i += 2
            elif depth > 0 and pair == "*)":
                depth -= 1
                opened.pop()
                out.append("  ")
                i += 2
            elif depth > 0:
                out.append(" ")
                i += 1
            else:
                in_string = c == '"'
                out.append(c)
                i += 1
        if depth:
            self.fail(opened[-1], "unterminated comment: expected '*)' to close '(*'")
        return "".join(out)

    def tokenize(self, chunk: str, first_line: int) -> list[_Token]:
        tokens: list[_Token] = []
        line = first_line
        pos = 0
        while pos < len(chunk):
            m = _TOKEN_RE.match(chunk, pos)
            if m is None:
                self.fail(line, f"unexpected character {chunk[pos]!r}")
            group = m.lastgroup
            text = m.group()
            if group == "newline":
                line += 1
            elif group == "badstring":
                self.fail(line, "unterminated string: expected '\"' before the end of the line")
            elif group != "space":
                kind = _GROUP_KINDS.get(group or "", _PUNCT.get(text, _Tok.EOF))
                tokens.append(_Token(kind, text, line, m.start(), m.end()))
            pos = m.end()
        end_line = tokens[-1].line if tokens else first_line
        tokens.append(_Token(_Tok.EOF, "", end_line, len(chunk), len(chunk)))
        return tokens

    # -- values, registers, atoms ------------------------------------------------------------

    def register(self, tok: _Token, ctx: str) -> tuple[str, bool]:
        """Canonical X name of a register token, and whether it was written as a W name."""
        m = _REG_RE.fullmatch(tok.text) if tok.kind is _Tok.IDENT else None
        if m is None or int(m.group(2)) > 30:
            self.fail(tok.line, f"{ctx}unknown register {tok.describe()}")
        return f"X{int(m.group(2))}", m.group(1) in "Ww"

    def thread_number(self, tok: _Token, ctx: str) -> int:
        # The length cap keeps int() away from Python's limit on huge decimal strings.
        if not tok.text.isdigit() or len(tok.text) > 9:
            self.fail(tok.line, f"{ctx}bad thread number {tok.describe()}")
        return int(tok.text)

    def location(self, tok: _Token, ctx: str) -> str:
        if tok.kind is not _Tok.IDENT:
            self.fail(tok.line, f"{ctx}expected a location name, found {tok.describe()}")
        if _LOC_RE.fullmatch(tok.text) is None:
            self.fail(tok.line, f"{ctx}bad location name {tok.describe()}")
        return tok.text

    def value(self, cur: _Cursor, ctx: str) -> Value:
        tok = cur.next()
        if tok.kind is _Tok.NUM:
            if _INT_RE.fullmatch(tok.text) is None:
                self.fail(tok.line, f"{ctx}bad value {tok.describe()}: not a number")
            if len(tok.text.lstrip("-0xX")) > 20:  # also keeps int() off huge digit strings
                self.fail(tok.line, f"{ctx}value {tok.describe()} does not fit in 64 bits")
            number = int(tok.text, 0) if "x" in tok.text.lower() else int(tok.text, 10)
            if not -(2**63) <= number < 2**64:
                self.fail(tok.line, f"{ctx}value {tok.describe()} does not fit in 64 bits")
            return Value(ValueKind.INT, number=number)
        if tok.kind is not _Tok.IDENT:
            if tok.kind in (_Tok.EOF, _Tok.SEMI):
                self.fail(tok.line, f"{ctx}expected a value after '='")
            self.fail(tok.line, f"{ctx}bad value {tok.describe()}")
        if tok.text in ("instr", "label") and cur.peek().kind is _Tok.COLON:
            cur.next()
            string = cur.next()
            if string.kind is not _Tok.STRING:
                self.fail(string.line, f"{ctx}expected a quoted string after '{tok.text}:'")
            body = string.text[1:-1]
            if tok.text == "instr":
                if not body.strip():
                    self.fail(string.line, f"{ctx}empty instruction in instr:\"\"")
                return Value(ValueKind.INSTR, text=_fold(body))
            m = _LABEL_VALUE_RE.fullmatch(body)
            if m is None:
                self.fail(string.line, f"{ctx}bad label {string.describe()}: expected 'Pn:LABEL'")
            return Value(ValueKind.LABEL, thread=int(m.group(1)), name=m.group(2))
        thread = _THREAD_NAME_RE.fullmatch(tok.text)
        if thread is not None and cur.peek().kind is _Tok.COLON:
            cur.next()
            label = cur.next()
            if label.kind is not _Tok.IDENT or _LABEL_RE.fullmatch(label.text) is None:
                found = label.describe()
                self.fail(label.line, f"{ctx}expected a label after '{tok.text}:', found {found}")
            return Value(ValueKind.LABEL, thread=int(thread.group(1)), name=label.text)
        if tok.text == "NOP":
            return Value(ValueKind.INSTR, text="NOP")
        if cur.peek().kind is _Tok.LPAREN:
            self.unsupported(tok.line, f"value '{tok.text}(...)'")
        return Value(ValueKind.LOCATION, name=self.location(tok, ctx))

    def atom(self, cur: _Cursor, after: str) -> Atom:
        ctx = "condition: "
        tok = cur.peek()
        if tok.kind is _Tok.NUM:
            cur.next()
            thread = self.thread_number(tok, ctx)
            if cur.accept(_Tok.COLON) is None:
                self.fail(cur.peek().line, f"{ctx}expected ':' after thread number '{tok.text}'")
            reg, _ = self.register(cur.next(), ctx)
            self.expect_eq(cur, ctx, f"{thread}:{reg}")
            return Atom(AtomKind.REG, thread, reg, "", self.value(cur, ctx), tok.line)
        if tok.kind is _Tok.LBRACK:
            cur.next()
            loc = self.location(cur.next(), ctx)
            if cur.accept(_Tok.RBRACK) is None:
                self.fail(cur.peek().line, f"{ctx}expected ']' after '[{loc}'")
        elif tok.kind is _Tok.IDENT and tok.text not in _PROP_KEYWORDS:
            cur.next()
            if cur.peek().kind is _Tok.LPAREN:
                self.unsupported(tok.line, f"'{tok.text}(...)' atoms in conditions")
            loc = self.location(tok, ctx)
        else:
            found = "" if tok.kind is _Tok.EOF else f", found {tok.describe()}"
            self.fail(tok.line, f"{ctx}expected an atom after '{after}'{found}")
        self.expect_eq(cur, ctx, loc)
        return Atom(AtomKind.LOC, -1, "", loc, self.value(cur, ctx), tok.line)

    def expect_eq(self, cur: _Cursor, ctx: str, what: str) -> None:
        if cur.accept(_Tok.EQ) is None:
            tok = cur.peek()
            self.fail(tok.line, f"{ctx}expected '=' after '{what}', found {tok.describe()}")

    # -- condition ----------------------------------------------------------------------------

    def condition(self, cur: _Cursor, chunk: str) -> Condition:
        ctx = "condition: "
        tok = cur.peek()
        expected = "expected 'exists', '~exists' or 'forall'"
        if tok.kind is _Tok.NOT and cur.peek(1).kind is _Tok.IDENT and cur.peek(1).text == "exists":
            cur.next()
            cur.next()
            quantifier = Quantifier.NOT_EXISTS
        elif cur.peek_ident("exists", "forall"):
            quantifier = Quantifier(cur.next().text)
        elif cur.peek_ident("filter"):
            self.unsupported(tok.line, "'filter' clauses")
        elif tok.kind is _Tok.EOF:
            self.fail(tok.line, f"missing final condition: {expected}")
        elif tok.kind is _Tok.IDENT:
            self.fail(tok.line, f"{ctx}unknown quantifier '{tok.text}': {expected}")
        else:
            self.fail(tok.line, f"{ctx}{expected}, found {tok.describe()}")
        prop = self.prop(cur, quantifier.value, 0)
        text_end = cur.last.end
        cur.accept(_Tok.SEMI)  # herd's grammar: "final: constr | constr SEMI"
        end = cur.peek()
        if end.kind is _Tok.IMPLIES:
            self.unsupported(end.line, "implication '=>' in conditions")
        if end.kind is _Tok.IDENT and end.text == "with":
            self.unsupported(end.line, "'with' clauses")
        if end.kind is not _Tok.EOF:
            self.fail(
                end.line, f"{ctx}expected '/\\', '\\/' or the end of the condition, "
                f"found {end.describe()}"
            )
        text = _fold(chunk[tok.start:text_end])
        return Condition(quantifier, prop, text)

    def prop(self, cur: _Cursor, after: str, depth: int) -> Prop:
        # Precedence as in herd: ~ binds tightest, then /\, then \/.  Chains are flattened
        # (a /\ (b /\ c) is And((a, b, c))) because both connectives are associative.
        disjuncts = [self.conjunction(cur, after, depth)]
        while cur.accept(_Tok.OR) is not None:
            disjuncts.append(self.conjunction(cur, "\\/", depth))
        return _flatten(Or, disjuncts)

    def conjunction(self, cur: _Cursor, after: str, depth: int) -> Prop:
        conjuncts = [self.unary(cur, after, depth)]
        while cur.accept(_Tok.AND) is not None:
            conjuncts.append(self.unary(cur, "/\\", depth))
        return _flatten(And, conjuncts)

    def unary(self, cur: _Cursor, after: str, depth: int) -> Prop:
        nots = 0
        while (tok := cur.accept(_Tok.NOT)) is not None:  # a loop: "~~~~..." needs no recursion
            nots += 1
            after = "~"
            if depth + nots > _MAX_NESTING:
                self.fail(tok.line, f"condition: '(' and '~' nested deeper than {_MAX_NESTING}")
        depth += nots
        tok = cur.peek()
        prop: Prop
        if tok.kind is _Tok.LPAREN:
            if depth >= _MAX_NESTING:
                self.fail(tok.line, f"condition: '(' and '~' nested deeper than {_MAX_NESTING}")
            cur.next()
            prop = self.prop(cur, "(", depth + 1)
            if cur.accept(_Tok.RPAREN) is None:
                found = cur.peek()
                self.fail(
                    found.line, f"condition: expected ')' to close the '(' on line {tok.line}, "
                    f"found {found.describe()}"
                )
        elif cur.peek_ident(*_PROP_KEYWORDS):
            prop = Const(cur.next().text == "true")
        else:
            prop = self.atom(cur, after)
        for _ in range(nots):
            prop = Not(prop)
        return prop

    def locations(self, cur: _Cursor) -> tuple[Atom | str, ...]:
        ctx = "locations: "
        keyword = cur.next()
        if cur.accept(_Tok.LBRACK) is None:
            self.fail(keyword.line, f"{ctx}expected '[' after 'locations'")
        items: list[Atom | str] = []
        while cur.accept(_Tok.RBRACK) is None:
            tok = cur.next()
            if tok.kind is _Tok.NUM:
                thread = self.thread_number(tok, ctx)
                if cur.accept(_Tok.COLON) is None:
                    self.fail(tok.line, f"{ctx}expected ':' after thread number '{tok.text}'")
                reg, _ = self.register(cur.next(), ctx)
                items.append(Atom(AtomKind.REG, thread, reg, "", Value(ValueKind.INT), tok.line))
            elif tok.kind is _Tok.LBRACK:
                items.append(self.location(cur.next(), ctx))
                if cur.accept(_Tok.RBRACK) is None:
                    self.fail(cur.peek().line, f"{ctx}expected ']' after the location")
            elif tok.kind is _Tok.IDENT:
                items.append(self.location(tok, ctx))
            else:
                self.fail(tok.line, f"{ctx}expected a register, a location or ']', "
                          f"found {tok.describe()}")
            if cur.accept(_Tok.SEMI) is None and cur.peek().kind is not _Tok.RBRACK:
                found = cur.peek()
                self.fail(found.line, f"{ctx}expected ';' or ']', found {found.describe()}")
        return tuple(items)

    # -- init block ---------------------------------------------------------------------------

    def init_entry(self, toks: list[_Token]) -> RegInit | LocInit:
        cur = _Cursor(toks)
        line = toks[0].line
        # A type is every word before the target: "int64_t x", "void *1:X1", "unsigned long x".
        words: list[str] = []
        while cur.peek().kind is _Tok.IDENT and cur.peek(1).kind in (
            _Tok.IDENT, _Tok.STAR, _Tok.NUM
        ):
            words.append(cur.next().text)
        stars = 0
        while cur.accept(_Tok.STAR) is not None:
            stars += 1
        if stars and not words:
            self.fail(line, "expected a type before '*'")
        declared = " ".join(words) + "*" * stars
        tok = cur.next()
        target: tuple[int, str] | str
        if tok.kind is _Tok.NUM:
            thread = self.thread_number(tok, "")
            if cur.accept(_Tok.COLON) is None:
                self.fail(tok.line, f"expected ':' after thread number '{tok.text}'")
            reg, is_w = self.register(cur.next(), "")
            # herd reads a W name as the 32-bit view of the same register.
            reg_type = declared or ("int32_t" if is_w else "")
            target = (thread, reg)
            shown = f"{thread}:{reg}"
        elif tok.kind is _Tok.LBRACK:
            target = shown = self.location(cur.next(), "")
            if cur.accept(_Tok.RBRACK) is None:
                self.fail(cur.peek().line, f"expected ']' after '[{shown}'")
        elif tok.kind is _Tok.IDENT:
            target = shown = self.location(tok, "")
            if cur.peek().kind is _Tok.LBRACK:
                self.unsupported(tok.line, f"array location '{shown}[...]'")
        else:
            self.fail(tok.line, f"expected a register like '0:X1' or a location, "
                      f"found {tok.describe()}")
        value: Value | None = None
        if cur.accept(_Tok.EQ) is not None:
            value = self.value(cur, "")
        elif not declared:
            found = cur.peek()
            self.fail(found.line, f"expected '=' after '{shown}', found {found.describe()}")
        if cur.peek().kind is not _Tok.EOF:
            found = cur.peek()
            self.fail(found.line, f"expected ';' after the init entry for '{shown}', "
                      f"found {found.describe()}")
        if isinstance(target, tuple):
            return RegInit(target[0], target[1], value, reg_type, line)
        return LocInit(target, value, declared, line)

    def init_block(self, start: int) -> tuple[list[RegInit], list[LocInit], int]:
        """Parse the block whose '{' is on line index ``start``; returns the '}' line index."""
        first = self.lines[start]
        col = first.index("{") + 1
        pieces: list[str] = []
        in_string = False
        end: tuple[int, int] | None = None
        for idx in range(start, len(self.lines)):
            text = self.lines[idx]
            pos = col if idx == start else 0
            in_string = False
            for k in range(pos, len(text)):
                c = text[k]
                if c == '"':
                    in_string = not in_string
                elif c == "}" and not in_string:
                    end = (idx, k)
                    break
            if end is not None:
                pieces.append(text[pos:end[1]])
                break
            pieces.append(text[pos:])
        if end is None:
            # Place the error where the block should have ended: before the thread header.
            for idx in range(start + 1, len(self.lines)):
                if _HEADER_LINE_RE.match(self.lines[idx]):
                    self.fail(idx + 1, "expected '}' to close the init block opened on line "
                              f"{start + 1} before the thread header")
            self.fail(start + 1, "'{' is never closed: expected '}' to end the init block")
        end_idx, end_col = end
        if self.lines[end_idx][end_col + 1:].strip():
            self.fail(end_idx + 1, "unexpected text after '}': the header needs its own line")
        tokens = self.tokenize("\n".join(pieces), start + 1)
        regs: list[RegInit] = []
        locs: list[LocInit] = []
        seen: dict[tuple[int, str] | str, int] = {}
        entry: list[_Token] = []
        for tok in tokens:
            if tok.kind not in (_Tok.SEMI, _Tok.EOF):
                entry.append(tok)
                continue
            if entry:
                entry.append(_Token(_Tok.EOF, "", tok.line, tok.start, tok.start))
                record = self.init_entry(entry)
                key: tuple[int, str] | str
                if isinstance(record, RegInit):
                    key, shown = (record.thread, record.reg), f"{record.thread}:{record.reg}"
                    regs.append(record)
                else:
                    key = shown = record.name
                    locs.append(record)
                if key in seen:
                    self.fail(record.line, f"'{shown}' is initialised twice "
                              f"(first on line {seen[key]})")
                seen[key] = record.line
                entry = []
        return regs, locs, end_idx

    # -- thread table -------------------------------------------------------------------------

    def header_row(self, idx: int) -> list[tuple[int, bool]]:
        line = idx + 1
        text = self.lines[idx].strip()
        if not text.endswith(";"):
            self.fail(line, "expected ';' at end of the thread header")
        body = text[:-1]
        if ";" in body:
            self.fail(line, "unexpected ';' inside the thread header")
        columns: list[tuple[int, bool]] = []
        threads = 0
        for cell in body.split("|"):
            name = cell.strip()
            m = _HEADER_CELL_RE.fullmatch(name)
            if m is None:
                self.fail(line, f"thread header: expected 'Pn' or 'Pn.F', found '{name}'")
            index = int(m.group(1))
            if m.group(2) is None:
                if index != threads:
                    self.fail(line, f"thread header: expected P{threads}, found '{name}'")
                threads += 1
            else:
                if index >= threads:
                    self.fail(line, f"thread header: handler '{name}' comes before P{index}")
                if (index, True) in columns:
                    self.fail(line, f"thread header: '{name}' appears twice")
            columns.append((index, m.group(2) is not None))
        return columns

    def table(self, start: int) -> tuple[list[Thread], dict[int, Thread], int]:
        """Parse the thread table from line index ``start``; returns where the tail begins."""
        idx = start
        while idx < len(self.lines) and not self.lines[idx].strip():
            idx += 1
        if idx == len(self.lines) or _TAIL_START_RE.match(self.lines[idx].strip()):
            where = idx + 1 if idx < len(self.lines) else self.last_line()
            self.fail(where, "expected the thread header (e.g. 'P0 | P1 ;')")
        columns = self.header_row(idx)
        cells: list[list[CodeLine]] = [[] for _ in columns]
        n = len(self.lines)
        # later_row[k]: some line after k still belongs to the table or starts the tail.  A
        # line without ';' followed by such lines is a broken row; otherwise it is where the
        # condition starts (perhaps with a misspelt quantifier, reported by the tail parser).
        later_row = [False] * (n + 1)
        for k in range(n - 1, -1, -1):
            s = self.lines[k].strip()
            later_row[k] = later_row[k + 1] or s.endswith(";") or bool(_TAIL_START_RE.match(s))
        idx += 1
        while idx < n:
            text = self.lines[idx].strip()
            if not text:
                idx += 1
                continue
            if _TAIL_START_RE.match(text):
                break
            if not text.endswith(";"):
                if later_row[idx + 1] or "|" in text:
                    self.fail(idx + 1, "expected '|' or ';' at end of thread row")
                break
            # herd ends a row at ';', so "a | b ; c | d ;" is two rows.
            for row in text[:-1].split(";"):
                self.row(row, idx + 1, cells)
            idx += 1
        threads: list[Thread] = []
        handlers: dict[int, Thread] = {}
        labels: dict[int, dict[str, int]] = {}
        for (index, handler), lines in zip(columns, cells, strict=True):
            # A handler shares its thread's labels (P0.F returns with ADR X9,l0 into P0).
            defined = labels.setdefault(index, {})
            for code in lines:
                for label in code.labels:
                    if label in defined:
                        self.fail(code.line, f"label '{label}' defined twice in P{index} "
                                  f"(first on line {defined[label]})")
                    defined[label] = code.line
            thread = Thread(index, handler, tuple(lines))
            if handler:
                handlers[index] = thread
            else:
                threads.append(thread)
        return threads, handlers, idx

    def row(self, row: str, line: int, cells: list[list[CodeLine]]) -> None:
        parts = row.split("|")
        if len(parts) != len(cells):
            self.fail(line, f"thread row has {len(parts)} cells, the header has {len(cells)} "
                      f"columns")
        for column, part in zip(cells, parts, strict=True):
            text = part.strip()
            labels: list[str] = []
            while (m := _CELL_LABEL_RE.match(text)) is not None:
                labels.append(m.group(1))
                text = text[m.end():].lstrip()
            if labels or text:
                column.append(CodeLine(tuple(labels), _fold(text), line))

    # -- whole file ---------------------------------------------------------------------------

    def parse(self) -> LitmusTest:
        lines = self.lines
        idx = 0
        while idx < len(lines) and not lines[idx].strip():
            idx += 1
        if idx == len(lines):
            self.fail(1, "empty file: expected a header line 'AArch64 NAME'")
        arch, name, doc = self.header(idx)
        meta: dict[str, str] = {}
        meta_lines: dict[str, int] = {}
        idx += 1
        while True:
            if idx == len(lines):
                self.fail(self.last_line(), "expected '{' to start the init block")
            text = lines[idx].strip()
            if text.startswith("{"):
                break
            if text.startswith('"'):
                if doc or not (len(text) >= 2 and text.endswith('"') and '"' not in text[1:-1]):
                    self.fail(idx + 1, "expected one quoted doc string line under the header")
                doc = text[1:-1]
            elif text:
                m = _META_RE.fullmatch(text)
                if m is None:
                    self.fail(idx + 1, "expected 'key=value' or '{' to start the init block")
                key, value = m.group(1), m.group(2).strip()
                # herd matches keys in any case, so "cachetype=" repeats "CacheType=".
                if key.lower() in meta_lines:
                    self.fail(idx + 1, f"'{key}' given twice (first on line "
                              f"{meta_lines[key.lower()]})")
                if key.lower() == _CACHE_TYPE_KEY:
                    try:  # per thread (herd's older syntax): thread numbers checked below
                        if per_thread_words(value) is None:
                            CacheType.parse(value)
                    except ValueError as e:
                        self.fail(idx + 1, f"{key}: {e}")
                meta[key] = value
                meta_lines[key.lower()] = idx + 1
            idx += 1
        regs, locs, end = self.init_block(idx)
        threads, handlers, tail = self.table(end + 1)
        for key, value in meta.items():
            if key.lower() == _CACHE_TYPE_KEY:
                try:
                    parse_per_thread(value, len(threads))
                except ValueError as e:
                    self.fail(meta_lines[key.lower()], f"{key}: {e}")
        chunk = "\n".join(lines[tail:])
        # An empty tail reports "missing condition" on the last line that has text.
        cur = _Cursor(self.tokenize(chunk, tail + 1 if tail < len(lines) else self.last_line()))
        locations: tuple[Atom | str, ...] = ()
        if cur.peek_ident("locations"):
            locations = self.locations(cur)
        condition = self.condition(cur, chunk)
        test = LitmusTest(
            path=self.path,
            arch=arch,
            name=name,
            meta=types.MappingProxyType(meta),
            regs=tuple(regs),
            locs=tuple(locs),
            threads=tuple(threads),
            handlers=types.MappingProxyType(handlers),
            condition=condition,
            locations=locations,
            doc=doc,
        )
        self.check_names(test)
        return test

    def header(self, idx: int) -> tuple[str, str, str]:
        line = idx + 1
        text = self.lines[idx].strip()
        words = text.split()
        if words[0].lower() != "aarch64":
            # Only a plain "ARCH NAME" line is another architecture; anything else means the
            # header is missing.
            if _ARCH_RE.fullmatch(words[0]) and len(words) >= 2 and not set("|;={") & set(text):
                self.unsupported(line, f"architecture '{words[0]}' (only AArch64 is supported)")
            self.fail(line, f"expected a header line 'AArch64 NAME', found '{_fold(text)}'")
        if len(words) < 2:
            self.fail(line, f"expected a test name after '{words[0]}'")
        rest = text.split(None, 2)[2] if len(words) > 2 else ""
        if rest and not (len(rest) >= 2 and rest[0] == rest[-1] == '"'):
            self.fail(line, f"unexpected text after the test name: '{_fold(rest)}'")
        return "AArch64", words[1], rest[1:-1]

    def check_names(self, test: LitmusTest) -> None:
        """Every thread, register and label the test names must exist."""
        nthreads = len(test.threads)
        labels: dict[int, set[str]] = {}
        for thread in (*test.threads, *test.handlers.values()):
            for code in thread.lines:
                labels.setdefault(thread.index, set()).update(code.labels)

        def check_value(value: Value | None, line: int, ctx: str) -> None:
            if value is None or value.kind is not ValueKind.LABEL:
                return
            shown = f"P{value.thread}:{value.name}"
            if value.thread >= nthreads:
                self.fail(line, f"{ctx}label '{shown}': there is no thread P{value.thread}")
            if value.name not in labels.get(value.thread, set()):
                self.fail(line, f"{ctx}label '{shown}': no label '{value.name}' in P{value.thread}")

        def check_thread(thread: int, line: int, ctx: str) -> None:
            if thread >= nthreads:
                self.fail(line, f"{ctx}there is no thread P{thread} (the test has {nthreads})")

        for reg in test.regs:
            check_thread(reg.thread, reg.line, "")
            check_value(reg.value, reg.line, "")
        for loc in test.locs:
            check_value(loc.value, loc.line, "")
        for item in test.locations:
            if isinstance(item, Atom):
                check_thread(item.thread, item.line, "locations: ")
        for atom in atoms(test.condition.prop):
            if atom.kind is AtomKind.REG:
                check_thread(atom.thread, atom.line, "condition: ")
            check_value(atom.value, atom.line, "condition: ")


def _flatten(kind: type[And] | type[Or], props: list[Prop]) -> Prop:
    if len(props) == 1:
        return props[0]
    flat: list[Prop] = []
    for prop in props:
        if isinstance(prop, kind):
            flat.extend(prop.props)
        else:
            flat.append(prop)
    return kind(tuple(flat))


# --------------------------------------------------------------------------------------------
# Entry points


def parse(text: str, path: str = "<litmus>") -> LitmusTest:
    """Parse the text of a litmus test; ``path`` is only used in errors and in the result."""
    return _Parser(text, path).parse()


def parse_file(path: str | os.PathLike[str]) -> LitmusTest:
    """Read and parse a litmus file.  Undecodable text is a LitmusError; I/O errors propagate."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise LitmusError(name, line, "not UTF-8 text") from e
    return parse(text, name)


def parse_condition(text: str, path: str = "<condition>") -> Condition:
    """Parse a lone final condition (``exists 1:X0=1 /\\ x=2``), without thread checks."""
    parser = _Parser(text, path)
    chunk = "\n".join(parser.lines)
    return parser.condition(_Cursor(parser.tokenize(chunk, 1)), chunk)
