"""Thin fast paths into Unicorn's C API for the hooks that run at every decision.

The Python binding wraps every callback in two Python frames (an exception guard and
an argument adapter) and ``emu_start`` in another; at a few million callbacks per
campaign that is most of the cost of a decision.  Here the hot hooks (code, block) are
registered with ``uc_hook_add`` directly and call one Python function; ``start``
calls ``uc_emu_start`` directly.  Rare hooks keep using the binding.

A callback registered here must not raise: ctypes would print and swallow the error.
The machine's hot callbacks are written so that they cannot, and guard the rest.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import unicorn as _unicorn
from unicorn.unicorn_py3 import unicorn as _ucpy

__all__ = ["HookFn", "add_hook", "starter", "stopper"]

_lib: Any = _ucpy.uclib
_uc_hook_h: Any = getattr(_ucpy, "uc_hook_h")  # noqa: B009 (not re-exported for mypy)
_UcError: Any = _unicorn.UcError  # type: ignore[attr-defined]
_HOOK_CODE_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                    ctypes.c_void_p)

HookFn = Callable[[int, int, int, int], None]  # (handle, address, size, key)


def add_hook(u: Any, htype: int, fn: HookFn, begin: int, end: int) -> int:
    """Register a UC_HOOK_CODE or UC_HOOK_BLOCK callback without the binding's wrappers."""
    if htype not in (_unicorn.UC_HOOK_CODE, _unicorn.UC_HOOK_BLOCK):
        raise ValueError("only code and block hooks have a fast path")
    fptr = _HOOK_CODE_CFUNC(fn)
    handle = _uc_hook_h()
    status = _lib.uc_hook_add(u._uch, ctypes.byref(handle), htype, fptr,
                              ctypes.c_void_p(0), ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != _unicorn.UC_ERR_OK:
        raise _UcError(status)
    u._callbacks[handle.value] = fptr  # the binding's table keeps it alive with the Uc
    return int(handle.value)


def starter(u: Any) -> Callable[[int, int, int], None]:
    """``start(begin, until, count)``: uc_emu_start, raising what a hook raised."""
    lib_start, uch = _lib.uc_emu_start, u._uch

    def start(begin: int, until: int, count: int) -> None:
        u._hook_exception = None
        status = lib_start(uch, begin, until, 0, count)
        if status != 0:
            raise _UcError(status)
        if u._hook_exception is not None:
            raise u._hook_exception

    return start


def stopper(u: Any) -> Callable[[], int]:
    """``stop()``: uc_emu_stop with no checks (safe inside hooks)."""
    lib_stop, uch = _lib.uc_emu_stop, u._uch
    return lambda: int(lib_stop(uch))


def register_reader(u: Any, reg_ids: list[int]) -> Callable[[], bytes]:
    """``read()``: the 64-bit values of ``reg_ids`` as raw bytes, in one C call.

    The binding's reg_read_batch costs about 100 us for 40 registers (Python per
    register); this costs a few.  Only for plain 64-bit registers.
    """
    n = len(reg_ids)
    ids = (ctypes.c_int * n)(*reg_ids)
    values = (ctypes.c_uint64 * n)()
    base = ctypes.addressof(values)
    ptrs = (ctypes.c_void_p * n)(*[base + 8 * i for i in range(n)])
    lib_batch, uch = _lib.uc_reg_read_batch, u._uch

    def read() -> bytes:
        status = lib_batch(uch, ids, ptrs, n)
        if status != 0:
            raise _UcError(status)
        return bytes(values)

    read.keep = (ids, values, ptrs)  # type: ignore[attr-defined]
    return read


class _CpReg(ctypes.Structure):
    _fields_ = [("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("op0", ctypes.c_uint32),
                ("op1", ctypes.c_uint32), ("op2", ctypes.c_uint32), ("val", ctypes.c_uint64)]


def cp_reader(u: Any, op0: int, op1: int, crn: int, crm: int, op2: int) -> Callable[[], int]:
    """``read()``: one AArch64 system register (MRS encoding) in one C call."""
    reg = _CpReg(crn, crm, op0, op1, op2, 0)
    ref = ctypes.byref(reg)
    lib_read, uch = _lib.uc_reg_read, u._uch
    cp_id = _unicorn.arm64_const.UC_ARM64_REG_CP_REG

    def read() -> int:
        status = lib_read(uch, cp_id, ref)
        if status != 0:
            raise _UcError(status)
        return int(reg.val)

    read.keep = reg  # type: ignore[attr-defined]
    return read
