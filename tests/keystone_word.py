"""Keystone for the tests that check decoders on real encodings, in one known radix.

Keystone 0.9.2 reads bare numbers in radix 16 once a symbol resolver is installed
(testbed.asm installs one, and writes every number in hex). A handle opened without one
is not reliably in radix 10: it takes the radix of the freed handle whose memory it
reuses (measured: open a handle with a resolver, free it, and the next ``Ks(...)`` reads
``#16`` as 0x16, so ``stp x3, xzr, [x5, #16]`` fails with error 547 and ``add x1, x1,
#16`` silently adds 22). Under pytest-xdist which handle a test reuses depends on the
order of the tests, so the failure came and went. Here every handle gets a resolver,
which puts it in radix 16 whatever it reuses, and decimal immediates are written in hex
before Keystone sees them.
"""

from __future__ import annotations

import re
from typing import Any

from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks

_DECIMAL = re.compile(r"#(-?)(\d+)(?![\w.])")


def _refuse(_name: bytes, _value: Any) -> bool:
    return False


def in_hex(text: str) -> str:
    """``text`` with each decimal ``#imm`` written as ``#0x...`` (hex ones unchanged)."""
    return _DECIMAL.sub(lambda m: f"#{m[1]}{int(m[2]):#x}", text)


def assemble(text: str, addr: int = 0x1000) -> bytes:
    ks = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
    ks.sym_resolver = _refuse  # radix 16 from here on, whatever memory the handle reuses
    data, _ = ks.asm(in_hex(text), addr, as_bytes=True)
    assert data, f"Keystone produced nothing for {text!r}"
    return bytes(data)


def word(text: str, addr: int = 0x1000) -> int:
    """The first instruction word of ``text`` assembled at ``addr``."""
    return int.from_bytes(assemble(text, addr)[:4], "little")
