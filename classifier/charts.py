"""Server-side SVG charts: a line chart with axes, ticks and a legend, and a horizontal bar chart.

Plain Python, no JavaScript: each chart is an `Svg` string that Django templates print unescaped (it has
`__html__`); every text that goes into it is escaped here. Colours and font sizes are inline attributes so a
chart reads the same without the page's stylesheet (e.g. saved on its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2457c5", "#d9480f", "#067647", "#7a5af8", "#c11574", "#0e9384", "#b54708", "#475467",
           "#4e5ba6", "#a15c07")
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'
TEXT_COLOUR = "#1d2330"
MUTED_COLOUR = "#687086"
GRID_COLOUR = "#e4e7ef"


class Svg(str):
    """SVG markup that templates render as is (already escaped where it holds text)."""

    def __html__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Series:
    """One line of a line chart: `points` are (x, y); points with a missing or non-finite value are skipped."""

    name: str
    points: Sequence[tuple[float | None, float | None]]
    notes: Sequence[str] = field(default_factory=tuple)  # per point, shown in its tooltip


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart; `title` is the tooltip (defaults to the label), `note` is printed after the value."""

    label: str
    value: float
    note: str = ""
    title: str = ""


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Return about `count` round tick values (steps of 1, 2, 2.5 or 5 × 10ⁿ) covering [low, high]."""
    if not (_finite(low) and _finite(high)):
        return []
    low, high = min(low, high), max(low, high)
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
        if integer:
            low, high = math.floor(low), math.ceil(high)
    raw_step = (high - low) / max(count - 1, 1)
    if integer:
        raw_step = max(raw_step, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw_step <= m * magnitude * (1 + 1e-9))
    if integer and step != int(step):
        step = math.ceil(step)
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    n = int(round((stop - start) / step))
    return [round(start + i * step, 10) for i in range(n + 1)]


def _decimals(step: float) -> int:
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9:
        decimals += 1
    return decimals


def format_tick(value: float, step: float) -> str:
    """Format a tick value with as many decimals as the step needs, thousands separated."""
    text = f"{value:,.{_decimals(step)}f}"
    return "0" if text.strip("-0.,") == "" else text


def _fmt(value: float) -> str:
    """A coordinate: two decimals are plenty for pixels."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _point_text(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _text_width(text: str, font_px: float = 12) -> float:
    # A rough average glyph width; good enough to lay out a legend without a font engine.
    return len(text) * font_px * 0.6


def _empty(message: str, *, width: int, title: str) -> Svg:
    return Svg(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="40" viewBox="0 0 {width} 40" {FONT} class="chart chart-empty">'
        f'<text x="8" y="24" font-size="13" fill="{MUTED_COLOUR}">{escape(message)}</text></svg>'
    )


def line_chart(series: Sequence[Series], *, title: str, x_label: str = "", y_label: str = "",
               width: int = 720, height: int = 320, x_integer: bool = False,
               y_range: tuple[float, float] | None = None, empty_message: str = "Nothing to chart yet.") -> Svg:
    """Return a line chart: one polyline with point markers per series, axes with ticks, a legend below.

    `y_range` fixes the y axis (e.g. (0, 1) for accuracies); otherwise it spans the data.
    """
    cleaned = _series_clean(series)
    if not cleaned:
        return _empty(empty_message, width=width, title=title)

    xs = [x for _, _, points in cleaned for x, _, _ in points]
    ys = [y for _, _, points in cleaned for _, y, _ in points]
    x_ticks = nice_ticks(min(xs), max(xs), 6, integer=x_integer)
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))), 5)
    if y_range:
        y_ticks = [t for t in y_ticks if y_range[0] - 1e-9 <= t <= y_range[1] + 1e-9] or y_ticks
    y_tick_labels = [format_tick(t, y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0) for t in y_ticks]
    left = 22 + max(_text_width(label, 11) for label in y_tick_labels) + (16 if y_label else 0)
    right, top = 18, 12
    bottom = 30 + (18 if x_label else 0)
    plot = _Plot(left=left, top=top, width=width - left - right, height=height - top - bottom,
                 x_lo=x_ticks[0], x_hi=x_ticks[-1], y_lo=min(y_ticks[0], min(ys)), y_hi=max(y_ticks[-1], max(ys)))
    legend_rows = _legend_rows(cleaned, max_width=width - left)
    total_height = height + 20 * len(legend_rows) + 6

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" width="{width}" '
           f'height="{total_height}" viewBox="0 0 {width} {total_height}" {FONT} class="chart chart-line">',
           f"<title>{escape(title)}</title>"]
    out += _axes_svg(plot, x_ticks=x_ticks, y_ticks=y_ticks, y_tick_labels=y_tick_labels, x_label=x_label,
                     y_label=y_label)
    out += _series_svg(plot, cleaned)
    out += _legend_svg(legend_rows, left=left, y=height + 4)
    out.append("</svg>")
    return Svg("".join(out))


