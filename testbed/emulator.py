"""Thin fast paths into Unicorn's C API for the hooks that run at every decision.

The Python binding wraps every callback in two Python frames (an exception guard and
an argument adapter) and ``emu_start`` in another; at a few million callbacks per
campaign that is most of the cost of a decision.  Here the hot hooks (code, block, MRS)
are registered with ``uc_hook_add`` directly and call one Python function; ``start``
calls ``uc_emu_start`` directly, and so do the register, translation-cache and context
accessors the machine uses at every exception, cache operation and reset.  Rare hooks
keep using the binding.

A callback registered here must not raise: ctypes would print and swallow the error.
The machine's hot callbacks are written so that they cannot, and guard the rest.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import unicorn as _unicorn
from unicorn.unicorn_py3 import unicorn as _ucpy

__all__ = [
    "REMOVE_CACHE",
    "HookFn",
    "SysHookFn",
    "add_hook",
    "add_mrs_hook",
    "cache_remover",
    "context_restorer",
    "cp_reader",
    "cp_writer",
    "register_access",
    "starter",
    "stopper",
]

_lib: Any = _ucpy.uclib
_uc_hook_h: Any = getattr(_ucpy, "uc_hook_h")  # noqa: B009 (not re-exported for mypy)
_UcError: Any = _unicorn.UcError  # type: ignore[attr-defined]
_HOOK_CODE_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                    ctypes.c_void_p)

HookFn = Callable[[int, int, int, int], None]  # (handle, address, size, key)
# (Xt register id, op0, op1, CRn, CRm, op2) -> 1 to skip the instruction, 0 to run it
SysHookFn = Callable[[int, int, int, int, int, int], int]
_HOOK_SYS_CFUNC = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32,
                                   ctypes.c_void_p, ctypes.c_void_p)


@cache
def _held(name: str) -> Any:
    """Unicorn's function ``name`` called with the GIL held (``ctypes.PYFUNCTYPE``).

    The binding's functions release the GIL at each call, and every hook callback
    inside the call takes it back: a lock and a wake-up each way (a run with one block
    hook and one code hook that stops it: 1.20 us, 1.06 us with the GIL held).
    Nothing here needs another thread to run while the emulator does: the hooks are
    Python and take the GIL anyway.  One per function, shared by every instance (the
    handle is an argument): building a ctypes prototype costs some 20 us."""
    f = getattr(_lib, name)
    proto = ctypes.PYFUNCTYPE(f.restype, *f.argtypes)
    address = ctypes.cast(f, ctypes.c_void_p).value
    assert address is not None
    return proto(address)


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
    lib_start, uch = _held("uc_emu_start"), u._uch

    def start(begin: int, until: int, count: int) -> None:
        u._hook_exception = None
        status = lib_start(uch, begin, until, 0, count)
        if status != 0:
            raise _UcError(status)
        if u._hook_exception is not None:
            raise u._hook_exception

    return start


def start_function() -> Callable[..., int]:
    """Unicorn's ``uc_emu_start(handle, begin, until, timeout, count) -> status`` itself,
    with the GIL held, for the loop that inlines ``starter``'s (``walker.walk``;
    ``u._uch`` is the handle; each argument an int or a ``c_uint64``)."""
    fn: Callable[..., int] = _held("uc_emu_start")
    return fn


def stopper(u: Any) -> Callable[[], int]:
    """``stop()``: uc_emu_stop with no checks (safe inside hooks)."""
    return partial(_held("uc_emu_stop"), u._uch)


# uc_ctl's control word for ctl_remove_cache: a write with two arguments
REMOVE_CACHE = (_unicorn.UC_CTL_IO_WRITE << 30) | (2 << 26) | _unicorn.UC_CTL_TB_REMOVE_CACHE


def cache_remover(u: Any) -> Callable[[int, int], None]:
    """``remove(begin, end)``: ``ctl_remove_cache`` in one C call (the binding encodes
    the control word and wraps each argument in Python on every call)."""
    lib_ctl, uch = _held("uc_ctl"), u._uch
    code = REMOVE_CACHE
    u64 = ctypes.c_uint64

    def remove(begin: int, end: int) -> None:
        status = lib_ctl(uch, code, u64(begin), u64(end))
        if status != 0:
            raise _UcError(status)

    return remove


def context_restorer(u: Any) -> Callable[[Any], None]:
    """``restore(context)``: ``context_restore`` of a context from ``u.context_save()``."""
    lib_restore, uch = _held("uc_context_restore"), u._uch

    def restore(context: Any) -> None:
        status = lib_restore(uch, context.context)
        if status != 0:
            raise _UcError(status)

    return restore


def add_mrs_hook(u: Any, fn: SysHookFn) -> int:
    """Register a UC_HOOK_INSN callback on MRS without the binding's wrappers.

    ``fn`` must not raise (a ctypes callback cannot report it): guard its body.
    """
    def on_sys(handle: int, reg: int, cp: int, key: int) -> int:
        r = _CpReg.from_address(cp)
        return fn(reg, r.op0, r.op1, r.crn, r.crm, r.op2)

    fptr = _HOOK_SYS_CFUNC(on_sys)
    handle = _uc_hook_h()
    status = _lib.uc_hook_add(u._uch, ctypes.byref(handle), _unicorn.UC_HOOK_INSN, fptr,
                              ctypes.c_void_p(0), ctypes.c_uint64(1), ctypes.c_uint64(0),
                              ctypes.c_int(_unicorn.arm64_const.UC_ARM64_INS_MRS))
    if status != _unicorn.UC_ERR_OK:
        raise _UcError(status)
    u._callbacks[handle.value] = fptr
    return int(handle.value)


class Registers:
    """``read(reg)`` and ``write(reg, value)`` of one 64-bit register, one C call each
    (the binding's reg_read/reg_write spend a few microseconds in Python)."""

    __slots__ = ("read", "write")

    def __init__(self, u: Any) -> None:
        lib_read, lib_write, uch = _held("uc_reg_read"), _held("uc_reg_write"), u._uch
        value = ctypes.c_uint64()
        ref = ctypes.byref(value)

        def read(reg: int) -> int:
            value.value = 0  # registers narrower than 64 bits fill only their bytes
            status = lib_read(uch, reg, ref)
            if status != 0:
                raise _UcError(status)
            return value.value

        def write(reg: int, v: int) -> None:
            value.value = v
            status = lib_write(uch, reg, ref)
            if status != 0:
                raise _UcError(status)

        self.read: Callable[[int], int] = read
        self.write: Callable[[int, int], None] = write


def register_access(u: Any) -> Registers:
    return Registers(u)


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
    lib_batch, uch = _held("uc_reg_read_batch"), u._uch

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
    lib_read, uch = _held("uc_reg_read"), u._uch
    cp_id = _unicorn.arm64_const.UC_ARM64_REG_CP_REG

    def read() -> int:
        status = lib_read(uch, cp_id, ref)
        if status != 0:
            raise _UcError(status)
        return int(reg.val)

    read.keep = reg  # type: ignore[attr-defined]
    return read


def cp_writer(u: Any, op0: int, op1: int, crn: int, crm: int,
              op2: int) -> Callable[[int], None]:
    """``write(value)``: one AArch64 system register (MSR encoding) in one C call."""
    reg = _CpReg(crn, crm, op0, op1, op2, 0)
    ref = ctypes.byref(reg)
    lib_write, uch = _held("uc_reg_write"), u._uch
    cp_id = _unicorn.arm64_const.UC_ARM64_REG_CP_REG

    def write(value: int) -> None:
        reg.val = value
        status = lib_write(uch, cp_id, ref)
        if status != 0:
            raise _UcError(status)

    write.keep = reg  # type: ignore[attr-defined]
    return write
