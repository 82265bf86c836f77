"""What ``kfree()`` leaves in a freed object: SLUB's poison (``kernels/slab.S``).

With ``slub_debug=P`` (``SLAB_POISON``), SLUB fills a freed object with ``POISON_FREE``
and ends it with ``POISON_END`` (``include/linux/poison.h``; ``init_object()`` in
``mm/slub.c``), so that a later use reads a value no live object holds.  The machine's
use-after-free oracle (``Machine.watch_object``) fires when a load returns those bytes.
"""

from __future__ import annotations

__all__ = ["POISON_END", "POISON_FREE", "poison"]

POISON_FREE = 0x6B  # include/linux/poison.h: "for use-after-free poisoning"
POISON_END = 0xA5  # "end-byte of poisoning"


def poison(size: int) -> bytes:
    """The bytes of a freed ``size``-byte object."""
    if size <= 0:
        raise ValueError(f"an object of {size} bytes")
    return bytes([POISON_FREE]) * (size - 1) + bytes([POISON_END])
