"""Progress of a long job: a tqdm bar on a terminal, plain timestamped lines otherwise (nohup, SLURM logs).

A line is written at the first update, then at most every `every` seconds (VDA_PROGRESS_SECONDS, default
30), and at the end: done/total, rate, ETA and the job's own fields, e.g.

    2026-12-02 10:41:07 fit: 1200/40000 it (3.0%), 0.61 s/it, ETA 6h34m, loss 0.5121, lr 6.0e-05

Both command lines use it for every job that runs long: fit, eval, ingest, build-bddvid, flow, verify,
synth, flow-import and flow-export.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.1e}"
    return str(v)


class Progress:
    """`update(n, **fields)` after each unit of work; `close()` at the end (or use as a context manager).

    `enabled=False` shows nothing (a non-main process); `tty` overrides the terminal test (tests)."""

    def __init__(self, total: int, desc: str, unit: str = "it", *, initial: int = 0, enabled: bool = True,
                 tty: bool | None = None, every: float | None = None, stream=None):
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.stream = stream or sys.stderr
        self.enabled = enabled
        tty = self.stream.isatty() if tty is None else tty
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream) if enabled and tty else None
        self.every = float(os.environ.get("VDA_PROGRESS_SECONDS", 30)) if every is None else every
        self.start, self.initial, self.last = time.monotonic(), initial, None
        self.printed: int | None = None  # the count the last line showed
        self.fields: dict = {}

    def each(self, items):
        """Yield `items`, counting each one done when the loop's body has finished with it; closes at the end."""
        for item in items:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update(fields)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if fields:
                self.bar.set_postfix({k: _value(v) for k, v in self.fields.items()}, refresh=False)
            return
        now = time.monotonic()
        if self.last is None or now - self.last >= self.every or self.done >= self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last, self.printed = now, self.done
        elapsed, done_here = now - self.start, self.done - self.initial
        rate = elapsed / done_here if done_here else None  # seconds per unit
        parts = [f"{self.done}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.1f}%)"
        if rate is not None:
            parts.append(f"{rate:.3g} s/{self.unit}" if rate >= 1 else f"{1 / rate:.3g} {self.unit}/s")
            parts.append(f"ETA {_duration(rate * (self.total - self.done))}")
        parts += [f"{k} {_value(v)}" for k, v in self.fields.items()]
        self.stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.desc}: {', '.join(parts)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.printed != self.done:
            self._line(time.monotonic())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
