"""The partner's commission history (``/partner/commissions/``): filters,
keyset pages, each row explained by its rule (:func:`ib.display.explain`),
one row's page, and the filtered list as a streamed CSV.

A client or sub-partner id in the query that is not (or never was) in the
partner's downline, and another partner's commission id, are 404s.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from accounts.selectors.deals import DealCursor
from backoffice.spreadsheets import Echo, csv_safe

from ..display import client_label, lots_text, money_text, partner_label
from ..models import Commission, Partner, PlanVersion
from ..selectors.commissions import (
    CommissionFilter,
    Row,
    commission_export_rows,
    commission_get_for_partner,
    commissions_page,
    explained,
)
from ..selectors.dashboard import downline_client_exists, subtree_partner_get
from . import partner_required

# A select of sub-partners stays usable up to this many; beyond, the filter
# still works from a link (the tree's "commissions" links carry the id).
SUB_PARTNER_CHOICES = 300


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class CommissionFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label="Kind",
        required=False,
        choices=[("", "All kinds"), *Commission.KINDS],
        error_messages={"invalid_choice": "Choose a kind from the list."},
    )
    date_from = forms.DateField(
        label="From",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    date_to = forms.DateField(
        label="To",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    sub_partner = forms.CharField(
        label="Sub-partner", required=False, max_length=20, widget=forms.Select
    )
    client = forms.IntegerField(
        label="Client no.",
        required=False,
        min_value=1,
        max_value=2**62,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        error_messages={"invalid": "Enter a client number from your clients list."},
    )
    paid = forms.ChoiceField(
        label="Payout",
        required=False,
        choices=[("", "Paid and unpaid"), ("unpaid", "Awaiting payout"), ("paid", "Paid")],
    )
    before = forms.CharField(required=False, max_length=60, widget=forms.HiddenInput)

    FILTERS = ("kind", "date_from", "date_to", "sub_partner", "client", "paid")

    def __init__(self, *args, partner: Partner, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.partner = partner
        subs = (
            Partner.objects.filter(path__startswith=partner.path)
            .exclude(pk=partner.pk)
            .select_related("user")
            .only("id", "path", "depth", "user__first_name", "user__last_name")
            .order_by("path")[:SUB_PARTNER_CHOICES]
        )
        choices = [("", "Whole network")]
        for sub in subs:
            indent = "\u2003" * max(sub.depth - partner.depth - 1, 0)
            label = partner_label(sub.user.first_name, sub.user.last_name, sub.pk)
            choices.append((sub.pk, f"{indent}{label}"))
        self.fields["sub_partner"].widget.choices = choices
        self.sub_partner: Partner | None = None

    def clean_sub_partner(self) -> int | None:
        # Any id is accepted here (it may be beyond the select's choices);
        # the view checks it against the subtree: another partner's is a 404.
        raw = (self.cleaned_data.get("sub_partner") or "").strip()
        if not raw:
            return None
        if not raw.isdigit() or len(raw) > 18:
            raise forms.ValidationError("Choose a sub-partner from the list.")
        return int(raw)

    def clean_before(self) -> DealCursor | None:
        text = self.cleaned_data["before"]
        if not text:
            return None
        cursor = DealCursor.decode(text)
        if cursor is None:
            raise forms.ValidationError("This page link is not valid.")
        return cursor

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def commission_filter(self) -> CommissionFilter:
        data = self.cleaned_data
        start, end = data.get("date_from"), data.get("date_to")
        paid = {"paid": True, "unpaid": False}.get(data.get("paid") or "")
        return CommissionFilter(
            kind=data.get("kind") or "",
            since=_start_of(start) if start else None,
            until=_start_of(end + timedelta(days=1)) if end and end < date.max else None,
            client_id=data.get("client"),
            sub_partner=self.sub_partner,
            paid=paid,
        )

    def filter_params(self) -> dict[str, str]:
        params = {}
        for name in self.FILTERS:
            value = self.cleaned_data.get(name)
            if value:
                params[name] = value.isoformat() if isinstance(value, date) else str(value)
        return params

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in self.FILTERS)


def _check_ids(form: CommissionFilterForm, partner: Partner) -> None:
    """404 for a client or sub-partner id outside the partner's downline."""
    sub_id = form.cleaned_data.get("sub_partner")
    if sub_id:
        sub = subtree_partner_get(partner=partner, partner_id=sub_id)
        if sub.pk == partner.pk:
            raise Http404("No such sub-partner.")
        form.sub_partner = sub
    client_id = form.cleaned_data.get("client")
    if client_id and not downline_client_exists(partner=partner, client_id=client_id):
        raise Http404("No such client.")