def _series_clean(series: Sequence[Series]) -> list[tuple[str, str, list[tuple[float, float, str]]]]:
    """Return (name, colour, points sorted by x) per series that has a finite point; notes ride with their points."""
    cleaned = []
    for index, one in enumerate(series):
        notes = list(one.notes) + [""] * (len(one.points) - len(one.notes))
        points = sorted(((float(x), float(y), note) for (x, y), note in zip(one.points, notes)
                         if _finite(x) and _finite(y)), key=lambda p: p[0])
        if points:
            cleaned.append((one.name, PALETTE[index % len(PALETTE)], points))
    return cleaned


def _legend_rows(cleaned: list, *, max_width: float) -> list[list[tuple[str, str, float]]]:
    """Return the legend flowed into rows of (name, colour, x offset) no wider than `max_width`."""
    rows: list[list[tuple[str, str, float]]] = [[]]
    row_width = 0.0
    for name, colour, _ in cleaned:
        item_width = 28 + _text_width(name, 12) + 16
        if rows[-1] and row_width + item_width > max_width:
            rows.append([])
            row_width = 0.0
        rows[-1].append((name, colour, row_width))
        row_width += item_width
    return rows


@dataclass(frozen=True)
class _Plot:
    """The plot area in pixels and the data ranges it shows."""

    left: float
    top: float
    width: float
    height: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def sx(self, x: float) -> float:
        return self.left + (x - self.x_lo) / (self.x_hi - self.x_lo or 1) * self.width

    def sy(self, y: float) -> float:
        return self.top + self.height - (y - self.y_lo) / (self.y_hi - self.y_lo or 1) * self.height


def _axes_svg(plot: _Plot, *, x_ticks: list[float], y_ticks: list[float], y_tick_labels: list[str], x_label: str,
              y_label: str) -> list[str]:
    """Return the grid lines, ticks, axis lines and axis labels."""
    left, top, plot_w, plot_h = plot.left, plot.top, plot.width, plot.height
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    out = ['<g class="axis y-axis">']
    for tick, label in zip(y_ticks, y_tick_labels):
        y = _fmt(plot.sy(tick))
        out.append(f'<g class="tick"><line x1="{_fmt(left)}" x2="{_fmt(left + plot_w)}" y1="{y}" y2="{y}" '
                   f'stroke="{GRID_COLOUR}"/><text x="{_fmt(left - 6)}" y="{y}" dy="4" text-anchor="end" '
                   f'font-size="11" fill="{MUTED_COLOUR}">{escape(label)}</text></g>')
    out.append("</g>")
    out.append('<g class="axis x-axis">')
    for tick in x_ticks:
        x = _fmt(plot.sx(tick))
        out.append(f'<g class="tick"><line x1="{x}" x2="{x}" y1="{_fmt(top + plot_h)}" y2="{_fmt(top + plot_h + 5)}" '
                   f'stroke="{MUTED_COLOUR}"/><text x="{x}" y="{_fmt(top + plot_h + 18)}" text-anchor="middle" '
                   f'font-size="11" fill="{MUTED_COLOUR}">{escape(format_tick(tick, x_step))}</text></g>')
    out.append(f'<line x1="{_fmt(left)}" x2="{_fmt(left + plot_w)}" y1="{_fmt(top + plot_h)}" '
               f'y2="{_fmt(top + plot_h)}" stroke="{MUTED_COLOUR}"/>')
    out.append(f'<line x1="{_fmt(left)}" x2="{_fmt(left)}" y1="{_fmt(top)}" y2="{_fmt(top + plot_h)}" '
               f'stroke="{MUTED_COLOUR}"/>')
    out.append("</g>")
    if x_label:
        out.append(f'<text class="axis-label" x="{_fmt(left + plot_w / 2)}" y="{_fmt(top + plot_h + 38)}" '
                   f'text-anchor="middle" font-size="12" fill="{TEXT_COLOUR}">{escape(x_label)}</text>')
    if y_label:
        cy = _fmt(top + plot_h / 2)
        out.append(f'<text class="axis-label" x="12" y="{cy}" transform="rotate(-90 12 {cy})" '
                   f'text-anchor="middle" font-size="12" fill="{TEXT_COLOUR}">{escape(y_label)}</text>')
    return out


