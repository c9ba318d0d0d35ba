"""Self-contained SVG charts with axes, ticks, units and legends (no plotting library, work offline).

Used by ``hcd report`` (histogram, scatter) and the benchmarks' charts (``benchmarks/preset_cost.py``). Every
function returns SVG markup: an inline ``<svg>`` element that HTML pages embed as it is, or that is saved as a
``.svg`` file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["nice_ticks", "histogram", "scatter", "scatter_panels", "curve_panels", "PALETTE"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
_FONT = 'font-family="sans-serif" font-size="11"'


def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten; at least 1 when
    ``integer``, e.g. for counts)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, round(step))
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float, step: float | None = None) -> str:
    """A tick label: as many decimals as the tick step needs (or 3 significant digits without a step)."""
    if step:
        return f"{v:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    if v == 0:
        return "0"
    if abs(v) >= 100 or v == int(v):
        return f"{v:.0f}"
    digits = max(0, min(4, 2 - int(math.floor(math.log10(abs(v))))))
    return f"{v:.{digits}f}"


def _step(ticks: list[float]) -> float | None:
    return ticks[1] - ticks[0] if len(ticks) > 1 else None


class _Axes:
    """A plot area with linear (or log10 x) scales, drawn axes, ticks, grid and labels."""

    def __init__(
        self, x0: float, y0: float, w: float, h: float, xr: tuple[float, float], yr: tuple[float, float], *, log_x: bool = False,
        y_integer: bool = False,
    ) -> None:  # fmt: skip
        self.x0, self.y0, self.w, self.h, self.log_x = x0, y0, w, h, log_x
        self.xt = _log_ticks(*xr) if log_x else nice_ticks(*xr)
        self.yt = nice_ticks(*yr, integer=y_integer)
        self.xr = (min(self.xt[0], xr[0]), max(self.xt[-1], xr[1])) if self.xt else xr
        self.yr = (min(self.yt[0], yr[0]), max(self.yt[-1], yr[1])) if self.yt else yr

    def sx(self, v: float) -> float:
        lo, hi = self.xr
        if self.log_x:
            v, lo, hi = math.log10(v), math.log10(lo), math.log10(hi)
        return self.x0 + (v - lo) / ((hi - lo) or 1) * self.w

    def sy(self, v: float) -> float:
        lo, hi = self.yr
        return self.y0 + self.h - (v - lo) / ((hi - lo) or 1) * self.h

    def draw(self, xlabel: str, ylabel: str) -> str:
        parts = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.w}" height="{self.h}" fill="none" stroke="#333"/>']
        for t in self.xt:
            x = self.sx(t)
            parts.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + self.h}" stroke="#e5e5e5"/>')
            parts.append(f'<line x1="{x:.1f}" y1="{self.y0 + self.h}" x2="{x:.1f}" y2="{self.y0 + self.h + 4}" stroke="#333"/>')
            label = f"{t:g}" if self.log_x else _fmt(t, _step(self.xt))
            parts.append(f'<text x="{x:.1f}" y="{self.y0 + self.h + 16}" text-anchor="middle" {_FONT}>{label}</text>')
        for t in self.yt:
            y = self.sy(t)
            parts.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + self.w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            parts.append(f'<line x1="{self.x0 - 4}" y1="{y:.1f}" x2="{self.x0}" y2="{y:.1f}" stroke="#333"/>')
            parts.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>{_fmt(t, _step(self.yt))}</text>')
        parts.append(
            f'<text x="{self.x0 + self.w / 2:.1f}" y="{self.y0 + self.h + 32}" text-anchor="middle" {_FONT}>{html.escape(xlabel)}</text>'
        )
        cy = self.y0 + self.h / 2
        parts.append(f'<text x="{self.x0 - 44}" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 {self.x0 - 44} {cy:.1f})" {_FONT}>'
                     f"{html.escape(ylabel)}</text>")  # fmt: skip
        return "".join(parts)


def _log_ticks(lo: float, hi: float) -> list[float]:
    lo, hi = max(lo, 1e-9), max(hi, lo * 1.0001)
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo / 2 <= v <= hi * 2:
                ticks.append(v)
    return ticks


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{html.escape(label)}">{body}</svg>')  # fmt: skip


def histogram(
    values: Sequence[float], *, xlabel: str, ylabel: str = "images", title: str = "", bins: int = 30, mark: float | None = 0.0,
    width: int = 520, height: int = 280,
) -> str:  # fmt: skip
    """Histogram of the finite ``values`` with counts on the y axis; a dashed line at ``mark`` (e.g. no gain), always
    inside the plotted range (where every value lies on one side of it, that is the point of the line)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "<p>no finite values to plot</p>"
    ranged = vals + ([mark] if mark is not None else [])
    lo, hi = min(ranged), max(ranged)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    ax = _Axes(60, 28 if title else 12, width - 80, height - (76 if title else 60), (lo, hi), (0, max(counts)), y_integer=True)
    body = (
        [f'<text x="{width / 2}" y="16" text-anchor="middle" font-family="sans-serif" font-size="13">{html.escape(title)}</text>']
        if title
        else []
    )
    body.append(ax.draw(xlabel, ylabel))
    for i, c in enumerate(counts):
        x1, x2 = ax.sx(edges[i]), ax.sx(edges[i + 1])
        y = ax.sy(c)
        body.append(f'<rect x="{x1:.1f}" y="{y:.1f}" width="{max(0.5, x2 - x1 - 1):.1f}" height="{ax.sy(0) - y:.1f}" fill="{PALETTE[0]}">'
                    f"<title>{_fmt(edges[i])} to {_fmt(edges[i + 1])}: {c}</title></rect>")  # fmt: skip
    if mark is not None and ax.xr[0] <= mark <= ax.xr[1]:
        x = ax.sx(mark)
        body.append(f'<line x1="{x:.1f}" y1="{ax.y0}" x2="{x:.1f}" y2="{ax.y0 + ax.h}" stroke="#d62728" stroke-dasharray="4"/>')
    return _svg(width, height, title or xlabel, "".join(body))