def _with_query(url: str, params: dict) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _partial(request: HttpRequest) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _row_context(row: Row) -> dict[str, Any]:
    c = row.commission
    return {
        "id": c.pk,
        "earned_at": c.earned_at,
        "kind": c.kind,
        "kind_label": c.get_kind_display(),
        "client": row.client,
        "deal": f"{row.deal.symbol} #{row.deal.ticket}" if row.deal else "",
        "period": c.period_start,
        "level": c.level,
        "lots": lots_text(c.lots) if c.kind == Commission.DEAL else "",
        "amount": money_text(c.amount, c.currency_id),
        "paid": c.payout_id is not None,
        "explanation": row.explanation,
        "url": reverse("partner:commission", args=[c.pk]),
    }


@partner_required
@require_GET
def commissions(request: HttpRequest) -> HttpResponse:
    partner = request.partner
    form = CommissionFilterForm(request.GET, partner=partner)
    base = reverse("partner:commissions")
    context: dict[str, Any] = {"nav_active": "commissions", "form": form, "base_url": base}
    status = 200
    canonical = ""
    if form.is_valid():
        _check_ids(form, partner)
        cursor = form.cleaned_data.get("before")
        page = commissions_page(partner, form.commission_filter(), before=cursor)
        params = form.filter_params()
        canonical = _with_query(base, {**params, "before": cursor.encode()} if cursor else params)
        client_id = form.cleaned_data.get("client")
        context.update(
            rows=[_row_context(r) for r in page.rows],
            has_page=True,
            filtered=form.is_filtered,
            paged=cursor is not None,
            newest_url=_with_query(base, params),
            older_url=_with_query(base, {**params, "before": page.next_cursor.encode()})
            if page.next_cursor
            else "",
            export_url=_with_query(reverse("partner:commissions_csv"), params),
            client_filter=_client_name(client_id) if client_id else "",
            without_client_url=_with_query(
                base, {k: v for k, v in params.items() if k != "client"}
            ),
        )
    elif not _partial(request):
        status = 400
    template = "partner/commissions_list.html" if _partial(request) else "partner/commissions.html"
    response = render(request, template, context, status=status)
    if _partial(request) and canonical:
        response["HX-Push-Url"] = canonical
    patch_vary_headers(response, ["HX-Request"])
    return response


def _client_name(client_id: int) -> str:
    from accounts.models import User

    found = User.objects.filter(pk=client_id).values_list("first_name", "last_name").first()
    first, last = found or ("", "")
    return client_label(first, last, client_id)


@partner_required
@require_GET
def commission_detail(request: HttpRequest, commission_id: int) -> HttpResponse:
    partner = request.partner
    commission = commission_get_for_partner(partner=partner, commission_id=commission_id)
    row = explained([commission])[0]
    version = (
        PlanVersion.objects.filter(pk=commission.plan_version_id)
        .only("id", "effective_from", "terms")
        .first()
    )
    context = {
        "nav_active": "commissions",
        "row": _row_context(row),
        "commission": commission,
        "rebate": money_text(commission.rebate, commission.currency_id),
        "share": money_text(commission.share, commission.currency_id),
        "basis": money_text(commission.basis, commission.currency_id),
        "plan_name": (version.terms or {}).get("name", "") if version else "",
        "plan_from": version.effective_from if version else None,
        "back_url": reverse("partner:commissions"),
    }
    return render(request, "partner/commissions_detail.html", context)


# --- CSV -------------------------------------------------------------------------------

CSV_HEADER = [
    "earned_at",
    "kind",
    "client",
    "deal",
    "instrument",
    "period_start",
    "level",
    "lots",
    "amount",
    "currency",
    "status",
    "explanation",
]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _csv_rows(partner: Partner, filters: CommissionFilter):
    yield CSV_HEADER
    for row in commission_export_rows(partner, filters):
        c = row.commission
        yield [
            _iso(c.earned_at),
            c.kind,
            csv_safe(row.client),
            str(row.deal.ticket) if row.deal else "",
            csv_safe(row.deal.symbol) if row.deal else "",
            c.period_start.isoformat() if c.period_start else "",
            str(c.level),
            format(c.lots.normalize(), "f") if c.kind == Commission.DEAL else "",
            money_text(c.amount, c.currency_id, code=False).replace(",", "").replace("\u2212", "-"),
            c.currency_id,
            "paid" if c.payout_id else "unpaid",
            csv_safe(row.explanation),
        ]


@partner_required
@require_GET
def commissions_csv(request: HttpRequest) -> HttpResponse:
    """The filtered commissions as CSV, streamed in keyset chunks (all of
    them: a page cursor in the query is ignored)."""
    partner = request.partner
    form = CommissionFilterForm(request.GET, partner=partner)
    if not form.is_valid():
        return commissions(request)
    _check_ids(form, partner)
    writer = csv.writer(Echo())
    rows = (writer.writerow(row) for row in _csv_rows(partner, form.commission_filter()))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="commissions-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
