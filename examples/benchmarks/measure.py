"""Run one peer on one workload in this process and print its timings as JSON.

    python measure.py PEER WORKLOAD [--steps N] [--warmup N]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from peers import PEERS, Unavailable
from workloads import WORKLOADS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer")
    ap.add_argument("workload")
    ap.add_argument("--steps", type=int, default=200,
                    help="steps timed, at least (more while under --seconds)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time steps for at least this long (up to 100x --steps): a "
                         "microsecond step needs thousands of samples for a stable median")
    args = ap.parse_args()
    w = WORKLOADS[args.workload]
    t0 = time.perf_counter()
    try:
        step = PEERS[args.peer](w)
    except Unavailable as e:
        print(json.dumps({"skipped": str(e)}))
        return
    setup = time.perf_counter() - t0
    start = time.perf_counter()
    warm_until = start + 20.0     # bound slow peers (a reference interpreter)
    warm_at_least = start + min(0.5, args.seconds / 4)     # caches, clocks, threads settled
    i = 0
    while i < args.warmup or time.perf_counter() < warm_at_least:
        step()
        i += 1
        if i >= 2 and time.perf_counter() > warm_until:
            break
    times = []
    start = time.perf_counter()
    deadline = start + max(20.0, args.seconds)      # bound slow peers
    long_enough = start + args.seconds
    while len(times) < args.steps or (time.perf_counter() < long_enough
                                      and len(times) < 100 * args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        if time.perf_counter() > deadline and len(times) >= 10:
            break
    print(json.dumps({"median_s": float(np.median(times)), "min_s": float(np.min(times)),
                      "steps": len(times), "setup_s": setup,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    sys.exit(main())
