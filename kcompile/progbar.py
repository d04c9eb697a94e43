"""Keras' progress display: a bar per epoch (verbose=1) or one line per epoch (verbose=2)."""
from __future__ import annotations

import sys
import time


def _fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _fmt_logs(logs):
    return "".join(f" - {k}: {v:.4f}" if abs(v) >= 1e-3 or v == 0 else f" - {k}: {v:.4e}"
                   for k, v in logs.items())


class Progbar:
    def __init__(self, target, width=20, verbose=1, interval=0.05, unit_name="step"):
        self.target, self.width, self.verbose = target, width, verbose
        self.interval, self.unit_name = interval, unit_name
        self.start = time.time()
        self._last = 0.0
        self._dynamic = sys.stdout.isatty()
        self._seen = 0

    def _bar(self, current):
        done = int(self.width * current / max(self.target, 1))
        return "\u2501" * done + " " * (self.width - done) if done < self.width else "\u2501" * self.width

    def update(self, current, logs=None):
        self._seen = current
        if self.verbose != 1 or not self._dynamic:
            return
        now = time.time()
        if now - self._last < self.interval and current < self.target:
            return
        self._last = now
        elapsed = now - self.start
        eta = elapsed / max(current, 1) * (self.target - current)
        w = len(str(self.target))
        line = f"\r{current:>{w}}/{self.target} {self._bar(current)} {_fmt_time(eta)}{_fmt_logs(logs or {})}"
        sys.stdout.write(line)
        sys.stdout.flush()

    def finish(self, logs=None):
        if not self.verbose:
            return
        elapsed = time.time() - self.start
        per_step = _fmt_time(elapsed / max(self._seen, 1))
        w = len(str(self.target))
        if self.verbose == 1:
            line = (f"{self._seen:>{w}}/{self.target} {self._bar(self._seen)} {_fmt_time(elapsed)} "
                    f"{per_step}/{self.unit_name}{_fmt_logs(logs or {})}")
            sys.stdout.write(("\r" if self._dynamic else "") + line + "\n")
        else:
            sys.stdout.write(f"{self._seen}/{self.target} - {_fmt_time(elapsed)} - "
                             f"{per_step}/{self.unit_name}{_fmt_logs(logs or {})}\n")
        sys.stdout.flush()
