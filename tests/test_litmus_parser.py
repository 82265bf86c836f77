"""The herd litmus parser (testbed/litmus.py) on the real test files and on broken input."""

from __future__ import annotations

import itertools
import pickle
import random
from pathlib import Path

import pytest

from testbed.litmus import (
    And,
    Atom,
    AtomKind,
    CodeLine,
    Condition,
    Const,
    LitmusError,
    LitmusTest,
    LitmusUnsupported,
    LocInit,
    Not,
    Or,
    Prop,
    Quantifier,
    RegInit,
    Value,
    ValueKind,
    atoms,
    evaluate,
    format_condition,
    format_prop,
    format_value,
    parse,
    parse_condition,
    parse_file,
)

LITMUS = Path("/work/shared/litmus")
ESOP = LITMUS / "esop2020"
IFETCH = LITMUS / "herd-ifetch"

# Path.iterdir, not glob: "MP.RF+[dc]-ic+ctrl-isb.litmus" has brackets that glob reads as a set.
ESOP_FILES = sorted(p for p in ESOP.iterdir() if p.suffix == ".litmus") if ESOP.is_dir() else []
IFETCH_FILES = (
    sorted(p for d in IFETCH.iterdir() if d.is_dir() for p in d.iterdir() if p.suffix == ".litmus")
    if IFETCH.is_dir()
    else []
)
REAL_FILES = ESOP_FILES + IFETCH_FILES

needs_data = pytest.mark.skipif(not REAL_FILES, reason="/work/shared/litmus is not available")


def real_id(path: Path) -> str:
    return str(path.relative_to(LITMUS))


def esop(name: str) -> LitmusTest:
    return parse_file(ESOP / f"{name}.litmus")


def ifetch(config: str, name: str) -> LitmusTest:
    return parse_file(IFETCH / config / f"{name}.litmus")


def reg(thread: int, name: str, value: Value) -> Atom:
    return Atom(AtomKind.REG, thread, name, "", value)


def loc(name: str, value: Value) -> Atom:
    return Atom(AtomKind.LOC, -1, "", name, value)


def num(n: int) -> Value:
    return Value(ValueKind.INT, number=n)


def label(thread: int, name: str) -> Value:
    return Value(ValueKind.LABEL, thread=thread, name=name)


def location(name: str) -> Value:
    return Value(ValueKind.LOCATION, name=name)


def instr(text: str) -> Value:
    return Value(ValueKind.INSTR, text=text)


# --------------------------------------------------------------------------------------------
# The real files


@needs_data
def test_the_data_set_has_the_expected_files() -> None:
    # README counts 54 entries in esop2020/ including the @all and @esop2020 lists.
    assert len(ESOP_FILES) == 52
    assert len(IFETCH_FILES) == 48
    assert {p.parent.name for p in IFETCH_FILES} == {"DIC0-IDC0", "DIC0-IDC1", "DIC1-IDC1"}


@needs_data
@pytest.mark.parametrize("path", REAL_FILES, ids=real_id)
def test_every_real_file_parses(path: Path) -> None:
    test = parse_file(path)
    assert test.arch == "AArch64"
    assert test.path == str(path)
    assert test.name
    assert test.threads and [t.index for t in test.threads] == list(range(len(test.threads)))
    assert all(not t.handler for t in test.threads)
    assert all(h.handler and h.index == i for i, h in test.handlers.items())
    assert atoms(test.condition.prop) or isinstance(test.condition.prop, Const)
    # Each config directory's files carry the matching CacheType line.
    expected = {"DIC0-IDC0": None, "DIC0-IDC1": "IDC", "DIC1-IDC1": "DIC"}
    if path.parent.name in expected:
        assert test.cache_type == expected[path.parent.name]


@needs_data
def test_sm_lob_fault_has_a_handler_and_a_memory_condition() -> None:
    test = ifetch("DIC0-IDC0", "SM+lob-fault")
    assert test.name == "SM+lob-fault"
    assert test.meta == {}
    assert test.cache_type is None
    assert len(test.threads) == 1
    handler = test.handlers[0]
    assert handler.handler and handler.index == 0
    assert [c.text for c in handler.lines] == [
        "MOV W4,#2", "STR W4,[X3]", "ADR X9,l0", "MSR ELR_EL1,X9", "ERET"
    ]
    assert [c.line for c in handler.lines] == [7, 8, 9, 10, 11]
    p0 = test.threads[0].lines
    assert len(p0) == 10
    assert p0[8] == CodeLine(("m0",), "B l0", 15)
    assert p0[9] == CodeLine(("l0",), "", 16)
    # The comment inside the init block is dropped and the entries keep their own lines.
    assert test.regs == (
        RegInit(0, "X0", num(0), "", 2),
        RegInit(0, "X1", label(0, "m0"), "", 3),
        RegInit(0, "X2", num(1), "", 4),
        RegInit(0, "X3", location("x"), "", 5),
    )
    cond = test.condition
    assert cond.quantifier is Quantifier.EXISTS
    assert cond.prop == loc("x", num(1))
    assert isinstance(cond.prop, Atom) and cond.prop.kind is AtomKind.LOC
    assert cond.prop.line == 17
    assert cond.text == "exists(x=1)"
    assert test.location_names() == ("x",)


@needs_data
def test_minijit01_initialises_memory_with_a_label_and_declares_a_pointer() -> None:
    test = ifetch("DIC0-IDC0", "miniJit01")
    assert test.meta == {"Variant": "self"}
    assert len(test.threads) == 2 and not test.handlers
    assert test.locs == (LocInit("x", label(1, "L0"), "", 4),)
    assert RegInit(1, "X1", None, "void*", 7) in test.regs
    assert RegInit(0, "X0", instr("NOP"), "", 5) in test.regs
    assert RegInit(0, "X3", location("x"), "", 5) in test.regs
    assert len(test.regs) == 6
    p1 = test.threads[1].lines
    assert p1[2] == CodeLine(("L0",), "", 12)
    assert test.condition.prop == reg(1, "X9", num(2))
    assert test.location_names() == ("x",)


@needs_data
def test_cache_type_lines() -> None:
    dic = ifetch("DIC1-IDC1", "DIC1.coFF")
    idc = ifetch("DIC0-IDC1", "IDC1.coFF")
    plain = ifetch("DIC0-IDC0", "coFF")
    assert dic.name == "DIC1.coFF" and dic.cache_type == "DIC" and dic.meta["CacheType"] == "DIC"
    assert idc.cache_type == "IDC"
    assert plain.cache_type is None
    # Apart from the header, the three configurations are the same test (the CacheType line
    # shifts the plain file's line numbers by one).
    assert dic.threads == idc.threads
    assert [[(c.labels, c.text, c.line - 1) for c in t.lines] for t in dic.threads] == [
        [(c.labels, c.text, c.line) for c in t.lines] for t in plain.threads
    ]
    assert dic.condition == idc.condition == plain.condition


@needs_data
def test_label_and_instruction_share_a_cell() -> None:
    test = esop("W+F+branches")
    p1 = test.threads[1].lines
    assert p1 == (
        CodeLine((), "CMP X0,#1", 10),
        CodeLine(("L1",), "B.EQ g", 11),
        CodeLine(("f",), "B Lout", 12),
        CodeLine(("g",), "MOV X1,#1", 13),
        CodeLine(("Lout",), "", 14),
    )
    assert test.threads[0].lines == (CodeLine((), "STR W0,[X1]", 10),)
    assert test.regs[0] == RegInit(0, "X0", num(0x54000041), "", 7)
    assert test.condition.text == "exists 1:X1=1"


@needs_data
def test_sm_f_ic_condition_is_a_conjunction_of_three_register_atoms() -> None:
    test = esop("SM.F+ic")
    assert test.meta == {"Stable": "X10"}
    prop = test.condition.prop
    assert isinstance(prop, And)
    assert prop.props == (reg(1, "X0", num(2)), reg(0, "X2", num(1)), reg(0, "X1", num(1)))
    assert all(isinstance(a, Atom) and a.kind is AtomKind.REG for a in prop.props)
    assert [(a.thread, a.reg, a.value.number) for a in atoms(prop)] == [
        (1, "X0", 2), (0, "X2", 1), (0, "X1", 1)
    ]
    assert test.condition.text == "exists (1:X0=2 /\\ 0:X2=1 /\\ 0:X1=1)"


