"""The partner's payouts (``/partner/payouts/``): what awaits payout and
whether it can be requested now, the history, each payout's statement and
its CSV. Every payout id from a request goes through
``selectors.payouts.payout_get_for_partner``: another partner's is a 404."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from itertools import islice

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from backoffice.money import from_minor
from backoffice.spreadsheets import Echo, csv_safe

from ..display import client_label, explain, money_text
from ..exceptions import IbError
from ..models import Commission, Payout
from ..selectors import payouts as selectors
from ..services.payouts import payout_request
from . import partner_required

PAGE_SIZE = 20
STATEMENT_PAGE_SIZE = 100
CSV_CHUNK = 2000


@partner_required
@require_GET
def payouts(request: HttpRequest) -> HttpResponse:
    partner = request.partner
    outlook = selectors.payout_outlook(partner)
    page = Paginator(selectors.payouts_for_partner(partner), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "nav_active": "payouts",
        "partner": partner,
        "outlook": outlook,
        "page": page,
        "schedule": partner.get_payout_schedule_display(),
    }
    return render(request, "partner/payouts.html", context)


@partner_required
@require_POST
def payout_request_view(request: HttpRequest) -> HttpResponse:
    try:
        payout = payout_request(partner=request.partner)
    except IbError as exc:
        messages.error(request, str(exc))
        return redirect("partner:payouts")
    messages.success(
        request,
        f"{money_text(payout.amount, payout.currency_id)} was paid into your "
        f"{payout.currency_id} wallet.",
    )
    return redirect("partner:payout", payout_id=payout.pk)


def _kind_label(kind: str) -> str:
    return dict(Commission.KINDS).get(kind, kind)


def _source(item: Commission) -> str:
    """What earned the row: the deal, the deposit, the period."""
    if item.kind == Commission.DEAL:
        return f"Deal #{item.deal_id}" + (f", level {item.level}" if item.level > 1 else "")
    if item.kind == Commission.CPA:
        return "First deposit"
    if item.period_start:
        return f"Period from {item.period_start:%-d %b %Y}"
    return ""


def _client(item: Commission) -> str:
    if not item.client_id:
        return "—"
    return client_label(item.client.first_name, item.client.last_name, item.client_id)


def _lines(payout: Payout, items: list[Commission]) -> list[dict]:
    versions = selectors.versions_for(items)
    lines = []
    for item in items:
        version = versions.get(item.plan_version_id)
        rate = selectors.rate_used(payout, item.currency_id)
        lines.append(
            {
                "item": item,
                "kind": _kind_label(item.kind),
                "client": _client(item),
                "source": _source(item),
                "amount": money_text(item.amount, item.currency_id),
                "rate": rate,
                "explanation": explain(item, version.terms if version else None),
            }
        )
    return lines


@partner_required
@require_GET
def payout_detail(request: HttpRequest, payout_id: int) -> HttpResponse:
    payout = selectors.payout_get_for_partner(partner=request.partner, payout_id=payout_id)
    page = Paginator(selectors.payout_items(payout), STATEMENT_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    breakdown = [
        {
            "currency": code,
            "amount": money_text(entry["amount"], code),
            "rows": entry.get("rows"),
            "rate": entry.get("rate"),
            "credited": money_text(entry["credited"], payout.currency_id),
        }
        for code, entry in sorted((payout.breakdown or {}).items())
    ]
    context = {
        "nav_active": "payouts",
        "payout": payout,
        "page": page,
        "lines": _lines(payout, list(page.object_list)),
        "breakdown": breakdown,
    }
    return render(request, "partner/payout_statement.html", context)


@partner_required
@require_GET
def payout_csv(request: HttpRequest, payout_id: int) -> StreamingHttpResponse:
    payout = selectors.payout_get_for_partner(partner=request.partner, payout_id=payout_id)
    writer = csv.writer(Echo())
    rows = (writer.writerow(row) for row in _csv_rows(payout))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="payout-{payout.pk}.csv"'
    return response


def _csv_rows(payout: Payout) -> Iterator[list[str]]:
    yield [
        "date (UTC)",
        "kind",
        "client",
        "source",
        "amount",
        "currency",
        "rate to " + payout.currency_id,
        "explanation",
    ]
    items = selectors.payout_items(payout).iterator(chunk_size=CSV_CHUNK)
    while chunk := list(islice(items, CSV_CHUNK)):
        for line in _lines(payout, chunk):
            item = line["item"]
            yield [
                item.earned_at.strftime("%Y-%m-%d %H:%M:%S"),
                line["kind"],
                csv_safe(line["client"]),
                line["source"],
                str(from_minor(item.amount, _exponent(item.currency_id))),
                item.currency_id,
                str(line["rate"]) if line["rate"] is not None else "",
                csv_safe(line["explanation"]),
            ]
    yield []
    yield [
        "total paid",
        "",
        "",
        f"{payout.commissions} commissions",
        str(from_minor(payout.amount, payout.currency.exponent)),
        payout.currency_id,
        "",
        "",
    ]


def _exponent(code: str) -> int:
    from ..display import currency_exponent

    return currency_exponent(code)
