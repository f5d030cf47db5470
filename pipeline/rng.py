"""Seeds derived from integers: every random draw in animecolor is a function of (seed, ...).

The bottom layer (no torch import): training resumes bit-identically because each step's draws
come from `step_seed(seed, rank, step)`, and sampling is independent of batch size because each
image's draws come from `step_seed(seed, index, stream)`.
"""

from __future__ import annotations

import hashlib


def step_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, index, ...), stable across runs and platforms."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1