@needs_data
def test_condition_spanning_lines_and_diy_header() -> None:
    test = esop("MP.FF+cachesyncstrong+fpo")
    assert test.doc == "CacheSyncStrongdWW Iffe PodRR Fife"
    assert test.meta == {
        "Generator": "diyone7 (version 7.52+10(dev))",
        "Com": "Iff Fif",
        "Orig": "CacheSyncStrongdWW Iffe PodRR Fife",
    }
    cond = test.condition
    assert cond.quantifier is Quantifier.EXISTS
    assert cond.text == "exists (1:X0=2 /\\ 1:X1=1)"
    assert cond.prop == And((reg(1, "X0", num(2)), reg(1, "X1", num(1))))
    assert [a.line for a in atoms(cond.prop)] == [25, 25]
    assert test.threads[1].lines[0] == CodeLine(("Lself01",), "", 10)


@needs_data
def test_typo_condition_is_parsed_as_written() -> None:
    # README: "~exists 0:X2=0" is a typo for 0:X2=1, but the parser reports the file's text.
    test = esop("SM+cachesync-isb")
    assert test.condition.quantifier is Quantifier.NOT_EXISTS
    assert test.condition.prop == reg(0, "X2", num(0))
    assert test.condition.text == "~exists 0:X2=0"


@needs_data
def test_other_real_features() -> None:
    # Constant in a condition, with a comment trailing inside it.
    wf = esop("W+F")
    assert wf.condition.prop == And((Const(False), reg(1, "X0", num(0))))
    assert wf.condition.text == "exists false /\\ 1:X0=0"
    # An empty init block, one thread, lower-case instructions kept as written.
    ctr = esop("CTR")
    assert ctr.regs == () and ctr.locs == ()
    assert ctr.threads[0].lines[0] == CodeLine((), "MRS x0, CTR_EL0", 5)
    # Typed declarations with and without values.
    typed = esop("MP.RF+dmb+addr-cachesync")
    assert typed.locs == (LocInit("x", None, "int64_t", 4), LocInit("z", None, "int64_t", 5))
    assert RegInit(0, "X2", num(1), "int64_t", 6) in typed.regs
    assert RegInit(1, "X0", None, "int64_t", 8) in typed.regs
    assert typed.location_names() == ("x", "z")
    # [z]=P1:Lend and ins_t pointers.
    addr = ifetch("DIC0-IDC0", "MP.RF+dc-dsb-ic-dsb+addr")
    assert addr.locs == (LocInit("z", label(1, "Lend"), "", 3),)
    assert RegInit(1, "X1", None, "ins_t*", 6) in addr.regs
    # Three threads and two locations.
    mp = esop("MP.RF+[dc]-ic+ctrl-isb")
    assert len(mp.threads) == 3 and mp.location_names() == ("x", "y")
    assert mp.condition.quantifier is Quantifier.NOT_EXISTS


@needs_data
@pytest.mark.parametrize("path", REAL_FILES, ids=real_id)
def test_format_prop_round_trips(path: Path) -> None:
    cond = parse_file(path).condition
    text = format_condition(cond)
    again = parse_condition(text)
    assert again.quantifier is cond.quantifier
    assert again.prop == cond.prop
    assert format_condition(again) == text


@needs_data
def test_crlf_and_path_do_not_change_the_result() -> None:
    path = ESOP / "FOW.litmus"
    text = path.read_text()
    a = parse(text, "a")
    b = parse(text.replace("\n", "\r\n"), "a")
    assert a == b
    assert parse(text, "other").path == "other"


# --------------------------------------------------------------------------------------------
# Small synthetic tests: syntax the real files do not use

BASE = """\
AArch64 T
{
0:X0=1; 0:X1=x;
1:X2=x;
}
 P0          | P1          ;
 STR X0,[X1] | LDR X3,[X2] ;
exists 1:X3=1
"""


def with_line(n: int, text: str, base: str = BASE) -> str:
    """BASE with its 1-based line ``n`` replaced by ``text`` (which may hold newlines)."""
    lines = base.split("\n")
    lines[n - 1] = text
    return "\n".join(lines)


