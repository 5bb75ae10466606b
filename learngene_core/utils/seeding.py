"""Seeds derived from the run's one seed, so that every task's randomness is independent of the others.

A resumed run therefore draws exactly what an uninterrupted run would have drawn for the same task.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the run seed and a path of names/indices (stable across processes and runs)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF
