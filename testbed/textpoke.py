"""PERF_RECORD_TEXT_POKE records, read back from the guest's ring buffer (kernels/perf.S).

The layout is the kernel's (include/uapi/linux/perf_event.h): a perf_event_header
{u32 type = 20, u16 misc, u16 size}, u64 addr, u16 old_len, u16 new_len, the old bytes
then the new bytes, padding to 8 bytes, and sample_id {u64 time}.
"""

from __future__ import annotations

from dataclasses import dataclass

from .machine import Machine

__all__ = ["HISTORY", "PERF_RECORD_TEXT_POKE", "RING_SIZE", "RecordError", "TextPoke",
           "declare_history", "parse_records", "read_ring", "records_of"]

PERF_RECORD_TEXT_POKE = 20
RING_SIZE = 4096  # kernels/perf.S's PERF_RING_SIZE
# What kernels/perf.S writes for the host and never reads back: the ring and the last
# time handed out (perf_ring_head, which it reads to reserve, is state).
HISTORY = {"perf_ring": RING_SIZE, "perf_clock": 8}


def declare_history(m: Machine) -> None:
    """Declare the perf ring and clock history (``Machine.set_history``) where the
    image has them."""
    for name, size in HISTORY.items():
        if name in m.image.symbols:
            m.set_history(name, size)


class RecordError(Exception):
    """A ring buffer that does not hold well-formed text-poke records."""


@dataclass(frozen=True)
class TextPoke:
    offset: int  # of the record in the ring
    addr: int
    old: bytes
    new: bytes
    time: int


def parse_records(ring: bytes, head: int) -> list[TextPoke]:
    """The records in ``ring[:head]``.

    The guest reserves a record (moves the head) before it writes it, so a run that
    stopped in between leaves the last record unwritten: a record whose size or time is
    still zero ends the list.
    """
    out: list[TextPoke] = []
    off = 0
    while off < head:
        if off + 28 > len(ring):
            raise RecordError(f"record at {off:#x} runs past the ring")
        rtype = int.from_bytes(ring[off:off + 4], "little")
        size = int.from_bytes(ring[off + 6:off + 8], "little")
        if size == 0 or (off + size <= len(ring)
                         and not int.from_bytes(ring[off + size - 8:off + size], "little")):
            break  # reserved but not written yet
        if rtype != PERF_RECORD_TEXT_POKE or size < 28 or size % 8 or off + size > head:
            raise RecordError(f"bad record header at {off:#x}: type {rtype}, size {size}")
        addr = int.from_bytes(ring[off + 8:off + 16], "little")
        old_len = int.from_bytes(ring[off + 16:off + 18], "little")
        new_len = int.from_bytes(ring[off + 18:off + 20], "little")
        body = off + 20
        if 20 + old_len + new_len + 8 > size:
            raise RecordError(f"record at {off:#x}: {old_len}+{new_len} bytes do not fit")
        old = bytes(ring[body:body + old_len])
        new = bytes(ring[body + old_len:body + old_len + new_len])
        time = int.from_bytes(ring[off + size - 8:off + size], "little")
        out.append(TextPoke(off, addr, old, new, time))
        off += size
    return out


def records_of(m: Machine) -> list[TextPoke]:
    """The records for a timeline: none when the image has no ring buffer, or when the
    ring is malformed (the decode oracle reports that as a finding)."""
    if "perf_ring" not in m.image.symbols:
        return []
    try:
        return read_ring(m)
    except RecordError:
        return []


def read_ring(m: Machine) -> list[TextPoke]:
    """The text-poke records a run left in the guest's ring buffer."""
    head = m.read_u64("perf_ring_head")
    return parse_records(m.read(m.addr("perf_ring"), RING_SIZE), min(head, RING_SIZE))
