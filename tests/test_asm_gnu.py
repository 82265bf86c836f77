"""Differential test: testbed.asm (Keystone) against GNU as + ld on the same sources.

Every ``kernels/*.S`` file alone, every fixture under ``tests/data/asm/`` alone, all
kernels linked together and all fixtures linked together are assembled by both
toolchains. GNU ld gets a generated linker script that puts each file's ``.text``,
``.data`` and ``.bss`` at exactly the addresses our linker chose, and the bytes are
compared word for word, together with the address of every global symbol.

Allowed differences: none. Literal pools are placed as GNU as places them (4-byte
entries, then 8-byte entries aligned to 8, at ``.ltorg`` or the end of ``.text``), so
pool words are compared like every other word.

A file that calls into another file is linked alone against a stub file that defines
each missing global (names from ``nm -u`` on GNU's object), the same stub for both.

GNU binutils missing: skipped locally, a failure when ``CI`` is set (CI installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

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


def _assemble(tools: Mapping[str, str], sources: Sequence[Source], tmp: Path) -> list[Path]:
    objs = []
    defsyms = [f"--defsym={k}={v:#x}" for k, v in DEFINES.items()]
    for i, src in enumerate(sources):
        path = tmp / f"f{i}.S"
        path.write_text(src.text)
        obj = tmp / f"f{i}.o"
        _run([tools["as"], *defsyms, "-o", str(obj), str(path)], tmp)
        objs.append(obj)
    return objs


def _stubs(tools: Mapping[str, str], sources: Sequence[Source], tmp: Path) -> Source | None:
    """A file defining every global the sources use but do not define."""
    objs = _assemble(tools, sources, tmp)
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
    tools: Mapping[str, str], sources: Sequence[Source], image: Image, tmp: Path
) -> tuple[bytes, bytes, dict[str, int]]:
    objs = _assemble(tools, sources, tmp)
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


def check_against_gnu(sources: Sequence[Source], tmp: Path) -> Image:
    """Link with both toolchains and fail on any differing word or symbol address."""
    tools = _tools()
    (tmp / "probe").mkdir()
    stubs = _stubs(tools, sources, tmp / "probe")
    if stubs is not None:
        sources = [*sources, stubs]
    image = link(sources, text_base=TEXT_BASE, data_base=DATA_BASE, defines=DEFINES)
    text, data, symbols = _gnu_link(tools, sources, image, tmp)
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