def without_line(n: int, base: str = BASE) -> str:
    lines = base.split("\n")
    del lines[n - 1]
    return "\n".join(lines)


def test_base_sample_parses() -> None:
    test = parse(BASE)
    assert test.regs == (
        RegInit(0, "X0", num(1), "", 3),
        RegInit(0, "X1", location("x"), "", 3),
        RegInit(1, "X2", location("x"), "", 4),
    )
    assert test.threads[1].lines == (CodeLine((), "LDR X3,[X2]", 7),)
    assert test.condition == Condition(Quantifier.EXISTS, reg(1, "X3", num(1)), "exists 1:X3=1")


def test_condition_may_end_with_one_semicolon() -> None:
    """herd's grammar (stateParser.mly): ``final: constr | constr SEMI``."""
    plain = parse(BASE).condition
    for cond in ("exists 1:X3=1;", "exists 1:X3=1 ;", "exists 1:X3=1\n;", "exists (1:X3=1) ;"):
        test = parse(with_line(8, cond))
        assert test.condition.prop == plain.prop, cond
        assert not test.condition.text.endswith(";"), cond
    both = parse(with_line(8, "exists 1:X3=1 /\\ x=1 ;")).condition
    assert both.text == "exists 1:X3=1 /\\ x=1"
    assert format_condition(both) == "exists 1:X3=1 /\\ x=1"


CATALOGUE = LITMUS / "aarch64-data" / "catalogue"


@pytest.mark.skipif(not CATALOGUE.is_dir(), reason="aarch64-data is not available")
def test_arms_catalogue_test_with_a_semicolon_after_its_condition() -> None:
    test = parse_file(CATALOGUE / "MP+rel+CAS-ok-bothRs-addr.litmus")
    assert test.condition.text == "exists 1:X9=1 /\\ 1:X7=0 /\\ 1:X1=1 /\\ z=5"
    assert [a.loc or a.reg for a in atoms(test.condition.prop)] == ["X9", "X7", "X1", "z"]


def test_values_registers_and_types() -> None:
    text = with_line(3, '0:X0=NOP; 0:w1=x; 0:X4=instr:"B  .+8"; 0:X5=label:"P1:L0"; '
                     "0:X6=-1; 0:X7=0xFFFFFFFFFFFFFFFF; uint64_t 0:X8=3; int y=2; x=y;")
    text = with_line(7, " STR X0,[X1] | L0: LDR X3,[X2] ;", text)
    test = parse(text)
    assert test.regs[:7] == (
        RegInit(0, "X0", instr("NOP"), "", 3),
        RegInit(0, "X1", location("x"), "int32_t", 3),
        RegInit(0, "X4", instr("B .+8"), "", 3),
        RegInit(0, "X5", label(1, "L0"), "", 3),
        RegInit(0, "X6", num(-1), "", 3),
        RegInit(0, "X7", num(2**64 - 1), "", 3),
        RegInit(0, "X8", num(3), "uint64_t", 3),
    )
    assert test.locs == (LocInit("y", num(2), "int", 3), LocInit("x", location("y"), "", 3))
    assert test.location_names() == ("x", "y")


def test_condition_values_and_operators() -> None:
    cond = parse_condition(
        'forall (0:X0=P1:L0 \\/ 1:W2=instr:"B .+8") /\\ ~[x]=NOP /\\ y=z \\/ ~~true'
    )
    assert cond.quantifier is Quantifier.FORALL
    left = Or((reg(0, "X0", label(1, "L0")), reg(1, "X2", instr("B .+8"))))
    assert cond.prop == Or((
        And((left, Not(loc("x", instr("NOP"))), loc("y", location("z")))),
        Not(Not(Const(True))),
    ))
    assert format_prop(cond.prop) == (
        '(0:X0=P1:L0 \\/ 1:X2=instr:"B .+8") /\\ ~(x=NOP) /\\ y=z \\/ ~~true'
    )


