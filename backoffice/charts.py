"""Small SVG charts rendered on the server: a line (or area) chart of a time
series and a bar chart with positive and negative colouring.

Each function returns a ``SafeString`` of self-contained SVG markup:

- ``role="img"`` with a ``<title>`` and a ``<desc>`` that screen readers read;
- a ``viewBox`` and ``width="100%"``, so the chart scales to its container
  (pages pick a narrow and a wide rendering for phones and desktops);
- colours and fonts as presentation attributes, no CSS classes needed, no
  JavaScript, no external fonts: the same markup goes into a WeasyPrint PDF;
- axis labels on "nice" round ticks (1, 2, 2.5 or 5 times a power of ten;
  days, weeks, months or years on a time axis) with gridlines.

Values are ``Decimal`` (or ``int``) and every number shown is formatted from
the ``Decimal``; float is used only for pixel coordinates. Labels are
escaped here: callers pass plain text.

    from backoffice.charts import bar_chart, line_chart
    svg = line_chart([(date(2025, 3, 1), Decimal("12.50")), ...], title="Equity")
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Number = Decimal | int
Formatter = Callable[[Decimal], str]

MINUS = "\u2212"  # a real minus sign, as wide as the plus
ELLIPSIS = "\u2026"

# Colours of app.css, written out so that the SVG needs no stylesheet.
LINE = "#1f4fd1"
POSITIVE = "#1b873f"
NEGATIVE = "#c62828"
NEUTRAL = "#1f4fd1"
GRID = "#e3e7ee"
AXIS = "#8a93a3"
TEXT = "#5b6577"
STRONG = "#1b2330"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
FONT_SIZE = 13
# Advances of characters in font sizes, generous for the widest common
# fonts (DejaVu Sans): used to make room for labels, never to place them.
CHAR_WIDTH = 0.6
_WIDTHS = {"upper": 0.74, "digit": 0.64, "lower": 0.6, "narrow": 0.34}
_NARROW = set(" .,:;'!|il()[]-\u2212")

_NICE_FRACTIONS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- Numbers -------------------------------------------------------------------------


def _dec(value: Number) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise TypeError(f"chart values are Decimal or int, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never with a positive exponent
    (``Decimal("2.5E+2")`` → ``Decimal("250")``)."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value


def nice_step(raw: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least ``raw`` (> 0)."""
    raw = _dec(raw)
    if raw <= 0:
        raise ValueError("a step must be positive")
    power = Decimal(1).scaleb(raw.adjusted())  # 10^floor(log10(raw))
    for fraction in _NICE_FRACTIONS:
        step = fraction * power
        if step >= raw:
            return _plain(step)
    return _plain(10 * power)  # pragma: no cover - 10 × power always fits


def nice_ticks(low: Number, high: Number, count: int = 5) -> list[Decimal]:
    """Round tick values covering [low, high] in about ``count`` intervals.

    The first tick is at or below ``low``, the last at or above ``high``; an
    empty range (low == high) is widened around its value."""
    low, high = _dec(low), _dec(high)
    if low > high:
        low, high = high, low
    if low == high:
        pad = abs(low) / 10 if low else Decimal(1)
        low, high = low - pad, high + pad
    step = nice_step((high - low) / max(count, 1))
    first = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    last = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    ticks = []
    value = first
    while value <= last:
        ticks.append(_plain(value) if value else Decimal(0))
        value += step
    return ticks


def decimal_places(step: Decimal) -> int:
    """How many decimals show a multiple of ``step`` exactly (2.5 → 1)."""
    exponent = _dec(step).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def format_decimal(value: Number, places: int | None = None, *, signed: bool = False) -> str:
    """``1234.5`` → ``1,234.50`` (with ``places=2``): grouped thousands, a
    real minus sign, a plus when ``signed``, never scientific notation."""
    value = _dec(value)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = format(abs(value), ",f")
    if value < 0:
        return MINUS + text
    if signed and value > 0:
        return "+" + text
    return text


def format_compact(value: Number, step: Number | None = None) -> str:
    """An axis label: ``12,500`` → ``12.5k``, ``3,000,000`` → ``3M``, with as
    many decimals as the tick ``step`` needs."""
    value = _dec(value)
    step = _dec(step) if step else None
    for divisor, suffix in ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(1000), "k")):
        if abs(value) >= divisor and (step is None or step >= divisor / 10):
            places = decimal_places(step / divisor) if step else 1
            scaled = (value / divisor).quantize(Decimal(1).scaleb(-places))
            return format_decimal(_plain(scaled)) + suffix  # "1k", not "1.0k"
    return format_decimal(value, decimal_places(step) if step else None)


