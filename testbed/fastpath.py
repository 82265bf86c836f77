"""The engine's compiled fast path, when it was built (issue 15).

``testbed/_fastpath.c`` holds the two hooks Unicorn calls at every decision (the code
hook that stops a CPU before a visible operation, the block hook that logs each block
and counts the instruction budget) and the run call that hands the logged blocks back
to Python.  ``pip install`` builds it when a C compiler is present (``setup.py``: an
optional extension); without one the pure-Python hooks of ``cpu.py`` do the same work,
more slowly, and give byte-identical runs (``tests/test_corpus.py`` replays the corpus
through both).

It also reads the key registers and SPSR, reads and writes single registers, and saves
and restores CPU contexts (``attach``), and holds the walker: a random walk's commonest
decisions drawn and performed in C (``walk_function``; ``scheduler._walker`` says when it
applies, ``TESTBED_WALKER=0`` turns it off, ``tests/test_walker.py`` compares it with
Python on every scenario).

``Machine(fastpath=...)``: ``True`` requires it, ``False`` refuses it, ``None`` (the
default) uses it when it was built, unless the environment sets
``TESTBED_FASTPATH=0``.
"""

from __future__ import annotations

import ctypes
import os
import random
from collections.abc import Callable, Iterable
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

import unicorn as _unicorn
from unicorn.unicorn_py3 import unicorn as _ucpy

from . import emulator
from .isa import OpKind

if TYPE_CHECKING:
    from .cpu import Cpu
    from .machine import Machine

__all__ = ["KindTable", "attach", "available", "function", "set_private", "walk_function",
           "wanted"]

_lib: Any = _ucpy.uclib
_uc_hook_h: Any = getattr(_ucpy, "uc_hook_h")  # noqa: B009 (not re-exported for mypy)
_UcError: Any = _unicorn.UcError  # type: ignore[attr-defined]


def _module() -> ModuleType | None:
    try:
        from . import _fastpath  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fastpath  # type: ignore[no-any-return]


def available() -> bool:
    """Whether the compiled fast path was built."""
    return _module() is not None


def wanted(choice: bool | None) -> bool:
    """Whether a machine built with ``fastpath=choice`` uses it (``ValueError`` if it
    must and cannot)."""
    if choice is None:
        return os.environ.get("TESTBED_FASTPATH", "1") != "0" and available()
    if choice and not available():
        raise ValueError("the compiled fast path was not built (no C compiler when the "
                         "testbed was installed); run without it")
    return choice


def walk_function() -> Callable[..., int] | None:
    """``_fastpath.walk`` (scheduler.run's walker), or None: not built, turned off
    (``TESTBED_WALKER=0``), or this Python's ``random.Random`` is not laid out as the
    walker reads it (checked on a Random of its own: the values it peeks must be the
    ones the Random then returns)."""
    fp = _module()
    if fp is None or os.environ.get("TESTBED_WALKER", "1") == "0":
        return None
    probe = random.Random(0x5EED)
    probe.random()  # (a Random regenerates its state at its first draw)
    for _ in range(3):
        peeked = fp.rng_peek(probe, 4)
        if peeked != [probe.random() for _ in range(4)]:
            return None
        probe.getrandbits(32 * 500)  # (and at every 624th word)
    walk: Callable[..., int] = fp.walk
    return walk


def function(name: str) -> Callable[..., Any]:
    """``_fastpath.NAME``, a C twin of a Python function with the same results (each is
    described in ``_fastpath.c`` and compared with its twin by a test): ``fetch_choices``
    (``FetchModel.choices``), ``catch_up``, ``model_reset``, ``restore_cpus`` and
    ``key_words`` (parts of ``FetchModel``'s rule 7, reset, restore and key),
    ``arm_key`` (``ArmMemory.key``), ``instructions`` (``trace.instructions``); and
    ``hooked`` (a CPU's hooked addresses, as ``Cpu.hooked`` on the pure path).  Only
    with the compiled path built (``available``)."""
    fp = _module()
    assert fp is not None
    found: Callable[..., Any] = getattr(fp, name)
    return found


class KindTable(dict[int, OpKind]):
    """``Cpu.kind_at``: every hooked text address -> its kind now, mirrored in a byte per
    text word that the compiled code hook reads."""

    __slots__ = ("base", "table")

    def __init__(self, base: int, nwords: int, items: Iterable[tuple[int, OpKind]]) -> None:
        super().__init__()
        self.base = base
        self.table = bytearray(nwords)
        for addr, kind in items:
            self[addr] = kind

    def __setitem__(self, addr: int, kind: OpKind) -> None:
        dict.__setitem__(self, addr, kind)
        w = (addr - self.base) >> 2
        if 0 <= w < len(self.table):
            self.table[w] = kind


