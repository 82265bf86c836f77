"""The digest of search states: XXH3, 128 bits (issue 15).

A state key is hashed from tens of kilobytes (stacks, shared data, the models' parts)
for every transition of a search; blake2b took about 9 us per 8 KB here, XXH3-128 takes
about 0.2 us.  Keys only identify states within one search (and its checkpoint, whose
format version names the digest): no adversary chooses the hashed bytes, so a
non-cryptographic hash with 128 bits makes a collision as unlikely as blake2b's would.
"""

from __future__ import annotations

from xxhash import xxh3_128_digest

__all__ = ["KEY_BYTES", "Bytes", "digest"]

KEY_BYTES = 16
Bytes = bytes | bytearray | memoryview  # what a key's parts may be (they are joined)


def digest(data: Bytes) -> bytes:
    """The 16-byte key of ``data``."""
    return xxh3_128_digest(data)
