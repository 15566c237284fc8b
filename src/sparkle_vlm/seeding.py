"""Per-sample randomness.

Every sample draws from its own generator, derived from (task id, split, seed, index) with
``numpy.random.SeedSequence``. Samples are therefore random-access (index 1,000 does not need
indices 0-999), independent of the number of worker processes, and neighbouring seeds never
share samples (unlike ``Random(seed + index)``, where sample i+1 of seed s is sample i of s+1).
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_key(text: str) -> int:
    """A 64-bit integer derived from ``text`` that is the same on every machine and run.

    Python's ``hash`` is salted per process, so it cannot be used for seeding.

    >>> stable_key("instruct") == stable_key("instruct")
    True
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def seed_sequence(task: str, split: str, seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of one sample."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    return np.random.SeedSequence([stable_key(task), stable_key(split), seed, index])


def sample_rng(task: str, split: str, seed: int, index: int) -> np.random.Generator:
    """The random generator of one sample.

    >>> a = sample_rng("instruct", "train", 0, 5).random()
    >>> b = sample_rng("instruct", "train", 0, 5).random()
    >>> a == b
    True
    """
    return np.random.Generator(np.random.PCG64(seed_sequence(task, split, seed, index)))