@pytest.mark.parametrize(
    ("text", "quantifier"),
    [
        ("exists 0:X0=1", Quantifier.EXISTS),
        ("~exists 0:X0=1", Quantifier.NOT_EXISTS),
        ("~ exists 0:X0=1", Quantifier.NOT_EXISTS),
        ("forall 0:X0=1", Quantifier.FORALL),
    ],
)
def test_quantifiers(text: str, quantifier: Quantifier) -> None:
    test = parse(with_line(8, text))
    assert test.condition.quantifier is quantifier
    assert test.condition.prop == reg(0, "X0", num(1))


def test_locations_line() -> None:
    test = parse(with_line(8, "locations [x; 0:X1; [y];]\nexists 1:X3=1"))
    assert test.locations == (
        "x", Atom(AtomKind.REG, 0, "X1", "", Value(ValueKind.INT), 8), "y"
    )
    assert test.location_names() == ("x", "y")
    assert parse(with_line(8, "locations []\nexists 1:X3=1")).locations == ()


def test_handler_columns_and_labels_on_their_own_line() -> None:
    text = """\
AArch64 H
{ 0:X1=P0:l0; 1:X1=P1:back; }
P0 | P0.F | P1 | P1.F ;
 NOP | ERET | l1: | MOV X0,#1 ;
 l0: | | B back | ;
 | | back: NOP | ;
exists 0:X0=0 /\\ 1:X1=P1:back
"""
    test = parse(text)
    assert [t.index for t in test.threads] == [0, 1]
    assert set(test.handlers) == {0, 1}
    assert test.handlers[0].lines == (CodeLine((), "ERET", 4),)
    assert test.threads[0].lines == (CodeLine((), "NOP", 4), CodeLine(("l0",), "", 5))
    assert test.threads[1].lines == (
        CodeLine(("l1",), "", 4), CodeLine((), "B back", 5), CodeLine(("back",), "NOP", 6)
    )
    assert test.handlers[1].lines == (CodeLine((), "MOV X0,#1", 4),)


def test_format_prop_parenthesises_where_needed() -> None:
    a, b, c = reg(1, "X9", num(2)), reg(2, "X0", num(1)), loc("x", num(0x14000001))
    cases: list[tuple[Prop, str]] = [
        (And((a, b)), "1:X9=2 /\\ 2:X0=1"),
        (Or((a, b)), "1:X9=2 \\/ 2:X0=1"),
        (And((Or((a, b)), c)), "(1:X9=2 \\/ 2:X0=1) /\\ x=0x14000001"),
        (Or((And((a, b)), c)), "1:X9=2 /\\ 2:X0=1 \\/ x=0x14000001"),
        (Not(And((a, b))), "~(1:X9=2 /\\ 2:X0=1)"),
        (Not(a), "~(1:X9=2)"),
        (Not(Const(False)), "~false"),
        (And((Not(Or((a, b))), Const(True))), "~(1:X9=2 \\/ 2:X0=1) /\\ true"),
        (loc("true", num(1)), "[true]=1"),
    ]
    for prop, text in cases:
        assert format_prop(prop) == text
        assert parse_condition(f"exists {text}").prop == prop


def test_format_value() -> None:
    assert format_value(num(5)) == "5"
    assert format_value(num(-1)) == "-1"
    assert format_value(num(0x14000003)) == "0x14000003"
    assert format_value(label(1, "L0")) == "P1:L0"
    assert format_value(location("x")) == "x"
    assert format_value(instr("NOP")) == "NOP"
    assert format_value(instr("B .+8")) == 'instr:"B .+8"'


def never(atom: Atom) -> bool:
    raise AssertionError(f"evaluated {atom} where no atom should be")


def test_evaluate_truth_tables() -> None:
    for p, q in itertools.product([False, True], repeat=2):
        assert evaluate(And((Const(p), Const(q))), never) is (p and q)
        assert evaluate(Or((Const(p), Const(q))), never) is (p or q)
        assert evaluate(Not(Const(p)), never) is (not p)
        assert evaluate(Const(p), never) is p
    assert evaluate(And(()), never) is True
    assert evaluate(Or(()), never) is False
    a, b = reg(0, "X0", num(1)), loc("x", num(2))
    for ta, tb in itertools.product([False, True], repeat=2):
        truth = {a: ta, b: tb}
        prop = parse_condition("exists ~(0:X0=1 /\\ x=2) \\/ x=2").prop
        assert evaluate(prop, truth.__getitem__) is ((not (ta and tb)) or tb)