def scatter(
    points: Sequence[tuple[float, float]], *, xlabel: str, ylabel: str, title: str = "", diagonal: bool = False,
    names: Sequence[str] | None = None, width: int = 420, height: int = 360, hline: float | None = None,
) -> str:  # fmt: skip
    """Points (x, y), optional names as tooltips, an optional dashed y = x line (e.g. 'no change') or a dashed
    horizontal line at ``hline`` (e.g. 'no gain'), always inside the plotted range."""
    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return "<p>no finite values to plot</p>"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if diagonal:
        lo, hi = min(xs + ys), max(xs + ys)
        xr = yr = (lo - 0.02 * (hi - lo + 1), hi + 0.02 * (hi - lo + 1))
    else:
        ys_ranged = ys + ([hline] if hline is not None else [])
        xr, yr = (min(xs), max(xs)), (min(ys_ranged), max(ys_ranged))
    ax = _Axes(64, 28 if title else 12, width - 84, height - (76 if title else 60), xr, yr)
    body = (
        [f'<text x="{width / 2}" y="16" text-anchor="middle" font-family="sans-serif" font-size="13">{html.escape(title)}</text>']
        if title
        else []
    )
    body.append(ax.draw(xlabel, ylabel))
    if diagonal:
        a, b = max(ax.xr[0], ax.yr[0]), min(ax.xr[1], ax.yr[1])
        body.append(
            f'<line x1="{ax.sx(a):.1f}" y1="{ax.sy(a):.1f}" x2="{ax.sx(b):.1f}" y2="{ax.sy(b):.1f}" stroke="#888" stroke-dasharray="4"/>'
        )
    if hline is not None:
        body.append(f'<line x1="{ax.sx(ax.xr[0]):.1f}" y1="{ax.sy(hline):.1f}" x2="{ax.sx(ax.xr[1]):.1f}" y2="{ax.sy(hline):.1f}" '
                    'stroke="#888" stroke-dasharray="4"/>')  # fmt: skip
    for i, (x, y) in enumerate(pts):
        tip = f"<title>{html.escape(names[i])}: {_fmt(x)}, {_fmt(y)}</title>" if names and i < len(names) else ""
        body.append(f'<circle cx="{ax.sx(x):.1f}" cy="{ax.sy(y):.1f}" r="3" fill="{PALETTE[1]}" fill-opacity="0.7">{tip}</circle>')
    return _svg(width, height, title or f"{ylabel} against {xlabel}", "".join(body))