def _series_svg(plot: _Plot, cleaned: list) -> list[str]:
    """Return one group per series: its polyline and a marker with a tooltip per point."""
    out = []
    for name, colour, points in cleaned:
        out.append(f'<g class="series" data-series="{escape(name)}">')
        if len(points) > 1:
            coords = " ".join(f"{_fmt(plot.sx(x))},{_fmt(plot.sy(y))}" for x, y, _ in points)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
                       f'stroke-linejoin="round"/>')
        for x, y, note in points:
            tip = f"{name}: {_point_text(x)} → {_point_text(y)}" + (f" ({note})" if note else "")
            out.append(f'<circle class="point" cx="{_fmt(plot.sx(x))}" cy="{_fmt(plot.sy(y))}" r="3.5" '
                       f'fill="{colour}"><title>{escape(tip)}</title></circle>')
        out.append("</g>")
    return out


def _legend_svg(rows: list[list[tuple[str, str, float]]], *, left: float, y: float) -> list[str]:
    """Return the legend group: a line-and-marker swatch and the name per series, row by row."""
    out = [f'<g class="legend" transform="translate({_fmt(left)},{y})">']
    for row_index, row in enumerate(rows):
        for name, colour, offset in row:
            out.append(f'<g class="legend-item" transform="translate({_fmt(offset)},{row_index * 20})">'
                       f'<line x1="0" x2="22" y1="8" y2="8" stroke="{colour}" stroke-width="2"/>'
                       f'<circle cx="11" cy="8" r="3.5" fill="{colour}"/>'
                       f'<text x="28" y="12" font-size="12" fill="{TEXT_COLOUR}">{escape(name)}</text></g>')
    out.append("</g>")
    return out


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(bars: Sequence[Bar], *, title: str, max_value: float | None = None, value_format: str = "{:,.0f}",
              width: int = 720, label_width: int = 300, colour: str = PALETTE[0],
              empty_message: str = "Nothing to chart yet.") -> Svg:
    """Return a horizontal bar chart, one labelled row per bar, scaled to `max_value` (default: the largest)."""
    bars = [bar for bar in bars if _finite(bar.value)]
    if not bars:
        return _empty(empty_message, width=width, title=title)
    top = max_value if max_value and max_value > 0 else max(max(bar.value for bar in bars), 0) or 1.0
    row_h = 24
    track_x = label_width + 8
    track_w = width - track_x - 110
    label_chars = int(label_width / (12 * 0.6))
    height = row_h * len(bars) + 4
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" {FONT} class="chart chart-bar">',
           f"<title>{escape(title)}</title>"]
    for index, bar in enumerate(bars):
        length = max(0.0, min(bar.value / top, 1.0)) * track_w
        value_text = value_format.format(bar.value)
        tip = f"{bar.title or bar.label}: {value_text}" + (f" {bar.note}" if bar.note else "")
        out.append(f'<g class="bar" transform="translate(0,{index * row_h})"><title>{escape(tip)}</title>'
                   f'<text x="{label_width}" y="16" text-anchor="end" font-size="12" fill="{TEXT_COLOUR}">'
                   f"{escape(_truncate(bar.label, label_chars))}</text>"
                   f'<rect class="bar-track" x="{track_x}" y="4" width="{track_w}" height="16" fill="#eef1f7"/>'
                   f'<rect class="bar-value" x="{track_x}" y="4" width="{_fmt(length)}" height="16" fill="{colour}"/>'
                   f'<text x="{track_x + track_w + 6}" y="16" font-size="12" fill="{TEXT_COLOUR}">'
                   f"{escape(value_text)}"
                   + (f' <tspan fill="{MUTED_COLOUR}">{escape(bar.note)}</tspan>' if bar.note else "")
                   + "</text></g>")
    out.append("</svg>")
    return Svg("".join(out))