def test_atoms_in_order_of_appearance() -> None:
    prop = parse_condition("exists x=1 /\\ (0:X1=2 \\/ ~y=3) /\\ x=1").prop
    assert [format_prop(a) for a in atoms(prop)] == ["x=1", "0:X1=2", "y=3", "x=1"]
    assert [a.line for a in atoms(prop)] == [1, 1, 1, 1]


def test_atoms_compare_by_meaning_not_line() -> None:
    first = Atom(AtomKind.REG, 0, "X0", "", num(1), 3)
    again = Atom(AtomKind.REG, 0, "X0", "", num(1), 9)
    assert first == again and hash(first) == hash(again)


def test_error_format_and_pickling() -> None:
    err = LitmusError("f.litmus", 3, "unknown register 'Q0'")
    assert str(err) == "f.litmus:3: unknown register 'Q0'"
    assert (err.file, err.line, err.reason) == ("f.litmus", 3, "unknown register 'Q0'")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    unsup = LitmusUnsupported("f", 1, "'filter' clauses")
    assert unsup.reason == "unsupported: 'filter' clauses"
    assert unsup.feature == "'filter' clauses"
    assert str(pickle.loads(pickle.dumps(unsup))) == "f:1: unsupported: 'filter' clauses"


# --------------------------------------------------------------------------------------------
# Errors, with exact lines


def error_of(text: str) -> LitmusError:
    with pytest.raises(LitmusError) as info:
        parse(text, "t.litmus")
    err = info.value
    assert str(err) == f"t.litmus:{err.line}: {err.reason}"
    return err


