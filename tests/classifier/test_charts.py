"""Server-side SVG charts: valid SVG with the right number of points, lines, bars and legend entries."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from classifier.charts import Bar, Series, bar_chart, format_tick, line_chart, nice_ticks

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def _by_class(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if css_class in (e.get("class") or "").split()]


def test_line_chart_draws_one_marker_per_point_and_one_line_per_series():
    svg = line_chart([Series("random", [(100, 0.5), (200, 0.6), (300, 0.7)]),
                      Series("margin", [(100, 0.55), (200, 0.68)]),
                      Series("single", [(150, 0.4)])],
                     title="accuracy", x_label="labels", y_label="accuracy", x_integer=True, y_range=(0, 1))

    root = _parse(svg)
    groups = _by_class(root, "g", "series")
    assert [g.get("data-series") for g in groups] == ["random", "margin", "single"]
    assert [len(g.findall(f"{NS}circle")) for g in groups] == [3, 2, 1]
    assert [len(g.findall(f"{NS}polyline")) for g in groups] == [1, 1, 0]
    assert len(groups[0].find(f"{NS}polyline").get("points").split()) == 3
    assert len(_by_class(root, "g", "legend-item")) == 3
    assert svg.__html__() == str(svg)


def test_line_chart_has_axes_with_ticks_and_labels():
    root = _parse(line_chart([Series("loss", [(1, 2.0), (2, 1.2), (3, 0.9)])], title="loss",
                             x_label="epoch", y_label="loss", x_integer=True))

    x_axis, = _by_class(root, "g", "x-axis")
    y_axis, = _by_class(root, "g", "y-axis")
    x_ticks = [t.find(f"{NS}text").text for t in _by_class(x_axis, "g", "tick")]
    assert x_ticks == ["1", "2", "3"]
    assert len(_by_class(y_axis, "g", "tick")) >= 3
    assert {e.text for e in _by_class(root, "text", "axis-label")} == {"epoch", "loss"}


def test_points_lower_on_the_y_axis_are_drawn_lower():
    root = _parse(line_chart([Series("a", [(1, 0.2), (2, 0.9)])], title="t"))

    low, high = _by_class(root, "circle", "point")
    assert float(low.get("cy")) > float(high.get("cy"))
    assert float(low.get("cx")) < float(high.get("cx"))


def test_line_chart_skips_missing_and_non_finite_values():
    root = _parse(line_chart([Series("a", [(1, 0.5), (2, None), (3, math.nan), (4, 0.6)]),
                              Series("empty", [(1, None)])], title="t"))

    groups = _by_class(root, "g", "series")
    assert len(groups) == 1 and len(groups[0].findall(f"{NS}circle")) == 2


def test_an_empty_chart_says_so():
    root = _parse(line_chart([], title="nothing", empty_message="No runs yet."))

    assert "No runs yet." in "".join(root.itertext())
    assert _parse(bar_chart([], title="none")).get("class") == "chart chart-empty"


def test_bar_chart_draws_one_bar_per_value_scaled_to_the_largest():
    root = _parse(bar_chart([Bar("Shirts → Tshirts", 10, note="n=10"), Bar("Jeans → Trousers", 5),
                             Bar("Caps → Hats", 0)], title="confused"))

    bars = _by_class(root, "g", "bar")
    assert len(bars) == 3
    widths = [float(_by_class(bar, "rect", "bar-value")[0].get("width")) for bar in bars]
    track = float(_by_class(bars[0], "rect", "bar-track")[0].get("width"))
    assert widths == [track, track / 2, 0.0]
    assert "Shirts → Tshirts" in "".join(bars[0].itertext())


def test_bar_chart_escapes_labels_and_truncates_long_ones():
    svg = bar_chart([Bar('<script>"&', 1), Bar("x" * 200, 2, title="the full name")], title="a < b")

    root = _parse(svg)
    assert "<script>" not in svg and root.get("aria-label") == "a < b"
    long_label = _by_class(root, "g", "bar")[1]
    assert "the full name" in long_label.find(f"{NS}title").text
    assert max(len(t.text or "") for t in long_label.iter(f"{NS}text")) < 100


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    ticks = nice_ticks(0.61, 0.83)
    assert ticks[0] <= 0.61 and ticks[-1] >= 0.83
    assert nice_ticks(3, 3, integer=True) == [2, 3, 4]
    assert all(float(t).is_integer() for t in nice_ticks(1, 7, 6, integer=True))
    assert nice_ticks(math.nan, 1) == []


def test_tick_labels_use_the_steps_decimals():
    assert format_tick(0.25, 0.25) == "0.25"
    assert format_tick(1500.0, 500) == "1,500"
    assert format_tick(-0.0, 0.1) == "0"
