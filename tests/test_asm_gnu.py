"""Differential test: testbed.asm (Keystone) against GNU as + ld on the same sources.

Every ``kernels/*.S`` file alone, every fixture under ``tests/data/asm/`` alone, all
kernels linked together and all fixtures linked together are assembled by both
toolchains. GNU ld gets a generated linker script that puts each file's ``.text``,
``.data`` and ``.bss`` at exactly the addresses our linker chose, and the bytes are
compared word for word, together with the address of every global symbol.

The Armv8.1+ memory instructions testbed.asm encodes itself (LSE atomics, LDAPR,
LDAPUR/STLUR) are compared the same way, every mnemonic in several register, size
and spelling combinations, against ``as -march=armv8.4-a``.

Allowed differences: none. Literal pools are placed as GNU as places them (4-byte
entries, then 8-byte entries aligned to 8, at ``.ltorg`` or the end of ``.text``), so
pool words are compared like every other word.

A file that calls into another file is linked alone against a stub file that defines
each missing global (names from ``nm -u`` on GNU's object), the same stub for both.

GNU binutils missing: skipped locally, a failure when ``CI`` is set (CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from testbed.asm import Image, Source, link

ROOT = Path(__file__).resolve().parent.parent
KERNELS = sorted((ROOT / "kernels").glob("*.S"))
FIXTURES = sorted((Path(__file__).resolve().parent / "data" / "asm").glob("*.S"))
# Fixtures that must fail (error tests) are not valid input for this comparison.
GNU_FIXTURES = [p for p in FIXTURES if not p.name.startswith("bad_")]

try:
    from testbed.layout import ASM_DEFINES as _LAYOUT_DEFINES

    DEFINES: Mapping[str, int] = dict(_LAYOUT_DEFINES)
except ImportError:  # layout.py not written yet: the memory map the brief fixes
    DEFINES = {
        "TEXT_BASE": 0x08000000,
        "TEXT_ALIAS": 0x18000000,
        "DATA_BASE": 0x20000000,
        "PERCPU_BASE": 0x30000000,
        "PERCPU_SIZE": 0x1000,
        "STACK_BASE": 0x40000000,
        "STACK_SIZE": 0x2000,
        "GIC_BASE": 0x50000000,
        "MAX_CPUS": 64,
    }

TEXT_BASE = 0x08000000
DATA_BASE = 0x20000000
PREFIX = "aarch64-linux-gnu-"
TOOLS = ("as", "ld", "objcopy", "nm")


def _tools() -> dict[str, str]:
    found = {t: shutil.which(PREFIX + t) for t in TOOLS}
    missing = [PREFIX + t for t, path in found.items() if path is None]
    if missing:
        msg = f"GNU binutils for AArch64 not installed ({', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install binutils-aarch64-linux-gnu")
        pytest.skip(msg)
    return {t: path for t, path in found.items() if path is not None}


def _run(cmd: Sequence[str], cwd: Path) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _assemble(
    tools: Mapping[str, str], sources: Sequence[Source], tmp: Path, march: str = ""
) -> list[Path]:
    objs = []
    defsyms = [f"--defsym={k}={v:#x}" for k, v in DEFINES.items()]
    flags = [f"-march={march}"] if march else []
    for i, src in enumerate(sources):
        path = tmp / f"f{i}.S"
        path.write_text(src.text)
        obj = tmp / f"f{i}.o"
        _run([tools["as"], *flags, *defsyms, "-o", str(obj), str(path)], tmp)
        objs.append(obj)
    return objs


def _stubs(
    tools: Mapping[str, str], sources: Sequence[Source], tmp: Path, march: str = ""
) -> Source | None:
    """A file defining every global the sources use but do not define."""
    objs = _assemble(tools, sources, tmp, march)
    defined: set[str] = set()
    undefined: set[str] = set()
    for obj in objs:
        for line in _run([tools["nm"], str(obj)], tmp).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                undefined.add(parts[1])
            elif len(parts) == 3 and parts[1].isupper():
                defined.add(parts[2])
    missing = sorted(undefined - defined)
    if not missing:
        return None
    body = "".join(f"\t.global {n}\n{n}:\tnop\n" for n in missing)
    return Source("stubs.S", f"\t.text\n{body}")


def _linker_script(image: Image, names: Sequence[str]) -> str:
    text, data = [], []
    for i, name in enumerate(names):
        ts, _te, ds, _de = image.file_ranges[name]
        text.append(f"    . = {ts - image.text_base:#x}; f{i}.o(.text)")
        data.append(f"    . = {ds - image.data_base:#x}; f{i}.o(.data)")
        data.append(f"    f{i}.o(.bss)")
    return (
        "SECTIONS {\n"
        f"  .text {image.text_base:#x} : {{\n" + "\n".join(text) + "\n  }\n"
        f"  .data {image.data_base:#x} : {{\n" + "\n".join(data) + "\n  }\n"
        "  /DISCARD/ : { *(.note*) *(.comment) }\n"
        "}\n"
    )


def _gnu_link(
    tools: Mapping[str, str], sources: Sequence[Source], image: Image, tmp: Path,
    march: str = "",
) -> tuple[bytes, bytes, dict[str, int]]:
    objs = _assemble(tools, sources, tmp, march)
    script = tmp / "link.ld"
    script.write_text(_linker_script(image, [s.name for s in sources]))
    elf = tmp / "out.elf"
    # Objects by the same relative name as in the script, or ld loads them twice.
    _run([tools["ld"], "-static", "-nostdlib", "-e", "0", "-T", script.name, "-o", elf.name,
          *[o.name for o in objs]], tmp)
    out = []
    for section in (".text", ".data"):
        binary = tmp / f"{section[1:]}.bin"
        _run([tools["objcopy"], "-O", "binary", "-j", section, str(elf), str(binary)], tmp)
        out.append(binary.read_bytes() if binary.exists() else b"")
    symbols = {}
    for line in _run([tools["nm"], str(elf)], tmp).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDB":
            symbols[parts[2]] = int(parts[0], 16)
    return out[0], out[1], symbols


def _mismatches(image: Image, ours: bytes, gnu: bytes, base: int, what: str) -> list[str]:
    size = max(len(ours), len(gnu))
    # Our image pads .text to whole words and may end later than GNU's last section.
    ours, gnu = ours.ljust(size, b"\0"), gnu.ljust(size, b"\0")
    bad = []
    for off in range(0, size, 4):
        a, b = ours[off : off + 4], gnu[off : off + 4]
        if a != b:
            addr = base + off
            line = image.line_of(addr) if what == "text" else None
            where = f" {line.file}:{line.line} {line.source!r} ({line.text})" if line else ""
            bad.append(f"{what} {addr:#x} {image.symbolize(addr)}: ours {a.hex()} "
                       f"gnu {b.hex()}{where}")
    return bad


def check_against_gnu(sources: Sequence[Source], tmp: Path, march: str = "") -> Image:
    """Link with both toolchains and fail on any differing word or symbol address
    (``march``: GNU as's ``-march``, e.g. ``armv8.4-a`` for LSE and RCpc)."""
    tools = _tools()
    (tmp / "probe").mkdir()
    stubs = _stubs(tools, sources, tmp / "probe", march)
    if stubs is not None:
        sources = [*sources, stubs]
    image = link(sources, text_base=TEXT_BASE, data_base=DATA_BASE, defines=DEFINES)
    text, data, symbols = _gnu_link(tools, sources, image, tmp, march)
    bad = _mismatches(image, image.text, text, image.text_base, "text")
    bad += _mismatches(image, image.data, data, image.data_base, "data")
    for name, sym in image.symbols.items():
        if sym.is_global and symbols.get(name) != sym.addr:
            bad.append(f"symbol {name}: ours {sym.addr:#x} gnu {symbols.get(name)}")
    assert not bad, "differences from GNU as:\n" + "\n".join(bad[:40])
    return image


@pytest.mark.parametrize("path", KERNELS + GNU_FIXTURES, ids=lambda p: p.name)
def test_file_matches_gnu(path: Path, tmp_path: Path) -> None:
    image = check_against_gnu([Source.from_path(path)], tmp_path)
    assert image.insn_addrs() or not image.text  # something was really compared


@pytest.mark.skipif(not KERNELS, reason="kernels/ has no .S files yet")
def test_all_kernels_linked_together_match_gnu(tmp_path: Path) -> None:
    check_against_gnu([Source.from_path(p) for p in KERNELS], tmp_path)


def test_all_fixtures_linked_together_match_gnu(tmp_path: Path) -> None:
    assert GNU_FIXTURES, "tests/data/asm/ must hold the differential fixtures"
    image = check_against_gnu([Source.from_path(p) for p in GNU_FIXTURES], tmp_path)
    # The fixtures call and reference each other: the link really crossed files.
    assert not any(s.file == "stubs.S" for s in image.symbols.values())


def test_the_comparison_sees_a_wrong_word(tmp_path: Path) -> None:
    """The harness itself must be able to fail: corrupt one of our words."""
    tools = _tools()
    src = Source("one.S", "\t.text\n\t.global f\nf:\tmov x0, #1\n\tret\n")
    image = link([src], text_base=TEXT_BASE, data_base=DATA_BASE, defines=DEFINES)
    text, _data, symbols = _gnu_link(tools, [src], image, tmp_path)
    assert symbols["f"] == image.addr("f")
    assert not _mismatches(image, image.text, text, TEXT_BASE, "text")
    corrupted = bytes([image.text[0] ^ 1]) + image.text[1:]
    assert len(_mismatches(image, corrupted, text, TEXT_BASE, "text")) == 1


# ------------------------------------------- LSE atomics and RCpc loads (encoded by us)

LSE_MARCH = "armv8.4-a"  # FEAT_LSE (8.1), FEAT_LRCPC (8.3), FEAT_LRCPC2 (8.4)
_OPS = ("add", "clr", "eor", "set", "smax", "smin", "umax", "umin")
_ORDERS = ("", "a", "l", "al")
_SIZES = ("", "b", "h")


def _lse_lines() -> list[str]:
    """Every LSE/RCpc mnemonic GNU as knows, each in several register, size, base,
    offset and case combinations (X forms only where the mnemonic has them)."""
    out: list[str] = []
    for sz in _SIZES:
        wide = sz == ""  # B and H forms take W registers only
        for order in _ORDERS:
            three = [f"ld{op}{order}{sz}" for op in _OPS] + [f"swp{order}{sz}", f"cas{order}{sz}"]
            for m in three:
                out += [f"{m} w0, w1, [x2]", f"{m.upper()} W30, WZR, [SP, #0]",
                        f"{m} wzr, w17, [x29]", f"{m} w5, w5, [x5, 0]"]
                if wide:
                    out += [f"{m} x3, x30, [sp]", f"{m} XZR, X9, [X16, #0]",
                            f"{m} x12, xzr, [lr]"]
            if order in ("", "l"):  # ST<op>{L}: there are no acquire forms
                for op in _OPS:
                    m = f"st{op}{order}{sz}"
                    out += [f"{m} w0, [x1]", f"{m.upper()} WZR, [X7, #0]", f"{m} w30, [sp]"]
                    if wide:
                        out += [f"{m} x30, [sp]", f"{m} x4, [fp]"]
        m = f"ldapr{sz}"
        out += [f"{m} w0, [x1]", f"{m.upper()} WZR, [X2, #0]", f"{m} w3, [x3]",
                f"{m} w30, [sp]"]
        if wide:
            out += [f"{m} x30, [sp]", f"{m} x7, [x8, #0]"]
        for m in (f"ldapur{sz}", f"stlur{sz}"):
            out += [f"{m} w0, [x1]", f"{m} w2, [x3, #-256]", f"{m.upper()} W4, [SP, #255]",
                    f"{m} wzr, [x30, #-1]", f"{m} w9, [x10, #OFF]"]
            if wide:
                out += [f"{m} x0, [x1, #8]", f"{m} xzr, [sp, #-0x80]", f"{m} x30, [x29, #3]"]
    for m in ("ldapursb", "ldapursh"):
        out += [f"{m} w0, [x1]", f"{m} x2, [x3, #-256]", f"{m.upper()} X4, [SP, #255]",
                f"{m} wzr, [x30, #-1]"]
    out += ["ldapursw x0, [x1]", "ldapursw x2, [x3, #-256]", "LDAPURSW XZR, [SP, #255]"]
    for order in _ORDERS:
        m = f"casp{order}"
        out += [f"{m} w0, w1, w2, w3, [x4]", f"{m} x30, xzr, x28, x29, [sp]",
                f"{m.upper()} W6, W7, W6, W7, [X0, #0]", f"{m} x2, x3, x0, x1, [x30]",
                f"{m} w0, w1, w30, wzr, [x1]"]
    return out


def _lse_source() -> Source:
    body = "".join(f"\t{line}\n" for line in _lse_lines())
    return Source("lse.S", f"\t.text\n\t.equ OFF, -3 * 4\n\t.global lse\nlse:\n{body}")


_NO_ACQUIRE_LD = re.compile(r"ld(add|clr|eor|set|smax|smin|umax|umin)(l?)([bh]?)")


def _expected_mnemonic(line: str) -> str:
    """What a disassembler prints: LD<op>{L}{B,H} into WZR/XZR is the ST<op> alias."""
    mnem, _, rest = line.partition(" ")
    mnem = mnem.lower()
    m = _NO_ACQUIRE_LD.fullmatch(mnem)
    if m is not None and rest.split(",")[1].strip().lower() in ("wzr", "xzr"):
        return f"st{m.group(1)}{m.group(2)}{m.group(3)}"
    return mnem


def test_lse_and_rcpc_words_match_gnu(tmp_path: Path) -> None:
    """Every LSE/LDAPR/LDAPUR/STLUR word we encode is GNU as's, word for word."""
    lines = _lse_lines()
    image = check_against_gnu([_lse_source()], tmp_path, LSE_MARCH)
    words = [line for line in image.listing if line.is_insn]
    assert len(words) == len(lines) == 857  # every line really became a compared word


def test_the_lse_comparison_sees_a_wrong_word(tmp_path: Path) -> None:
    tools = _tools()
    src = Source("one.S", "\t.text\n\t.global f\nf:\tcasal x0, x1, [x2]\n\tldapr w0, [x1]\n")
    image = link([src], text_base=TEXT_BASE, data_base=DATA_BASE, defines=DEFINES)
    text, _data, _symbols = _gnu_link(tools, [src], image, tmp_path, LSE_MARCH)
    assert not _mismatches(image, image.text, text, TEXT_BASE, "text")
    corrupted = image.text[:4] + bytes([image.text[4] ^ 0x20]) + image.text[5:]
    assert len(_mismatches(image, corrupted, text, TEXT_BASE, "text")) == 1


def test_capstone_disassembles_every_lse_and_rcpc_word_as_written() -> None:
    """Capstone (used for listings and for the access probe) knows every word, under
    the mnemonic it was written with (or its ST<op> alias); no GNU tools needed."""
    image = link([_lse_source()], text_base=TEXT_BASE, data_base=DATA_BASE, defines=DEFINES)
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    cs.detail = True
    lines = _lse_lines()
    listed = [line for line in image.listing if line.is_insn]
    assert len(listed) == len(lines)
    mnemonics = set()
    for line, src in zip(listed, lines, strict=True):
        insns = list(cs.disasm(line.word.to_bytes(4, "little"), line.addr))
        assert insns, f"Capstone cannot decode {line.word:#010x} ({src})"
        assert insns[0].mnemonic == _expected_mnemonic(src), (src, f"{line.word:#010x}")
        assert line.text.split()[0] == insns[0].mnemonic  # the image's listing says so too
        mnemonics.add(src.split()[0].lower())
    # 96 LD<op>, 48 ST<op>, 12 SWP, 12 CAS, 4 CASP, 3 LDAPR, 3+3 LDAPUR/STLUR, 3 LDAPURS*
    assert len(mnemonics) == 184