# --- Time axis -----------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def date_ticks(start: date, end: date, max_ticks: int = 6) -> list[tuple[date, str]]:
    """Round dates between ``start`` and ``end`` (inclusive) with labels:
    days, weeks (Mondays), months or years, the finest that fits ``max_ticks``."""
    if end < start:
        start, end = end, start
    max_ticks = max(max_ticks, 2)
    span = (end - start).days
    for days in (1, 2, 7, 14):
        if span // days + 1 <= max_ticks:
            first = start
            if days >= 7:  # Mondays (and every other one)
                first = start + timedelta(days=(7 - start.weekday()) % 7)
            ticks = []
            day = first
            while day <= end:
                ticks.append(day)
                day += timedelta(days=days)
            return [(d, f"{d.day} {_MONTHS[d.month - 1]}") for d in ticks]
    months_span = (end.year - start.year) * 12 + end.month - start.month
    for months in (1, 2, 3, 6):
        if months_span // months + 1 <= max_ticks:
            day = date(start.year, start.month, 1)
            if day < start:
                day = _add_months(day, 1)
            while (day.month - 1) % months:
                day = _add_months(day, 1)
            ticks = []
            while day <= end:
                ticks.append(day)
                day = _add_months(day, months)
            labels = []
            for i, d in enumerate(ticks):
                with_year = i == 0 or d.month == 1 or len(ticks) <= 3
                labels.append(
                    f"{_MONTHS[d.month - 1]} {d.year}" if with_year else _MONTHS[d.month - 1]
                )
            return list(zip(ticks, labels, strict=True))
    years = 1
    while (end.year - start.year) // years + 1 > max_ticks:
        years = {1: 2, 2: 5}.get(years, years * 2)
    year = start.year if start == date(start.year, 1, 1) else start.year + 1
    year += (-year) % years
    return [(date(y, 1, 1), str(y)) for y in range(year, end.year + 1, years)]


