"""Small inline SVG trend plots for the monitoring page (pure; no JavaScript, no plotting
library: a polyline of a metric's per-study values, the baseline mean and its ±3σ band)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from html import escape

__all__ = ["trend_svg"]

WIDTH, HEIGHT, PAD = 320, 90, 4


def trend_svg(values: Sequence[float], title: str, *, baseline: int = 30) -> str:
    """An SVG image (as markup) of ``values`` in order, with the mean ±3σ of the first
    ``baseline`` of the last ``baseline + 5`` values shaded; an empty plot says so."""
    label = escape(title)
    if len(values) < 2:
        return (
            f'<svg role="img" aria-label="{label}: too few studies" width="{WIDTH}" '
            f'height="{HEIGHT}"><text x="8" y="48">{label}: too few studies</text></svg>'
        )
    reference = list(values[-(baseline + 5) : -5] or values)
    mean = statistics.fmean(reference)
    sd = statistics.pstdev(reference)
    lo_v, hi_v = min(*values, mean - 3 * sd), max(*values, mean + 3 * sd)
    span = (hi_v - lo_v) or 1.0

    def x(i: int) -> float:
        return PAD + i * (WIDTH - 2 * PAD) / (len(values) - 1)

    def y(v: float) -> float:
        return HEIGHT - PAD - (v - lo_v) * (HEIGHT - 2 * PAD) / span

    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    band_top, band_bottom = y(mean + 3 * sd), y(mean - 3 * sd)
    return (
        f'<svg role="img" aria-label="{label}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{label}</title>'
        f'<rect x="{PAD}" y="{band_top:.1f}" width="{WIDTH - 2 * PAD}" '
        f'height="{max(band_bottom - band_top, 0.5):.1f}" fill="#e8f0fe"/>'
        f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(mean):.1f}" y2="{y(mean):.1f}" '
        f'stroke="#7a9cc6" stroke-dasharray="3 3"/>'
        f'<polyline fill="none" stroke="#1a4f8b" stroke-width="1.5" points="{line}"/>'
        f'<text x="{PAD + 2}" y="12" font-size="10">{label}</text></svg>'
    )
