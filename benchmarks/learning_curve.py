"""Plot Set5 validation Y-PSNR against training step from ``log.jsonl`` files (SVG, no plotting library).

Usage: python -m benchmarks.learning_curve docs/training_curves.svg LABEL=runs/irn-x2/log.jsonl ...
A run that continued an earlier one's weights is drawn after it with ``LABEL=log.jsonl@STEPS`` (its steps shifted by
``STEPS``, the earlier run's length).
The key plotted is ``val_psnr_z0`` (z = 0 at the decoder) and, where the run was trained with z ~ N(0, 1),
also ``val_psnr_zdraw`` (one z draw).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def load(path: str) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in rows if "val_psnr_z0" in r}  # a resumed run may log a step twice
    return [by_step[s] for s in sorted(by_step)]


def main() -> None:
    out = sys.argv[1]
    series = []
    for arg in sys.argv[2:]:
        label, spec = arg.split("=", 1)
        path, _, shift = spec.partition("@")
        rows, off = load(path), int(shift or 0)
        series.append((f"{label} (z = 0)", [(off + r["step"], r["val_psnr_z0"]) for r in rows]))
        if "zdraw" in label:
            series.append((f"{label} (z drawn)", [(off + r["step"], r["val_psnr_zdraw"]) for r in rows]))
    w, h, pad = 640, 380, 50
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1 = 0, max(xs)
    y0, y1 = max(min(ys), 10.0) - 1, max(ys) + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (max(y, y0) - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>']  # fmt: skip
    for k in range(6):
        yv = y0 + k * (y1 - y0) / 5
        parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="5" y="{sy(yv) + 4:.1f}">{yv:.1f}</text>')
    for k in range(6):
        xv = x0 + k * (x1 - x0) / 5
        parts.append(f'<text x="{sx(xv) - 10:.1f}" y="{h - pad + 16}">{int(xv)}</text>')
    parts.append(f'<text x="{w / 2 - 60}" y="{h - 10}">training step</text>')
    parts.append(f'<text x="{pad}" y="20">Set5 Y-PSNR (dB) during training</text>')
    for i, (label, pts) in enumerate(series):
        col = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{w - pad - 230}" y="{pad + 16 * i}" fill="{col}">{label}</text>')
    parts.append("</svg>")
    Path(out).write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
