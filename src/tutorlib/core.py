"""Where code runs and how it is seeded: the two calls at the top of every chapter."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = [
    "device",
    "seed_everything",
]


def device() -> torch.device:
    """The device a chapter trains on: CUDA when a GPU is available, else the CPU.

    The book is written to run on a 2-core CPU within its time budget; a GPU only makes it
    faster.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    After ``seed_everything(s)`` two runs of the same code draw the same numbers, so the
    values the text quotes are the values a reader gets (on the same library versions).

    Args:
        seed: a non-negative integer below 2**32.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for code that prefers an explicit
        generator to the global one.

    Raises:
        TypeError: ``seed`` is not an ``int``.
        ValueError: ``seed`` is negative or not below 2**32.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeding the legacy global RNG is the point
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by subprocesses (data loaders)
    return torch.Generator().manual_seed(seed)