def attach(m: Machine, c: Cpu, u: Any, text_base: int, text_end: int, visible: object,
           key_regs: list[int]) -> None:
    """Install the compiled block hook on ``c`` (the code hooks come as code runs)
    and make ``c.start``, ``c.flush`` and ``c.code_hook`` use them (``visible``:
    ``Stop.VISIBLE``); read ``key_regs`` (``c.read_regs``), SPSR_EL1, and save and
    restore the context in C too.  ``c.kind_at`` must be a ``KindTable``."""
    fp = _module()
    assert fp is not None and isinstance(c.kind_at, KindTable)
    table = c.kind_at.table
    kinds = (ctypes.c_char * len(table)).from_buffer(table)
    c._keep.append(kinds)
    handle = fp.new(u._uch.value, ctypes.cast(_lib.uc_emu_start, ctypes.c_void_p).value,
                    ctypes.cast(_lib.uc_emu_stop, ctypes.c_void_p).value, text_base,
                    ctypes.addressof(kinds), len(table))
    c._keep.append(handle)
    c.fast = handle
    user = ctypes.c_void_p(fp.address(handle))
    _add(u, _unicorn.UC_HOOK_BLOCK, fp.block_hook(), user, text_base, text_end)
    fstart, fflush = fp.start, fp.flush
    log_of = c  # the log list is replaced at each reset: read it at each call

    def start(begin: int, until: int, count: int) -> None:
        u._hook_exception = None
        status, stopped, pc = fstart(handle, begin, until, count, c.skip, c.left, m.step_no,
                                     log_of.log)
        if stopped:
            c.pc = pc
            c.reason = visible  # type: ignore[assignment]
            c.cut = stopped == 2
        if status != 0:
            raise _UcError(status)
        if u._hook_exception is not None:
            raise u._hook_exception

    c.start = start
    c.flush = lambda: fflush(handle, log_of.log)
    # State handling in C too (_fastpath.c's state()): the key registers, SPSR_EL1, and
    # the context a search saves and loads, as bytes.
    fp.state(handle, *(_address(f) for f in _STATE_FUNCTIONS),
             _unicorn.arm64_const.UC_ARM64_REG_CP_REG, tuple(key_regs))
    c.read_regs = partial(fp.regs, handle)
    c.read_spsr = partial(fp.spsr, handle)
    c.save_context = partial(fp.save, handle)
    c.restore = partial(fp.restore, handle)
    c.regs.read = partial(fp.read, handle)
    c.regs.write = partial(fp.write, handle)
    fp.set_ctl(handle, _address("uc_ctl"), emulator.REMOVE_CACHE)
    c.remove_cache = partial(fp.remove_cache, handle)
    # Code hooked as it first runs, as on the pure path (cpu._block_hook), by the block
    # hook in C: a code hook for each run of words with a kind and none yet, in each
    # block as it starts.  (A code hook for each run of visible words in the text, 112
    # in jump_label_nosync, installed up front, cost about 13% on the engine bench:
    # Unicorn walks the list of every code hook at each hooked instruction.  One hook
    # over the whole text instead changed what runs: in bpf_tramp_switch (seed 0, sc)
    # CPU1's stack came out 16 bytes off after the single step that redoes the plt's
    # load of its target, as if the block its BR enters had pushed once more; not
    # pinned down further.)
    fp.lazy(handle, _address("uc_hook_add"), _unicorn.UC_HOOK_CODE,
            _unicorn.arm64_const.UC_ARM64_REG_PC)
    c.code_hook = partial(fp.hook, handle)


def set_private(c: Cpu, iview: bytearray, xregs: Iterable[int]) -> None:
    """Give the compiled code hook ``c.private`` (``Machine.set_private``): a plain
    access wholly inside it runs on, as ``cpu.own_private`` decides in Python."""
    fp = _module()
    assert fp is not None and c.fast is not None
    fp.set_private(c.fast, iview, c.private, tuple(xregs))


_STATE_FUNCTIONS = ("uc_reg_read_batch", "uc_reg_read", "uc_reg_write", "uc_context_alloc",
                    "uc_context_save", "uc_context_restore", "uc_context_free",
                    "uc_context_size")


def _address(name: str) -> int:
    address = ctypes.cast(getattr(_lib, name), ctypes.c_void_p).value
    assert address is not None
    return address


def _add(u: Any, htype: int, fn: int, user: ctypes.c_void_p, begin: int, end: int) -> None:
    handle = _uc_hook_h()
    status = _lib.uc_hook_add(u._uch, ctypes.byref(handle), htype, ctypes.c_void_p(fn), user,
                              ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != _unicorn.UC_ERR_OK:
        raise _UcError(status)
