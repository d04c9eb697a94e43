"""set_random_seed (keras.utils.set_random_seed)."""
from __future__ import annotations

import random

import numpy as np


def set_random_seed(seed):
    """Seed Python's `random`, numpy's global RNG and kcompile's weight initializers,
    so that building and training a model is reproducible."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed!r} "
                         f"(of type {type(seed)})")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    from .. import initializers
    initializers.set_seed(seed)
    from .. import random as _random      # the global SeedGenerator of unseeded random ops
    _random._global = _random.SeedGenerator(seed, name="global_seed_generator")
    try:                                  # Dropout draws its default salts from its own RNG
        from ..layers import regularization
        regularization._seed_rng = np.random.default_rng(seed)
    except (ImportError, AttributeError):
        pass