def _panel_frame(
    panels: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    n_names: int,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool,
    panel_size: tuple[int, int],
) -> tuple[list[str], list[_Axes | None], int, int]:
    """The frame shared by the panel charts: background, title, one titled pair of axes per panel fitted to its
    (x, y) points (None for an empty panel), room for a two-column legend of ``n_names`` entries.
    Returns (SVG parts so far, the axes, the chart's width and height); legend entry i goes at :func:`_legend_xy`."""
    pw, ph = panel_size
    legend_h = 18 * ((n_names + 1) // 2) + 10
    width, height = pw * len(panels) + 20, ph + 40 + legend_h
    head = f'<text x="{width / 2}" y="18" text-anchor="middle" font-family="sans-serif" font-size="14">{html.escape(title)}</text>'
    body = [f'<rect width="{width}" height="{height}" fill="white"/>', head]
    axes: list[_Axes | None] = []
    for k, (ptitle, pts) in enumerate(panels):
        if not pts:
            axes.append(None)
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        pad = 0.08 * ((max(ys) - min(ys)) or 1)
        xr = (min(xs) / 1.3, max(xs) * 1.3) if log_x else (min(xs), max(xs))
        ax = _Axes(k * pw + 70, 50, pw - 90, ph - 60, xr, (min(ys) - pad, max(ys) + pad), log_x=log_x)
        body.append(f'<text x="{ax.x0 + ax.w / 2:.1f}" y="42" text-anchor="middle" {_FONT}>{html.escape(ptitle)}</text>')
        body.append(ax.draw(xlabel, ylabel))
        axes.append(ax)
    return body, axes, width, height


def _legend_xy(i: int, width: int, panel_height: int) -> tuple[int, int]:
    """Where legend entry ``i`` of a panel chart goes (two columns under the panels)."""
    return 70 + (i % 2) * (width // 2), panel_height + 48 + 18 * (i // 2)


def scatter_panels(
    panels: Sequence[tuple[str, Sequence[tuple[str, float, float]]]], *, xlabel: str, ylabel: str, title: str, log_x: bool = False,
    panel_size: tuple[int, int] = (440, 340), label_points: bool = False,
) -> str:  # fmt: skip
    """Side-by-side panels of labelled points (series name, x, y), one colour per series name, a shared legend;
    ``label_points`` also writes each point's name beside it (for more series than colours)."""
    names = list(dict.fromkeys(n for _, pts in panels for n, _, _ in pts))
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    frame = [(ptitle, [(x, y) for _, x, y in pts]) for ptitle, pts in panels]
    body, axes, width, height = _panel_frame(frame, len(names), xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x,
                                             panel_size=panel_size)  # fmt: skip
    for ax, (_, pts) in zip(axes, panels, strict=True):
        if ax is None:
            continue
        for n, x, y in pts:
            body.append(f'<circle cx="{ax.sx(x):.1f}" cy="{ax.sy(y):.1f}" r="5" fill="{colour[n]}"><title>{html.escape(n)}: '
                        f"{html.escape(xlabel)} {_fmt(x)}, {html.escape(ylabel)} {_fmt(y)}</title></circle>")  # fmt: skip
            if label_points:
                body.append(
                    f'<text x="{ax.sx(x) + 7:.1f}" y="{ax.sy(y) + 4:.1f}" font-family="sans-serif" font-size="9">{html.escape(n)}</text>'
                )
    for i, n in enumerate(names):
        x, y = _legend_xy(i, width, panel_size[1])
        body.append(f'<circle cx="{x}" cy="{y - 4}" r="5" fill="{colour[n]}"/><text x="{x + 10}" y="{y}" {_FONT}>{html.escape(n)}</text>')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _svg(width, height, title, "".join(body)) + "\n"


def curve_panels(
    panels: Sequence[tuple[str, Sequence[tuple[str, float, float, str]]]], *, xlabel: str, ylabel: str, title: str,
    log_x: bool = False, panel_size: tuple[int, int] = (460, 380),
) -> str:  # fmt: skip
    """Side-by-side panels of curves: points (series name, x, y, point label), one colour (and dash pattern past the
    palette) per series, the points of a series joined in x order, each point's label beside it (e.g. a quality)."""
    names = list(dict.fromkeys(n for _, pts in panels for n, *_ in pts))
    style = {n: (PALETTE[i % len(PALETTE)], "" if i < len(PALETTE) else ' stroke-dasharray="5 3"') for i, n in enumerate(names)}
    frame = [(ptitle, [(x, y) for _, x, y, _ in pts]) for ptitle, pts in panels]
    body, axes, width, height = _panel_frame(frame, len(names), xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x,
                                             panel_size=panel_size)  # fmt: skip
    for ax, (_, pts) in zip(axes, panels, strict=True):
        if ax is None:
            continue
        for n in names:
            mine = sorted((x, y, lab) for s, x, y, lab in pts if s == n)
            colour, dash = style[n]
            if len(mine) > 1:
                path = " ".join(f"{ax.sx(x):.1f},{ax.sy(y):.1f}" for x, y, _ in mine)
                body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
            for x, y, lab in mine:
                tip = f"{html.escape(n)} {html.escape(lab)}: {html.escape(xlabel)} {_fmt(x)}, {html.escape(ylabel)} {_fmt(y)}"
                body.append(f'<circle cx="{ax.sx(x):.1f}" cy="{ax.sy(y):.1f}" r="4" fill="{colour}"><title>{tip}</title></circle>')
                if lab:
                    body.append(f'<text x="{ax.sx(x) + 6:.1f}" y="{ax.sy(y) - 5:.1f}" font-family="sans-serif" font-size="9" '
                                f'fill="{colour}">{html.escape(lab)}</text>')  # fmt: skip
    for i, n in enumerate(names):
        x, y = _legend_xy(i, width, panel_size[1])
        colour, dash = style[n]
        body.append(f'<line x1="{x - 8}" y1="{y - 4}" x2="{x + 8}" y2="{y - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
                    f'<text x="{x + 14}" y="{y}" {_FONT}>{html.escape(n)}</text>')  # fmt: skip
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _svg(width, height, title, "".join(body)) + "\n"