def format_day(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


# --- SVG helpers ---------------------------------------------------------------------


def _px(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _char_width(char: str) -> float:
    if char in _NARROW:
        return _WIDTHS["narrow"]
    if char.isdigit():
        return _WIDTHS["digit"]
    if char.islower():
        return _WIDTHS["lower"]
    return _WIDTHS["upper"]


def _text_width(text: str, size: float = FONT_SIZE) -> float:
    return sum(_char_width(c) for c in text) * size


def _truncate(text: str, max_width: float, size: float = FONT_SIZE) -> str:
    if _text_width(text, size) <= max_width + 0.5:  # float sums of the same widths
        return text
    room = max_width - _text_width(ELLIPSIS, size)
    kept = ""
    for char in text:
        if _text_width(kept + char, size) > room:
            break
        kept += char
    return (kept or text[:1]) + ELLIPSIS


def _ident(kind: str, title: str, width: int, extra: str) -> str:
    digest = hashlib.blake2s(f"{kind}|{title}|{width}|{extra}".encode(), digest_size=4)
    return f"chart-{digest.hexdigest()}"


def _svg_open(ident: str, kind: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="{FONT}" font-size="{FONT_SIZE}" fill="{TEXT}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
    ]


def _empty(ident: str, kind: str, width: int, height: int, title: str, desc: str) -> SafeString:
    parts = _svg_open(ident, kind, width, height, title, desc or "No data.")
    parts.append(
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" '
        f'fill="none" stroke="{GRID}"/>'
    )
    parts.append(
        f'<text x="{_px(width / 2)}" y="{_px(height / 2)}" text-anchor="middle" '
        f'dominant-baseline="middle">No data</text>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def _domain(
    low: Decimal, high: Decimal, count: int, *, pad_low: bool = True, pad_high: bool = True
) -> tuple[Decimal, Decimal, list[Decimal], Decimal]:
    """The drawn range and the round ticks inside it: the data's range with
    a little room (5 %) on the padded sides, but no further than the round
    tick beyond it, so that a range of −100 … 2,900 is not drawn down to −1,000."""
    ticks = nice_ticks(low, high, count)
    step = ticks[1] - ticks[0]
    if low == high:
        return ticks[0], ticks[-1], ticks, step
    pad = (high - low) / 20
    lo = max(ticks[0], low - pad) if pad_low else low
    hi = min(ticks[-1], high + pad) if pad_high else high
    return lo, hi, [t for t in ticks if lo <= t <= hi], step


@dataclass(frozen=True)
class _Scale:
    """Maps [low, high] to pixels [start, end]. Pixel positions are the one
    place where values become float: nothing computed here is shown as a number."""

    low: Decimal
    high: Decimal
    start: float
    end: float

    def __call__(self, value: Decimal | int) -> float:
        if self.high == self.low:
            return (self.start + self.end) / 2
        share = (float(value) - float(self.low)) / float(self.high - self.low)
        return self.start + share * (self.end - self.start)


def _tick_labels(ticks: list[Decimal], step: Decimal, formatter: Formatter | None) -> list[str]:
    if formatter is not None:
        return [formatter(t) for t in ticks]
    return [format_compact(t, step) for t in ticks]


# --- Line chart ----------------------------------------------------------------------


def line_chart(
    points: Sequence[tuple[date, Number]],
    *,
    title: str,
    desc: str = "",
    width: int = 720,
    height: int = 280,
    value_format: Formatter | None = None,
    tick_format: Formatter | None = None,
    area: bool = True,
    include_zero: bool = True,
    color: str = LINE,
    markers: int = 60,
) -> SafeString:
    """A time series as a line (with the area to zero shaded when ``area``).

    ``points`` are (date, value) pairs in any order. ``value_format`` formats
    the values in point tooltips and the description; ``tick_format`` the y
    axis (compact by default: 12.5k). Points are drawn as dots with a tooltip
    when there are at most ``markers`` of them."""
    ident = _ident("line", title, width, desc)
    series = sorted((day, _dec(value)) for day, value in points)
    if not series:
        return _empty(ident, "line", width, height, title, desc)
    fmt = value_format or (lambda v: format_decimal(v))
    values = [v for _, v in series]
    low, high = min(values), max(values)
    if include_zero:
        low, high = min(low, Decimal(0)), max(high, Decimal(0))
    y_low, y_high, y_ticks, y_step = _domain(
        low,
        high,
        max(3, min(6, (height - 40) // 45)),
        pad_low=low < 0 or not include_zero,
        pad_high=high > 0 or not include_zero,
    )
    y_labels = _tick_labels(y_ticks, y_step, tick_format)
    left = max(_text_width(label) for label in y_labels) + 10
    right, top, bottom = 14.0, 12.0, 26.0
    plot_w, plot_h = width - left - right, height - top - bottom

    first_day, last_day = series[0][0], series[-1][0]
    if first_day == last_day:  # one day: centre it in a three-day window
        first_day, last_day = first_day - timedelta(days=1), last_day + timedelta(days=1)
    x_scale = _Scale(
        Decimal(first_day.toordinal()), Decimal(last_day.toordinal()), left, left + plot_w
    )
    y_scale = _Scale(y_low, y_high, top + plot_h, top)

    def x_of(day: date) -> float:
        return x_scale(day.toordinal())

    parts = _svg_open(ident, "line", width, height, title, desc or _line_desc(series, fmt))
    # Gridlines and the y axis labels.
    parts.append(f'<g stroke="{GRID}" stroke-width="1">')
    for tick in y_ticks:
        y = _px(y_scale(tick))
        parts.append(f'<line x1="{_px(left)}" x2="{_px(left + plot_w)}" y1="{y}" y2="{y}"/>')
    parts.append("</g>")
    parts.append('<g text-anchor="end" dominant-baseline="middle">')
    for tick, label in zip(y_ticks, y_labels, strict=True):
        parts.append(f'<text x="{_px(left - 6)}" y="{_px(y_scale(tick))}">{escape(label)}</text>')
    parts.append("</g>")
    if y_low < 0 < y_high:
        y0 = _px(y_scale(Decimal(0)))
        parts.append(
            f'<line x1="{_px(left)}" x2="{_px(left + plot_w)}" y1="{y0}" y2="{y0}" '
            f'stroke="{AXIS}" stroke-width="1"/>'
        )
    # The time axis.
    max_ticks = max(2, int(plot_w // 70))
    x_ticks = date_ticks(first_day, last_day, max_ticks)
    base_y = top + plot_h
    parts.append(
        f'<line x1="{_px(left)}" x2="{_px(left + plot_w)}" y1="{_px(base_y)}" '
        f'y2="{_px(base_y)}" stroke="{AXIS}" stroke-width="1"/>'
    )
    parts.append('<g text-anchor="middle">')
    for day, label in x_ticks:
        x = x_of(day)
        anchor = ""
        if x - _text_width(label) / 2 < 0:
            anchor = ' text-anchor="start"'
        elif x + _text_width(label) / 2 > width:
            anchor = ' text-anchor="end"'
        parts.append(
            f'<line x1="{_px(x)}" x2="{_px(x)}" y1="{_px(base_y)}" y2="{_px(base_y + 4)}" '
            f'stroke="{AXIS}"/>'
            f'<text x="{_px(x)}" y="{_px(base_y + 17)}"{anchor}>{escape(label)}</text>'
        )
    parts.append("</g>")
    # The series.
    coords = [(x_of(day), y_scale(value)) for day, value in series]
    line = " ".join(f"{_px(x)},{_px(y)}" for x, y in coords)
    if area and len(coords) > 1:
        zero = min(max(Decimal(0), y_low), y_high)
        y0 = _px(y_scale(zero))
        parts.append(
            f'<path d="M{_px(coords[0][0])},{y0} L{line.replace(" ", " L")} '
            f'L{_px(coords[-1][0])},{y0} Z" fill="{color}" fill-opacity="0.12" stroke="none"/>'
        )
    if len(coords) > 1:
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2" '
            f'stroke-linejoin="round" stroke-linecap="round"/>'
        )
    if len(coords) <= markers:
        parts.append(f'<g fill="{color}">')
        for (day, value), (x, y) in zip(series, coords, strict=True):
            tip = escape(f"{format_day(day)}: {fmt(value)}")
            parts.append(f'<circle cx="{_px(x)}" cy="{_px(y)}" r="3"><title>{tip}</title></circle>')
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def _line_desc(series: list[tuple[date, Decimal]], fmt: Formatter) -> str:
    (first_day, first), (last_day, last) = series[0], series[-1]
    if len(series) == 1:
        return f"One point: {fmt(first)} on {format_day(first_day)}."
    low = min(series, key=lambda p: p[1])
    high = max(series, key=lambda p: p[1])
    return (
        f"{len(series)} points from {format_day(first_day)} ({fmt(first)}) to "
        f"{format_day(last_day)} ({fmt(last)}); lowest {fmt(low[1])} on {format_day(low[0])}, "
        f"highest {fmt(high[1])} on {format_day(high[0])}."
    )


# --- Bar chart -----------------------------------------------------------------------


def bar_chart(
    bars: Sequence[tuple[str, Number]],
    *,
    title: str,
    desc: str = "",
    width: int = 720,
    horizontal: bool = True,
    height: int | None = None,
    value_format: Formatter | None = None,
    tick_format: Formatter | None = None,
    signed_colors: bool = True,
    color: str = NEUTRAL,
) -> SafeString:
    """Labelled bars, each with its value written at its end.

    With ``signed_colors`` positive bars are green and negative ones red;
    otherwise every bar has ``color``. Horizontal bars grow the chart's
    height with their number (``height`` is for vertical charts)."""
    ident = _ident("bar", title, width, desc + str(horizontal))
    items = [(str(label), _dec(value)) for label, value in bars]
    fmt = value_format or (lambda v: format_decimal(v))
    if not items:
        return _empty(ident, "bar", width, height or 120, title, desc)
    desc = desc or "; ".join(f"{label}: {fmt(value)}" for label, value in items) + "."

    def fill(value: Decimal) -> str:
        if not signed_colors:
            return color
        return NEGATIVE if value < 0 else POSITIVE

    if horizontal:
        return _bars_horizontal(ident, items, title, desc, width, fmt, tick_format, fill)
    return _bars_vertical(ident, items, title, desc, width, height or 280, fmt, tick_format, fill)


def _bar_domain(
    items: list[tuple[str, Decimal]], count: int
) -> tuple[Decimal, Decimal, list[Decimal], Decimal]:
    """Bars start at zero: the range is padded only away from it."""
    low = min(min(v for _, v in items), Decimal(0))
    high = max(max(v for _, v in items), Decimal(0))
    return _domain(low, high, count, pad_low=low < 0, pad_high=high > 0)


def _bars_horizontal(ident, items, title, desc, width, fmt, tick_format, fill) -> SafeString:
    row, bar, top, bottom = 30.0, 18.0, 6.0, 24.0
    height = int(top + row * len(items) + bottom)
    value_texts = [fmt(v) for _, v in items]
    value_room = max(_text_width(t) for t in value_texts) + 8
    label_room = min(max(_text_width(label) for label, _ in items) + 10, width * 0.3)
    has_negative = any(v < 0 for _, v in items)
    has_positive = any(v > 0 for _, v in items)
    plot_left = label_room + (value_room if has_negative else 4)
    plot_right = width - (value_room if has_positive or not has_negative else 8)
    low, high, ticks, step = _bar_domain(items, max(3, min(6, int((plot_right - plot_left) // 45))))
    tick_labels = _tick_labels(ticks, step, tick_format)
    scale = _Scale(low, high, plot_left, plot_right)
    plot_bottom = top + row * len(items)

    parts = _svg_open(ident, "bar", width, height, title, desc)
    parts.append(f'<g stroke="{GRID}" stroke-width="1">')
    for tick in ticks:
        x = _px(scale(tick))
        parts.append(f'<line x1="{x}" x2="{x}" y1="{_px(top)}" y2="{_px(plot_bottom)}"/>')
    parts.append("</g>")
    parts.append('<g text-anchor="middle">')
    for tick, label in zip(ticks, tick_labels, strict=True):
        parts.append(
            f'<text x="{_px(scale(tick))}" y="{_px(plot_bottom + 16)}">{escape(label)}</text>'
        )
    parts.append("</g>")
    x0 = scale(Decimal(0))
    for i, ((label, value), text) in enumerate(zip(items, value_texts, strict=True)):
        y = top + row * i + (row - bar) / 2
        middle = _px(y + bar / 2)
        x = scale(value)
        left, right = min(x0, x), max(x0, x)
        shown = _truncate(label, label_room - 10)
        parts.append(
            f"<g><title>{escape(f'{label}: {text}')}</title>"
            f'<text x="{_px(label_room - 8)}" y="{middle}" text-anchor="end" '
            f'dominant-baseline="middle" fill="{STRONG}">{escape(shown)}</text>'
            f'<rect x="{_px(left)}" y="{_px(y)}" width="{_px(max(right - left, 1))}" '
            f'height="{_px(bar)}" rx="2" fill="{fill(value)}"/>'
        )
        if value < 0:
            parts.append(
                f'<text x="{_px(left - 4)}" y="{middle}" text-anchor="end" '
                f'dominant-baseline="middle">{escape(text)}</text></g>'
            )
        else:
            parts.append(
                f'<text x="{_px(right + 4)}" y="{middle}" '
                f'dominant-baseline="middle">{escape(text)}</text></g>'
            )
    parts.append(
        f'<line x1="{_px(x0)}" x2="{_px(x0)}" y1="{_px(top)}" y2="{_px(plot_bottom)}" '
        f'stroke="{AXIS}" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def _bars_vertical(ident, items, title, desc, width, height, fmt, tick_format, fill) -> SafeString:
    low, high, ticks, step = _bar_domain(items, max(3, min(6, (height - 60) // 45)))
    tick_labels = _tick_labels(ticks, step, tick_format)
    left = max(_text_width(label) for label in tick_labels) + 10
    right, top, bottom = 8.0, 18.0, 26.0
    plot_w, plot_h = width - left - right, height - top - bottom
    scale = _Scale(low, high, top + plot_h, top)
    slot = plot_w / len(items)
    bar = min(slot * 0.7, 48.0)

    parts = _svg_open(ident, "bar", width, height, title, desc)
    parts.append(f'<g stroke="{GRID}" stroke-width="1">')
    for tick in ticks:
        y = _px(scale(tick))
        parts.append(f'<line x1="{_px(left)}" x2="{_px(left + plot_w)}" y1="{y}" y2="{y}"/>')
    parts.append("</g>")
    parts.append('<g text-anchor="end" dominant-baseline="middle">')
    for tick, label in zip(ticks, tick_labels, strict=True):
        parts.append(f'<text x="{_px(left - 6)}" y="{_px(scale(tick))}">{escape(label)}</text>')
    parts.append("</g>")
    y0 = scale(Decimal(0))
    show_values = all(_text_width(fmt(v), 11) <= slot for _, v in items)
    for i, (label, value) in enumerate(items):
        centre = left + slot * (i + 0.5)
        y = scale(value)
        low, high = min(y0, y), max(y0, y)
        text = fmt(value)
        parts.append(
            f"<g><title>{escape(f'{label}: {text}')}</title>"
            f'<rect x="{_px(centre - bar / 2)}" y="{_px(low)}" width="{_px(bar)}" '
            f'height="{_px(max(high - low, 1))}" rx="2" fill="{fill(value)}"/>'
            f'<text x="{_px(centre)}" y="{_px(top + plot_h + 17)}" text-anchor="middle" '
            f'fill="{STRONG}">{escape(_truncate(label, slot))}</text>'
        )
        if show_values:
            value_y = low - 4 if value >= 0 else high + 12
            parts.append(
                f'<text x="{_px(centre)}" y="{_px(value_y)}" text-anchor="middle" '
                f'font-size="11">{escape(text)}</text>'
            )
        parts.append("</g>")
    parts.append(
        f'<line x1="{_px(left)}" x2="{_px(left + plot_w)}" y1="{_px(y0)}" y2="{_px(y0)}" '
        f'stroke="{AXIS}" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
