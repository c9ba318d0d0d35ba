"""Minimal PNG charts drawn with Pillow (no plotting library needed): line and bar charts."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["line_chart", "bar_chart", "COLOURS"]

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75), (23, 190, 207)]


def _frame(title: str, xlabel: str, ylabel: str, lo: float, hi: float, size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    w, h = size
    d.text((60, 8), title, fill="black")
    d.text((w // 2 - 40, h - 18), xlabel, fill="black")
    d.text((4, 24), ylabel, fill="black")
    for k in range(6):
        v = lo + k * (hi - lo) / 5
        y = h - 40 - k * (h - 80) / 5
        d.line([(60, y), (w - 20, y)], fill=(230, 230, 230))
        d.text((4, y - 6), f"{v:.2f}", fill="black")
    d.rectangle([60, 40, w - 20, h - 40], outline="black")
    return img, d


def line_chart(
    series: dict[str, list[float]], path: str | Path, *, title: str, xlabel: str, ylabel: str, size: tuple[int, int] = (720, 420)
) -> None:
    """One line per series, x = index (0, 1, ...)."""
    vals = [v for s in series.values() for v in s]
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        hi = lo + 1
    n = max(len(s) for s in series.values())
    img, d = _frame(title, xlabel, ylabel, lo, hi, size)
    w, h = size
    for i, (name, s) in enumerate(series.items()):
        col = COLOURS[i % len(COLOURS)]
        pts = [(60 + j * (w - 80) / max(1, n - 1), h - 40 - (v - lo) / (hi - lo) * (h - 80)) for j, v in enumerate(s)]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        elif pts:
            d.ellipse([pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3], fill=col)
        d.text((w - 200, 46 + 14 * i), name, fill=col)
    for k in range(0, n, max(1, n // 6)):
        d.text((60 + k * (w - 80) / max(1, n - 1) - 4, h - 36), str(k), fill="black")
    img.save(path)


def bar_chart(
    labels: list[str], values: list[float], path: str | Path, *, title: str, ylabel: str, size: tuple[int, int] = (720, 420)
) -> None:
    """Vertical bars (negative values go below zero)."""
    if not values:
        return
    lo, hi = min(0.0, min(values)), max(0.0, max(values))
    if hi - lo < 1e-9:
        hi = lo + 1
    img, d = _frame(title, "", ylabel, lo, hi, size)
    w, h = size

    def sy(v: float) -> float:
        return h - 40 - (v - lo) / (hi - lo) * (h - 80)

    bw = (w - 80) / len(values)
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x0 = 60 + i * bw
        d.rectangle([x0 + 1, min(sy(v), sy(0)), x0 + bw - 1, max(sy(v), sy(0))], fill=COLOURS[0] if v >= 0 else COLOURS[1])
        if bw > 24:
            d.text((x0 + 2, h - 36), lab[:8], fill="black")
    img.save(path)
