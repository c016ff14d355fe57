"""backoffice.charts: round ticks, Decimal formatting, time axes, and SVG that
is well-formed, accessible, escaped and free of scripts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal

import pytest

from backoffice.charts import (
    NEGATIVE,
    POSITIVE,
    bar_chart,
    date_ticks,
    decimal_places,
    format_compact,
    format_decimal,
    line_chart,
    nice_step,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
D = Decimal


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))  # noqa: S314 - our own markup; raises unless well-formed
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


# --- Numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "step"),
    [
        ("0.013", "0.02"),
        ("1", "1"),
        ("1.01", "2"),
        ("2.2", "2.5"),
        ("3", "5"),
        ("7", "10"),
        ("240", "250"),
        ("99999", "100000"),
    ],
)
def test_nice_step(raw, step):
    assert nice_step(D(raw)) == D(step)


def test_nice_ticks_cover_the_range_with_round_steps():
    ticks = nice_ticks(D("-123.4"), D("987.6"))
    assert ticks == [D(v) for v in (-250, 0, 250, 500, 750, 1000)]
    assert all(t.as_tuple().exponent >= 0 for t in ticks)  # "250", never "2.5E+2"
    small = nice_ticks(D("0.013"), D("0.087"), 4)
    assert small[0] <= D("0.013") and small[-1] >= D("0.087")
    assert small == [D("0"), D("0.02"), D("0.04"), D("0.06"), D("0.08"), D("0.1")]


def test_nice_ticks_of_an_empty_range_are_widened():
    assert nice_ticks(0, 0) == [D(-1), D("-0.5"), D(0), D("0.5"), D(1)]
    ticks = nice_ticks(D(5), D(5))
    assert ticks[0] < 5 < ticks[-1]
    assert nice_ticks(D(10), D(-10)) == nice_ticks(D(-10), D(10))  # either order


def test_formatting_is_exact_and_never_scientific():
    assert format_decimal(D("1234.5"), 2) == "1,234.50"
    assert format_decimal(D("-0.00000001")) == "\u22120.00000001"
    assert format_decimal(D("12"), signed=True) == "+12"
    assert format_decimal(D("0"), signed=True) == "0"
    assert format_decimal(D("2.675"), 2) == "2.68"  # half-even on the decimal, not 2.67 (float)
    assert format_decimal(D("1E+3")) == "1,000"
    assert decimal_places(D("2.5")) == 1 and decimal_places(D("250")) == 0
    assert format_compact(D(12500), D(2500)) == "12.5k"
    assert format_compact(D(-3_000_000), D(1_000_000)) == "\u22123M"
    assert format_compact(D("0.5"), D("0.25")) == "0.50"
    assert format_compact(D(750), D(250)) == "750"


def test_floats_are_refused():
    with pytest.raises(TypeError):
        nice_ticks(0.1, 0.3)
    with pytest.raises(TypeError):
        line_chart([(date(2025, 1, 1), 0.1)], title="x")


# --- Time axis -----------------------------------------------------------------------


def test_date_ticks_pick_days_weeks_months_or_years():
    days = date_ticks(date(2025, 3, 5), date(2025, 3, 8), 8)
    assert [label for _, label in days] == ["5 Mar", "6 Mar", "7 Mar", "8 Mar"]
    weeks = date_ticks(date(2025, 1, 1), date(2025, 1, 30), 6)
    assert [d for d, _ in weeks] == [
        date(2025, 1, 6),
        date(2025, 1, 13),
        date(2025, 1, 20),
        date(2025, 1, 27),
    ]
    assert all(d.weekday() == 0 for d, _ in weeks)
    months = date_ticks(date(2024, 11, 15), date(2025, 10, 31), 6)
    assert [label for _, label in months] == ["Jan 2025", "Mar", "May", "Jul", "Sep"]
    assert date_ticks(date(2015, 3, 5), date(2025, 3, 8), 5) == [
        (date(2020, 1, 1), "2020"),
        (date(2025, 1, 1), "2025"),
    ]
    for start, end, most in [
        (date(2020, 1, 1), date(2025, 6, 1), 4),
        (date(2025, 1, 1), date(2025, 12, 31), 3),
    ]:
        ticks = date_ticks(start, end, most)
        assert 1 <= len(ticks) <= most and all(start <= d <= end for d, _ in ticks)


# --- Line chart ----------------------------------------------------------------------


def _series(values: list[str]) -> list[tuple[date, Decimal]]:
    start = date(2025, 1, 1)
    return [(start + timedelta(days=i * 7), D(v)) for i, v in enumerate(values)]


def test_line_chart_is_accessible_responsive_svg():
    svg = line_chart(_series(["10", "25.5", "18"]), title="Equity, USD", width=600, height=240)
    root = parse(svg)
    assert root.get("role") == "img" and root.get("width") == "100%"
    assert root.get("viewBox") == "0 0 600 240"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title.text == "Equity, USD"
    assert "3 points" in desc.text and "highest 25.5" in desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert not list(root.iter(f"{SVG}script")) and "<script" not in svg
    assert "href" not in svg and "@import" not in svg and "url(" not in svg  # nothing external
    assert len(list(root.iter(f"{SVG}polyline"))) == 1
    assert len(list(root.iter(f"{SVG}circle"))) == 3  # dots with tooltips
    labels = texts(root)
    # The y axis from zero, round ticks, drawn a little beyond the data (25.5), not to 30.
    assert {"0", "10", "20"} <= set(labels) and "30" not in labels
    assert "6 Jan" in labels and "13 Jan" in labels  # Mondays over two weeks


def test_line_chart_scales_into_the_drawing():
    svg = str(line_chart(_series(["0", "100"]), title="t", width=500, height=200, area=False))
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    (x0, y0), (x1, y1) = ([float(n) for n in p.split(",")] for p in points)
    assert 0 < x0 < x1 <= 500 and 0 <= y1 < y0 <= 200  # up is smaller y
    assert "<path" not in svg  # area=False


def test_line_chart_with_negative_values_draws_the_zero_line():
    root = parse(line_chart(_series(["-40", "15", "-5"]), title="t", height=280))
    ys = [float(p.split(",")[1]) for p in root.find(f"{SVG}polyline").get("points").split()]
    assert min(ys) > 0 and max(ys) < 280 - 20  # every point inside the plot
    labels = texts(root)
    assert "\u221240" in labels and "\u221220" in labels and "0" in labels
    axis_lines = [
        line
        for line in root.iter(f"{SVG}line")
        if line.get("stroke") == "#8a93a3" and line.get("y1") == line.get("y2")
    ]
    assert len(axis_lines) == 2  # the zero line and the time axis


def test_line_chart_of_one_point_draws_a_dot():
    root = parse(line_chart([(date(2025, 5, 1), D("12.5"))], title="t"))
    assert not list(root.iter(f"{SVG}polyline"))
    (dot,) = root.iter(f"{SVG}circle")
    assert dot.find(f"{SVG}title").text == "1 May 2025: 12.5"
    assert root.find(f"{SVG}desc").text == "One point: 12.5 on 1 May 2025."


def test_empty_charts_say_so():
    for svg in (line_chart([], title="Equity"), bar_chart([], title="Volume")):
        root = parse(svg)
        assert root.get("role") == "img"
        assert "No data" in texts(root)
        assert root.find(f"{SVG}title").text in ("Equity", "Volume")


def test_many_points_have_no_dots():
    start = date(2024, 1, 1)
    series = [(start + timedelta(days=i), D(i % 17) - 8) for i in range(400)]
    root = parse(line_chart(series, title="t"))
    assert not list(root.iter(f"{SVG}circle"))
    assert len(list(root.iter(f"{SVG}polyline"))) == 1


def test_labels_are_escaped():
    hostile = "<script>alert(\"x\")</script> & 'q'"
    svg = str(line_chart(_series(["1", "2"]), title=hostile, desc=hostile))
    root = parse(svg)
    assert root.find(f"{SVG}title").text == hostile
    assert "<script>" not in svg
    svg = str(bar_chart([(hostile, D(5)), ("ok", D(-2))], title=hostile))
    root = parse(svg)
    assert "<script>" not in svg
    assert any(hostile in (t.text or "") for t in root.iter(f"{SVG}title"))


def test_value_format_is_used_for_tooltips():
    svg = line_chart(_series(["1.5"]), title="t", value_format=lambda v: f"{v} USD")
    assert "1 Jan 2025: 1.5 USD" in str(svg)


# --- Bar chart -----------------------------------------------------------------------


def test_bars_are_coloured_by_sign_and_labelled():
    root = parse(bar_chart([("EURUSD", D("38.00")), ("GBPUSD", D("-55.00"))], title="Result"))
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert fills == [POSITIVE, NEGATIVE]
    labels = texts(root)
    assert "EURUSD" in labels and "GBPUSD" in labels
    assert "38.00" in labels and "\u221255.00" in labels
    assert root.find(f"{SVG}desc").text == "EURUSD: 38.00; GBPUSD: \u221255.00."


def test_bar_lengths_follow_the_values():
    root = parse(bar_chart([("a", D(100)), ("b", D(50)), ("c", D(0))], title="t", width=600))
    widths = [float(r.get("width")) for r in root.iter(f"{SVG}rect")]
    assert widths[0] == pytest.approx(2 * widths[1], rel=0.01)
    assert widths[2] <= 1  # zero: a hairline


def test_unsigned_bars_share_one_colour():
    root = parse(
        bar_chart([("a", D(1)), ("b", D(-1))], title="t", signed_colors=False, color="#123456")
    )
    assert {r.get("fill") for r in root.iter(f"{SVG}rect")} == {"#123456"}


def test_long_labels_are_shortened_with_the_full_text_in_a_tooltip():
    label = "A very long instrument name indeed, far too long for the column"
    root = parse(bar_chart([(label, D(3))], title="t", width=360))
    shown = texts(root)
    assert label not in shown and any(t.endswith("\u2026") for t in shown)
    assert any(label in (t.text or "") for t in root.iter(f"{SVG}title"))


def test_horizontal_bar_chart_grows_with_its_rows():
    few = parse(bar_chart([("a", D(1))], title="t"))
    many = parse(bar_chart([(str(i), D(i)) for i in range(10)], title="t"))
    height = lambda root: float(root.get("viewBox").split()[3])  # noqa: E731
    assert height(many) > height(few)


def test_vertical_bars():
    root = parse(
        bar_chart(
            [("Jan", D(10)), ("Feb", D(-4)), ("Mar", D(6))], title="t", horizontal=False, height=220
        )
    )
    assert root.get("viewBox") == "0 0 720 220"
    rects = list(root.iter(f"{SVG}rect"))
    assert [r.get("fill") for r in rects] == [POSITIVE, NEGATIVE, POSITIVE]
    xs = [float(r.get("x")) for r in rects]
    assert xs == sorted(xs)
    assert {"Jan", "Feb", "Mar", "10", "\u22124"} <= set(texts(root))


def test_charts_are_deterministic():
    series = _series(["1", "3"])
    assert line_chart(series, title="t") == line_chart(series, title="t")
    # The narrow and the wide drawing of one chart have different ids.
    assert 'id="' in line_chart(series, title="t", width=360)
    ident = re.compile(r'<title id="([^"]+)"')
    assert ident.search(line_chart(series, title="t", width=360)).group(1) != ident.search(
        line_chart(series, title="t", width=760)
    ).group(1)
