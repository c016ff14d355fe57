"""The partner's clients (``/partner/clients/``): the downline's clients with
masked personal data, filters, sorting and numbered pages.

A partner sees a client's first name and last initial, country,
registration date, KYC level, lots and what the partner earned from them;
never documents, and e-mail and phone only when the broker switched
``show_client_contacts`` on (for everyone or for this partner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_countries import countries

from kyc.selectors import level_lowest

from ..display import client_label, count_text, lots_text, money_text, partner_label
from ..selectors import dashboard as selectors
from ..selectors.dashboard import CLIENT_SORTS, CLIENTS_PAGE_SIZE, ClientFilter
from . import partner_required


class ClientListForm(forms.Form):
    scope = forms.ChoiceField(
        label="Clients",
        required=False,
        choices=[("", "Whole network"), ("direct", "Direct only")],
    )
    country = forms.ChoiceField(label="Country", required=False)
    traded = forms.ChoiceField(
        label="Trading",
        required=False,
        choices=[("", "Any"), ("yes", "Has traded"), ("no", "Has not traded")],
    )
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[(key, label) for key, (label, _) in CLIENT_SORTS.items()],
    )
    page = forms.IntegerField(
        required=False, min_value=1, max_value=100_000, widget=forms.HiddenInput
    )

    FILTERS = ("scope", "country", "traded", "sort")

    def __init__(self, *args, countries_found: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        names = dict(countries)
        self.fields["country"].choices = [("", "All countries")] + [
            (code, names.get(code, code)) for code in countries_found
        ]

    def client_filter(self) -> ClientFilter:
        data = self.cleaned_data
        traded = {"yes": True, "no": False}.get(data.get("traded") or "")
        return ClientFilter(
            direct_only=data.get("scope") == "direct",
            country=data.get("country") or "",
            traded=traded,
            sort=data.get("sort") or "newest",
        )

    def params(self, **changes: Any) -> dict[str, str]:
        params = {name: self.cleaned_data.get(name) or "" for name in self.FILTERS}
        params.update(changes)
        return {k: str(v) for k, v in params.items() if v}

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(n) for n in ("scope", "country", "traded"))


@dataclass(frozen=True)
class ClientRow:
    client_id: int
    name: str
    email: str
    phone: str
    country: str
    registered: Any
    kyc_level: str
    lots: str
    commissions: list[str]
    via: str
    via_url: str
    commissions_url: str


def _rows(partner, referrals, show_contacts: bool) -> list[ClientRow]:
    earned = selectors.commissions_by_client(partner, [r.client_id for r in referrals])
    lowest = None
    history = reverse("partner:commissions")
    rows = []
    for r in referrals:
        client = r.client
        profile = client.profile if _has(client, "profile") else None
        kyc = client.kyc if _has(client, "kyc") else None
        if kyc is not None:
            level = kyc.level.name
        else:
            lowest = lowest or level_lowest()
            level = lowest.name
        direct = r.partner_id == partner.pk
        via_user = r.partner.user
        rows.append(
            ClientRow(
                client_id=client.pk,
                name=client_label(client.first_name, client.last_name, client.pk),
                email=client.email if show_contacts else "",
                phone=str(profile.phone) if show_contacts and profile and profile.phone else "",
                country=profile.country.name if profile and profile.country else "",
                registered=client.date_joined,
                kyc_level=level,
                lots=lots_text(r.lots_traded),
                commissions=[money_text(amount, cur) for cur, amount in earned.get(client.pk, [])],
                via=""
                if direct
                else partner_label(via_user.first_name, via_user.last_name, r.partner_id),
                via_url="" if direct else reverse("partner:tree_children", args=[r.partner_id]),
                commissions_url=f"{history}?{urlencode({'client': client.pk})}",
            )
        )
    return rows


def _has(obj, name: str) -> bool:
    """Whether a reverse one-to-one loaded by select_related exists (no query)."""
    try:
        return getattr(obj, name) is not None
    except ObjectDoesNotExist:
        return False


@partner_required
@require_GET
def clients(request: HttpRequest) -> HttpResponse:
    partner = request.partner
    form = ClientListForm(request.GET, countries_found=selectors.downline_countries(partner))
    base = reverse("partner:clients")
    context: dict[str, Any] = {"nav_active": "clients", "form": form, "base_url": base}
    status = 200
    if form.is_valid():
        filters = form.client_filter()
        total = selectors.clients_count(partner, filters)
        pages = max((total + CLIENTS_PAGE_SIZE - 1) // CLIENTS_PAGE_SIZE, 1)
        number = min(form.cleaned_data.get("page") or 1, pages)
        start = (number - 1) * CLIENTS_PAGE_SIZE
        referrals = selectors.clients_page(partner, filters, offset=start, limit=CLIENTS_PAGE_SIZE)
        show = selectors.show_contacts(partner)
        params = form.params()
        context.update(
            rows=_rows(partner, referrals, show),
            show_contacts=show,
            total=total,
            total_text=count_text(total),
            page_number=number,
            pages=pages,
            first_index=start + 1 if referrals else 0,
            last_index=start + len(referrals),
            filtered=form.is_filtered,
            previous_url=f"{base}?{urlencode({**params, 'page': number - 1})}"
            if number > 1
            else "",
            next_url=f"{base}?{urlencode({**params, 'page': number + 1})}"
            if number < pages
            else "",
        )
    else:
        status = 400
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "partner/_clients.html" if partial else "partner/clients.html"
    response = render(request, template, context, status=status if not partial else 200)
    patch_vary_headers(response, ["HX-Request"])
    return response
