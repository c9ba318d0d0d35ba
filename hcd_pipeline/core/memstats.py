"""Resident memory of this process (Linux ``/proc/self``), for benchmarks: current, peak, and a peak reset.

Elsewhere (no ``/proc``) the readings are NaN and :func:`reset_peak_rss` returns False.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["rss_mib", "peak_rss_mib", "reset_peak_rss"]


def _status_mib(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mib() -> float:
    """Resident set size now, MiB (``VmRSS``)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Resident set high-water mark since start or the last :func:`reset_peak_rss`, MiB (``VmHWM``)."""
    return _status_mib("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current resident set (``clear_refs`` 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
