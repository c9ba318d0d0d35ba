"""Progress of a long run: a bar in a terminal, a line every N seconds in logs (submitted jobs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress", "format_eta"]


def format_eta(seconds: float) -> str:
    """``3h04m``, ``4m05s`` or ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Counts done / failed images of ``total`` (None: unknown, as with tar shards) and shows them.

    ``mode``: ``"bar"`` (tqdm), ``"lines"`` (one line every ``interval`` seconds and at the end, for output that
    is not a terminal), ``"off"``, or ``"auto"``: a bar when ``stream`` is a terminal, else lines.
    """

    def __init__(self, total: int | None, *, mode: str = "auto", interval: float = 30.0, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress mode {mode!r}: expected auto, bar, lines or off")
        self.mode, self.total, self.interval = mode, total, interval
        self.done = self.failed = 0
        self.t0 = self._last = time.perf_counter()
        self._bar = tqdm(total=total, desc="images", unit="img", file=self.stream) if mode == "bar" else None

    def update(self, ok: int, failed: int) -> None:
        self.done += ok
        self.failed += failed
        if self._bar is not None:
            self._bar.update(ok + failed)
            self._bar.set_postfix(done=self.done, failed=self.failed)
        elif self.mode == "lines" and time.perf_counter() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last = now = time.perf_counter()
        n = self.done + self.failed
        rate = n / max(now - self.t0, 1e-9)
        if self.total is None:
            head, eta = f"{n} images", ""
        else:
            pct = 100.0 * n / self.total if self.total else 100.0
            head = f"{n}/{self.total} images ({pct:.1f}%)"
            eta = ", ETA " + (format_eta((self.total - n) / rate) if rate > 0 and self.total > n else "-")
        print(f"[hcd] {head}: {self.done} done, {self.failed} failed, {rate:.2f} img/s{eta}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines":
            self._line()
