"""The partner dashboard's overview (``/partner/``): clients, active traders,
volume, the downline's deposits, the partner's commissions and two charts.

The figures come from :func:`ib.selectors.dashboard.overview_for` (cached per
partner); the chart period (30 or 90 days) is a link that htmx turns into a
swap of the chart alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from backoffice.charts import line_chart
from backoffice.money import from_minor
from payments.selectors.rates import RateUnavailable, rate_for

from ..display import count_text, currency_exponent, lots_text, money_text, number_text
from ..selectors.dashboard import CHART_DAYS, Overview, overview_for
from . import partner_required


@dataclass(frozen=True)
class Chart:
    wide: str
    narrow: str = ""


def _both(render_chart, **kwargs) -> Chart:
    """Drawn for phones and for wider screens (SVG text scales with its drawing)."""
    return Chart(narrow=render_chart(width=340, **kwargs), wide=render_chart(width=760, **kwargs))


def _commission_chart(overview: Overview, days: int) -> tuple[Chart | None, str]:
    """Commissions per day in the partner's main currency over ``days``."""
    if not overview.commissions:
        return None, ""
    currency = overview.commissions[0].currency
    places = currency_exponent(currency)
    start = overview.today - timedelta(days=days - 1)
    by_day = dict(overview.commissions_by_day.get(currency, []))
    points = [
        (start + timedelta(days=i), from_minor(by_day.get(start + timedelta(days=i), 0), places))
        for i in range(days)
    ]
    chart = _both(
        line_chart,
        points=points,
        title=f"Your commissions per day, {currency}",
        value_format=lambda v: f"{number_text(v, places)}\u00a0{currency}",
        height=240,
    )
    return chart, currency


def _signup_chart(overview: Overview) -> Chart:
    points = [(week, count) for week, count in overview.signups_by_week]
    return _both(
        line_chart,
        points=points,
        title="New clients per week (by the week's Monday)",
        value_format=lambda v: number_text(v),
        # Whole clients only: a tick between two counts goes unlabelled.
        tick_format=lambda v: number_text(v) if v == v.to_integral_value() else "",
        height=220,
    )


@dataclass(frozen=True)
class FlowRow:
    currency: str
    deposits: str
    withdrawals: str
    net: str
    net_minor: int


def _net_in(overview: Overview, currency: str) -> str:
    """The net deposits of every currency converted into ``currency`` at
    current mid rates (empty when a rate is missing)."""
    total = Decimal(0)
    for flow in overview.flows:
        if not flow.net:
            continue
        try:
            rate = rate_for(flow.currency, currency).rate
        except RateUnavailable:
            return ""
        total += from_minor(flow.net, currency_exponent(flow.currency)) * rate
    return f"{number_text(total, currency_exponent(currency))}\u00a0{currency}"


def _days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", CHART_DAYS[0]))
    except ValueError:
        return CHART_DAYS[0]
    return days if days in CHART_DAYS else CHART_DAYS[0]


@partner_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    partner = request.partner
    data = overview_for(partner)
    days = _days(request)
    chart, chart_currency = _commission_chart(data, days)
    base = reverse("partner:overview")
    context = {
        "nav_active": "overview",
        "overview": data,
        "counts": {
            "total": count_text(data.clients_total),
            "direct": count_text(data.clients_direct),
            "via": count_text(data.clients_total - data.clients_direct),
            "active": count_text(data.active_traders),
            "sub_partners": count_text(data.sub_partners),
        },
        "days": days,
        "day_links": [(d, f"{d} days", f"{base}?days={d}") for d in CHART_DAYS],
        "commission_chart": chart,
        "chart_currency": chart_currency,
        "lots_month": lots_text(data.lots_month),
        "lots_total": lots_text(data.lots_total),
        "commissions": [
            {
                "currency": c.currency,
                "today": money_text(c.today, c.currency),
                "month": money_text(c.month, c.currency),
                "total": money_text(c.total, c.currency),
            }
            for c in data.commissions
        ],
        "flows": [
            FlowRow(
                f.currency,
                money_text(f.deposits, f.currency, code=False),
                money_text(f.withdrawals, f.currency, code=False),
                money_text(f.net, f.currency, code=False),
                f.net,
            )
            for f in data.flows
        ],
        "payout_currency": partner.payout_currency_id,
        "month_label": f"{data.today:%B}",
    }
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    if partial:
        response = render(request, "partner/_overview_chart.html", context)
    else:
        context["signup_chart"] = _signup_chart(data)
        if len(data.flows) > 1 or (
            data.flows and data.flows[0].currency != partner.payout_currency_id
        ):
            context["net_converted"] = _net_in(data, partner.payout_currency_id)
        response = render(request, "partner/overview.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response