ERRORS: list[tuple[str, str, int, str]] = [
    # (case id, text, line, part of the reason)
    ("missing-close-brace", without_line(5), 5,
     "expected '}' to close the init block opened on line 2 before the thread header"),
    ("missing-close-brace-no-table", "AArch64 T\n{\n0:X0=1;\n", 2, "'{' is never closed"),
    ("missing-open-brace", without_line(2), 2, "expected 'key=value' or '{'"),
    ("text-after-brace", with_line(5, "} P0 ;"), 5, "unexpected text after '}'"),
    ("too-many-bars", with_line(7, " STR X0,[X1] | LDR X3,[X2] | NOP ;"), 7,
     "thread row has 3 cells, the header has 2 columns"),
    ("too-few-bars", with_line(7, " STR X0,[X1] LDR X3,[X2] ;"), 7,
     "thread row has 1 cells, the header has 2 columns"),
    ("row-without-semicolon", with_line(7, " STR X0,[X1] | LDR X3,[X2]"), 7,
     "expected '|' or ';' at end of thread row"),
    ("middle-row-without-semicolon", with_line(7, " NOP | NOP\n STR X0,[X1] | LDR X3,[X2] ;"),
     7, "expected '|' or ';' at end of thread row"),
    ("header-without-semicolon", with_line(6, " P0 | P1"), 6,
     "expected ';' at end of the thread header"),
    ("header-order", with_line(6, " P1 | P0 ;"), 6, "thread header: expected P0, found 'P1'"),
    ("header-handler-first", with_line(6, " P0.F | P0 ;"), 6, "handler 'P0.F' comes before P0"),
    ("header-bad-name", with_line(6, " P0 | T1 ;"), 6, "expected 'Pn' or 'Pn.F', found 'T1'"),
    ("no-header", without_line(6), 6, "thread header: expected 'Pn' or 'Pn.F', found 'STR"),
    ("no-table", "AArch64 T\n{}\nexists 0:X0=1\n", 3, "expected the thread header"),
    ("bad-register-init", with_line(4, "1:Q2=x;"), 4, "unknown register 'Q2'"),
    ("bad-register-x31", with_line(4, "1:X31=x;"), 4, "unknown register 'X31'"),
    ("bad-register-condition", with_line(8, "exists 1:SP=1"), 8,
     "condition: unknown register 'SP'"),
    ("bad-value-init", with_line(3, "0:X0=1abc; 0:X1=x;"), 3, "bad value '1abc': not a number"),
    ("bad-value-condition", with_line(8, "exists 1:X3=0x1G"), 8,
     "condition: bad value '0x1G': not a number"),
    ("value-too-big", with_line(3, "0:X0=0x10000000000000000; 0:X1=x;"), 3,
     "does not fit in 64 bits"),
    ("missing-value", with_line(8, "exists 1:X3="), 8, "condition: expected a value after '='"),
    ("bad-char", with_line(3, "0:X0=@1; 0:X1=x;"), 3, "unexpected character '@'"),
    ("missing-semicolon-init", with_line(3, "0:X0=1 0:X1=x;"), 3,
     "expected ';' after the init entry for '0:X0', found '0'"),
    ("missing-equals", with_line(4, "1:X2;"), 4, "expected '=' after '1:X2'"),
    ("init-twice", with_line(4, "0:X0=2;"), 4, "'0:X0' is initialised twice (first on line 3)"),
    ("no-such-thread-init", with_line(4, "2:X2=x;"), 4, "there is no thread P2"),
    ("no-such-thread-label", with_line(4, "1:X2=P5:L0;"), 4,
     "label 'P5:L0': there is no thread P5"),
    ("no-such-label", with_line(4, "1:X2=P1:L0;"), 4, "label 'P1:L0': no label 'L0' in P1"),
    ("bad-label-string", with_line(4, '1:X2=label:"L0";'), 4, "bad label '\"L0\"'"),
    ("unterminated-string", with_line(4, '1:X2=instr:"NOP;'), 4, "unterminated string"),
    ("duplicate-label", with_line(7, " STR X0,[X1] | L0: LDR X3,[X2] ;\n | L0: ;"), 8,
     "label 'L0' defined twice in P1 (first on line 7)"),
    ("unknown-quantifier", with_line(8, "exist 1:X3=1"), 8,
     "condition: unknown quantifier 'exist': expected 'exists', '~exists' or 'forall'"),
    ("no-quantifier", with_line(8, "(1:X3=1)"), 8, "expected 'exists', '~exists' or 'forall'"),
    ("missing-condition", without_line(8), 7, "missing final condition"),
    ("truncated-and", with_line(8, "exists 1:X3=1 /\\"), 8,
     "condition: expected an atom after '/\\'"),
    ("and-then-junk", with_line(8, "exists 1:X3=1 /\\ )"), 8,
     "condition: expected an atom after '/\\', found ')'"),
    ("unclosed-paren", with_line(8, "exists (1:X3=1\n /\\ 0:X0=1"), 9,
     "condition: expected ')' to close the '(' on line 8"),
    ("missing-connective", with_line(8, "exists 1:X3=1 0:X0=1"), 8,
     "expected '/\\', '\\/' or the end of the condition, found '0'"),
    ("two-semicolons", with_line(8, "exists 1:X3=1 ;;"), 8,
     "expected '/\\', '\\/' or the end of the condition, found ';'"),
    ("atom-after-semicolon", with_line(8, "exists 1:X3=1 ; 0:X0=1"), 8,
     "expected '/\\', '\\/' or the end of the condition, found '0'"),
    ("only-semicolon", with_line(8, "exists ;"), 8, "condition: expected an atom"),
    ("condition-thread", with_line(8, "exists 3:X3=1"), 8, "condition: there is no thread P3"),
    ("too-deep", with_line(8, "exists " + "(" * 5000 + "x=1" + ")" * 5000), 8,
     "'(' and '~' nested deeper than 64"),
    ("too-many-nots", with_line(8, "exists " + "~" * 5000 + "x=1"), 8,
     "'(' and '~' nested deeper than 64"),
    ("unterminated-comment", with_line(4, "1:X2=x; (* oops"), 4, "unterminated comment"),
    ("duplicate-meta", with_line(1, "AArch64 T\nStable=X9\nStable=X9"), 3,
     "'Stable' given twice (first on line 2)"),
    ("no-name", with_line(1, "AArch64"), 1, "expected a test name after 'AArch64'"),
    ("no-header-line", with_line(1, "{"), 1, "expected a header line 'AArch64 NAME'"),
    ("empty", "", 1, "empty file"),
    ("only-comment", "(* nothing *)\n\n", 1, "empty file"),
    ("locations-unclosed", with_line(8, "locations [x; 0:X1\nexists 1:X3=1"), 9,
     "locations: expected ';' or ']', found 'exists'"),
]


