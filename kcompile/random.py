"""Seeding, as `tf.random.set_seed` / `keras.utils.set_random_seed` are used."""
from __future__ import annotations


def set_seed(seed):
    """Seed weight initialization (and numpy's global generator)."""
    from .utils import set_random_seed
    set_random_seed(seed)
