from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import pytest

from testbed import layout
from testbed.asm import Image, Source, link
from testbed.machine import Machine
from testbed.memory import CacheType, FetchConfig
from testbed.resources import kernels_dir

# The failure database (.testbed/ in the current folder) stays out of the checkout:
# tests that use it say where.
os.environ.setdefault("TESTBED_DB", tempfile.mkdtemp(prefix="testbed-db-"))

BOOT = kernels_dir() / "boot.S"
INSN = kernels_dir() / "insn.S"

MachineFactory = Callable[..., Machine]


def build_image(test_source: str, *, with_insn: bool = False) -> Image:
    sources = [Source.from_path(BOOT)]
    if with_insn:
        sources.append(Source.from_path(INSN))
    sources.append(Source("test.S", test_source))
    return link(sources, text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE,
                defines=layout.ASM_DEFINES)


@pytest.fixture
def make_machine() -> MachineFactory:
    """Link boot.S (+ insn.S) with a test program and build a machine on it."""

    def make(source: str, ncpus: int = 2, cache: CacheType = CacheType.IDC0, *,
             with_insn: bool = False, starts: Sequence[tuple[int, str, tuple[int, ...]]] = (),
             setup: Callable[[Machine], None] | None = None, budget: int = 200_000,
             memory: str = "sc", promises: bool | str = False,
             fold: bool | int = False) -> Machine:
        m = Machine(build_image(source, with_insn=with_insn), ncpus, FetchConfig(cache),
                    budget=budget, memory=memory, promises=promises, fold=fold)
        for cpu, entry, args in starts:
            m.start(cpu, entry, *args)
        if setup is not None:
            setup(m)
        m.seal()
        return m

    return make
