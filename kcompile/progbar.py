"""Keras 3's progress bar (keras.utils.Progbar), drawn by the ProgbarLogger callback.

verbose=1 redraws one line per update (throttled to `interval` seconds):

    1875/1875 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step - accuracy: 0.8769 - loss: 0.4362

with the ETA in place of the elapsed time while the epoch runs; verbose=2 writes
only the final line, `1875/1875 - 2s - 1ms/step - accuracy: ... - loss: ...`.

Keras colours the bar with ANSI escapes and writes them even to pipes; here the
colours (and the backspaces) are used only on a terminal or in a notebook, so
captured output and log files hold plain text. Without colours, the part of
the bar still to come is drawn with spaces.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np


def _is_terminal() -> bool:
    return ((hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
            or "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ)


def _write(message: str) -> None:
    try:
        sys.stdout.write(message)
    except UnicodeEncodeError:     # a stdout that cannot encode the bar: Keras 2's '='
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.write(message.replace("\u2501", "=").encode(encoding, errors="ignore")
                         .decode(encoding))
    sys.stdout.flush()


def print_msg(message, line_break=True):
    """Keras' io_utils.print_msg: a message on stdout."""
    _write(f"{message}\n" if line_break else str(message))


class Progbar:
    """Displays a progress bar (keras.utils.Progbar).

    Args:
        target: total number of steps expected, None if unknown.
        width: progress bar width on screen.
        verbose: 0 (silent), 1 (bar) or 2 (one line when finished).
        interval: minimum visual progress update interval, in seconds.
        stateful_metrics: names of metrics shown as given; the others are averaged
            over the steps (by the number of units each update covers).
        stateless_metrics: the opposite: names averaged, all others shown as given.
        unit_name: display name for the step counts (usually "step" or "sample").
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 stateless_metrics=None, unit_name="step"):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Only one of `stateful_metrics` or `stateless_metrics` can be "
                             "provided.")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateful_metrics is not None:
            self.stateful_metrics, self.stateless_metrics = set(stateful_metrics), None
        elif stateless_metrics is not None:
            self.stateful_metrics, self.stateless_metrics = None, set(stateless_metrics)
        else:
            self.stateful_metrics, self.stateless_metrics = set(), None
        self._dynamic_display = True       # Keras: always on POSIX
        self._ansi = _is_terminal()
        self._seen_so_far = 0
        self._values = {}
        self._values_order = []
        self._start = time.time()
        self._last_update = 0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def update(self, current, values=None, finalize=None):
        """Updates the progress bar.

        Args:
            current: index of the current step.
            values: list of (name, value) tuples (or a dict).
            finalize: whether this is the last update; defaults to
                `current >= self.target`.
        """
        if finalize is None:
            finalize = False if self.target is None else current >= self.target
        if isinstance(values, dict):
            values = list(values.items())
        for k, v in values or []:
            if k not in self._values_order:
                self._values_order.append(k)
            if self.stateful_metrics is not None:
                stateless = k not in self.stateful_metrics
            else:
                stateless = k in self.stateless_metrics
            if stateless:
                if finalize:
                    self._values[k] = [v, 1]
                else:
                    base = max(current - self._seen_so_far, 1)
                    if k not in self._values:
                        self._values[k] = [v * base, base]
                    else:
                        self._values[k][0] += v * base
                        self._values[k][1] += base
            else:
                self._values[k] = [v, 1]
        self._seen_so_far = current

        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)

        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if self._ansi else (lambda s: s)
            message = ("\b" * self._prev_total_width if self._ansi else "") + "\r"
            special = 0
            if self.target is not None and self.target > 0:
                numdigits = int(math.log10(self.target)) + 1
                bar = bold(f"%{numdigits}d/%d" % (current, self.target)) + " "
                prog_width = int(self.width * float(current) / self.target)
                if self._ansi:
                    special += 8
                    if prog_width > 0:
                        bar += f"\33[32m{chr(0x2501) * prog_width}\x1b[0m"
                        special += 9
                    bar += f"\33[37m{chr(0x2501) * (self.width - prog_width)}\x1b[0m"
                    special += 9
                else:
                    bar += chr(0x2501) * prog_width + " " * (self.width - prog_width)
            else:
                bar = "%7d/Unknown" % current
            message += bar
            if self.target is not None and self.target > 0 and not finalize:
                eta = time_per_unit * (self.target - current)
                if eta > 3600:
                    eta_format = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
                elif eta > 60:
                    eta_format = "%d:%02d" % (eta // 60, eta % 60)
                else:
                    eta_format = "%ds" % eta
                info = " " + bold(eta_format)
            else:
                info = " " + bold(f"{now - self._start:.0f}s")
            if self._ansi:
                special += 8
            info += self._format_time(time_per_unit, self.unit_name)
            info += self._metrics_text(signed=False)
            message += info
            total_width = len(bar) + len(info) - special
            if self._prev_total_width > total_width:
                message += " " * (self._prev_total_width - total_width)
            if finalize:
                message += "\n"
            _write(message)
            self._prev_total_width = total_width
        elif self.verbose == 2:
            if finalize and self.target is not None and self.target > 0:
                numdigits = int(math.log10(self.target)) + 1
                info = f"%{numdigits}d/%d - {now - self._start:.0f}s -" % (current, self.target)
                info += self._format_time(time_per_unit, self.unit_name)
                # (sic) Keras compares the signed value here.
                info += self._metrics_text(signed=True)
                _write(info + "\n")
        self._last_update = now

    def add(self, n, values=None):
        self.update(self._seen_so_far + n, values)

    def _metrics_text(self, signed):
        """" - name: mean" per metric; 4 decimals above 1e-3, else scientific (compared
        by magnitude, or, as Keras' verbose=2 line does, by signed value)."""
        info = ""
        for k in self._values_order:
            value, count = self._values[k]
            if not isinstance(value, float):
                value = np.mean(value)
            avg = value / max(1, count)
            big = (avg if signed else abs(avg)) > 1e-3
            info += f" - {k}: {avg:.4f}" if big else f" - {k}: {avg:.4e}"
        return info

    @staticmethod
    def _format_time(time_per_unit, unit_name):
        if time_per_unit >= 1 or time_per_unit == 0:
            return f" {time_per_unit:.0f}s/{unit_name}"
        if time_per_unit >= 1e-3:
            return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
        return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"

    def _estimate_step_duration(self, current, now):
        """Time per step, leaving the first step out once there are others: it holds the
        compilation."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
