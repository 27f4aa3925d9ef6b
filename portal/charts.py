"""Server-rendered SVG charts: no script, no chart library, readable by screen readers.

A chart is an `<svg role="img">` with a `<title>` and a `<desc>` (aria-labelledby both); the page
shows the same figures as a table next to it, so nothing is only in the picture. Series are told
apart by fill *and* pattern (solid vs. hatched), never by colour alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
HEIGHT = 260
LEFT = 56  # room for the value axis labels
RIGHT = 8
TOP = 12
BOTTOM = 36  # room for the category labels
COLOURS = ("#0b57d0", "#146c2e")  # portal.css --accent and --ok: 4.5:1 against white


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `value` (an axis maximum people can read)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
) -> SafeString:
    """Grouped vertical bars: one group per category, one bar per series, with a legend."""
    peak = max((v for s in series for v in s.values), default=0.0)
    top = nice_ceiling(peak)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT + 24}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
        "<defs>"
        f'<pattern id="{escape(chart_id)}-hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="#fff"/><rect width="3" height="6" fill="{COLOURS[1]}"/>'
        "</pattern></defs>",
    ]
    # Value axis: 0, ½ and the top, with light grid lines.
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#d0d0d0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#4d4d4d">{_number(top * fraction)}</text>'
        )
    for i, category in enumerate(categories):
        x0 = LEFT + i * group_w + group_w * 0.1
        for j, one in enumerate(series):
            value = float(one.values[i]) if i < len(one.values) else 0.0
            h = plot_h * (value / top) if top else 0
            fill = COLOURS[0] if j % 2 == 0 else f"url(#{escape(chart_id)}-hatch)"
            stroke = COLOURS[j % len(COLOURS)]
            parts.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{fill}" '
                f'stroke="{stroke}"><title>{escape(category)} · {escape(one.label)}: '
                f"{_number(value)}</title></rect>"
            )
        parts.append(
            f'<text x="{LEFT + i * group_w + group_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle" font-size="12" fill="#1a1a1a">{escape(category)}</text>'
        )
    # Legend under the plot: a swatch with the same fill and pattern as the bars.
    x = LEFT
    for j, one in enumerate(series):
        fill = COLOURS[0] if j % 2 == 0 else f"url(#{escape(chart_id)}-hatch)"
        parts.append(
            f'<rect x="{x}" y="{HEIGHT + 4}" width="14" height="14" fill="{fill}" '
            f'stroke="{COLOURS[j % len(COLOURS)]}"/>'
            f'<text x="{x + 20}" y="{HEIGHT + 16}" font-size="12" fill="#1a1a1a">'
            f"{escape(one.label)}</text>"
        )
        x += 28 + 9 * len(one.label) + 40
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()