@pytest.mark.parametrize(("text", "line", "reason"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_errors(text: str, line: int, reason: str) -> None:
    err = error_of(text)
    assert not isinstance(err, LitmusUnsupported)
    assert reason in err.reason
    assert err.line == line


UNSUPPORTED: list[tuple[str, str, int, str]] = [
    ("other-architecture", with_line(1, "X86 T"), 1, "architecture 'X86'"),
    ("filter", with_line(8, "filter 1:X3=1\nexists 1:X3=1"), 8, "'filter' clauses"),
    ("implication", with_line(8, "exists 1:X3=1 => x=1"), 8, "implication '=>'"),
    ("with", with_line(8, "exists 1:X3=1\nwith tso: true"), 9, "'with' clauses"),
    ("semicolon-with", with_line(8, "exists 1:X3=1;\nwith tso: true"), 9, "'with' clauses"),
    ("fault-atom", with_line(8, "exists fault(P0,x)"), 8, "'fault(...)' atoms"),
    ("array", with_line(4, "1:X2=x; int a[2];"), 4, "array location 'a[...]'"),
    ("function-value", with_line(4, "1:X2=PTE(x);"), 4, "value 'PTE(...)'"),
]


@pytest.mark.parametrize(("text", "line", "reason"), [e[1:] for e in UNSUPPORTED],
                         ids=[e[0] for e in UNSUPPORTED])
def test_unsupported(text: str, line: int, reason: str) -> None:
    err = error_of(text)
    assert isinstance(err, LitmusUnsupported)
    assert err.reason.startswith("unsupported: ")
    assert reason in err.feature
    assert err.line == line


def test_parse_file_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.litmus"
    path.write_bytes(BASE.encode().replace(b"exists", b"\xffexists"))
    with pytest.raises(LitmusError) as info:
        parse_file(path)
    assert info.value.line == 8
    assert info.value.file == str(path)
    assert "not UTF-8" in info.value.reason


# --------------------------------------------------------------------------------------------
# Mangled real files: whatever the damage, the only failure is a LitmusError


def mangle(text: str, rng: random.Random) -> list[str]:
    lines = text.split("\n")
    out: list[str] = []
    for _ in range(6):  # truncations
        out.append(text[: rng.randrange(len(text))])
    for ch in ";|{}()*=:[]\"~/\\":  # delete one occurrence of a significant character
        spots = [i for i, c in enumerate(text) if c == ch]
        for i in rng.sample(spots, min(2, len(spots))):
            out.append(text[:i] + text[i + 1:])
    for _ in range(6):  # drop random lines
        keep = [ln for ln in lines if rng.random() > 0.15]
        out.append("\n".join(keep))
    for _ in range(6):  # swap lines
        shuffled = list(lines)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
        out.append("\n".join(shuffled))
    for _ in range(10):  # random insertions of awkward characters
        i = rng.randrange(len(text) + 1)
        junk = rng.choice(["(*", "*)", '"', "\x00", "\r", "é", "9" * 5000, "((((", "P9", "~"])
        out.append(text[:i] + junk + text[i:])
    return out


@needs_data
@pytest.mark.parametrize("path", REAL_FILES, ids=real_id)
def test_mangled_files_only_raise_litmus_errors(path: Path) -> None:
    text = path.read_text()
    rng = random.Random(f"{path.parent.name}/{path.name}")
    failures = 0
    for broken in mangle(text, rng):
        try:
            parse(broken, "m.litmus")
        except LitmusError as err:
            failures += 1
            # The line points into the file.
            assert 1 <= err.line <= max(1, broken.count("\n") + broken.count("\r") + 1)
            assert str(err).startswith(f"m.litmus:{err.line}: ")
    assert failures > 0  # the mangling does break things; the test exercises errors
