"""Variable-length LSTM: compile time and step time, one capacity step vs per length.

    KCOMPILE_NO_CACHE=1 PYTHONPATH=. python examples/benchmarks/variable_length.py

Cold compile (no disk cache) of an LSTM model on Input(shape=(None, F)) (one step,
capacity 64, for every length) against the same model on Input(shape=(T, F)); then
the train-step time at several lengths: the capacity step (T steps of the loop,
padded to 64) against the step compiled for exactly T.
"""
from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("KCOMPILE_NO_CACHE", "1")

import kcompile as kc  # noqa: E402
from kcompile import layers  # noqa: E402

B, F, U, K = 32, 16, 64, 8
LENGTHS = (8, 16, 32, 64)


def model(T):
    inp = layers.Input(shape=(T, F))
    x = layers.LSTM(U, return_sequences=True)(inp)
    m = kc.Model(inp, layers.Dense(K)(x))
    m.compile("adam", "mse")
    return m


def batch(T, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(B, T, F)).astype(np.float32), r.normal(size=(B, T, K)).astype(np.float32)


def step_time(m, T, reps=30):
    x, y = batch(T)
    m.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(reps):
        m.train_on_batch(x, y)
    return (time.perf_counter() - t0) / reps


def main():
    var = model(None)
    var.set_weights(model(64).get_weights())
    t0 = time.perf_counter()
    var.train_on_batch(*batch(64))          # capacity 64: one compile for every length
    cold_var = time.perf_counter() - t0
    rows = []
    for T in LENGTHS:
        fixed = model(T)
        t0 = time.perf_counter()
        fixed.train_on_batch(*batch(T))
        cold_fixed = time.perf_counter() - t0
        rows.append((T, cold_fixed, step_time(var, T), step_time(fixed, T)))
    print(f"LSTM({U}) + Dense({K}), batch {B}, {F} features, train step (compile + first step)")
    print(f"variable length, capacity 64, cold: {cold_var:.2f} s (one compile for all lengths)")
    print(f"{'T':>4} {'fixed cold s':>13} {'var step ms':>12} {'fixed step ms':>14} {'ratio':>6}")
    for T, cf, tv, tf in rows:
        print(f"{T:>4} {cf:>13.2f} {tv * 1e3:>12.3f} {tf * 1e3:>14.3f} {tv / tf:>6.2f}")
    print(f"per-length compiles for {len(LENGTHS)} lengths: {sum(r[1] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
