"""The trader's wallets: the list (and opening one), a wallet's history, its
CSV export. Every wallet id from a request goes through
``selectors.wallet_get_for_user``: another trader's wallet is a 404."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from backoffice.money import from_minor
from backoffice.spreadsheets import Echo, csv_safe

from .. import selectors, services
from ..exceptions import LedgerError
from ..forms import AllHistoryFilterForm, HistoryFilterForm, WalletOpenForm, kind_label
from ..models import LedgerAccount

HISTORY_PAGE_SIZE = 25
EXPORT_CHUNK = 1000


@login_required
@require_GET
def wallet_list(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    return _render_list(request, _open_form(wallets), wallets)


@login_required
@require_POST
def wallet_open(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    form = _open_form(wallets, data=request.POST)
    if not form.is_valid():
        return _render_list(request, form, wallets, status=400)
    currency = form.cleaned_data["currency"]
    already = any(w.currency_id == currency.code for w in wallets)
    try:
        services.wallet_open(user=request.user, currency=currency)
    except LedgerError as exc:
        messages.error(request, str(exc))
        return redirect("payments:wallets")
    if already:
        messages.info(request, f"You already have a {currency.code} wallet.")
    else:
        messages.success(request, f"Your {currency.code} wallet is open.")
    return redirect("payments:wallets")


def _open_form(wallets: list[LedgerAccount], data=None) -> WalletOpenForm:
    return WalletOpenForm(
        data,
        active=selectors.currencies_active(),
        owned_codes={w.currency_id for w in wallets},
    )


def _render_list(
    request: HttpRequest, form: WalletOpenForm, wallets: list[LedgerAccount], status: int = 200
) -> HttpResponse:
    context = {"wallets": wallets, "open_form": form, "nav_active": "wallets"}
    return render(request, "payments/wallet_list.html", context, status=status)


@login_required
@require_GET
def wallet_detail(request: HttpRequest, wallet_id: int) -> HttpResponse:
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
    form = HistoryFilterForm(request.GET)
    return _render_history(request, wallet, form)


def _render_history(
    request: HttpRequest, wallet: LedgerAccount, form: HistoryFilterForm
) -> HttpResponse:
    export = reverse("payments:wallet_export", args=[wallet.pk])
    return _history_response(
        request,
        form,
        base=reverse("payments:wallet", args=[wallet.pk]),
        template="payments/wallet_detail.html",
        wallets=lambda: [wallet],
        context={"wallet": wallet},
        export_base=export,
        in_progress=lambda: selectors.wallet_in_progress(wallet=wallet),
    )


@login_required
@require_GET
def history_all(request: HttpRequest) -> HttpResponse:
    """Every movement of all the trader's wallets, with a currency filter."""
    wallets = selectors.wallets_for_user(user=request.user)
    form = AllHistoryFilterForm(request.GET, currencies=[w.currency_id for w in wallets])

    def chosen() -> list[LedgerAccount]:
        code = form.cleaned_data.get("currency")
        return [w for w in wallets if w.currency_id == code] if code else wallets

    return _history_response(
        request,
        form,
        base=reverse("payments:history"),
        template="payments/history_all.html",
        wallets=chosen,
        context={"all_wallets": True},
    )


def _history_response(
    request: HttpRequest,
    form: HistoryFilterForm,
    *,
    base: str,
    template: str,
    wallets,
    context: dict,
    export_base: str = "",
    in_progress=None,
) -> HttpResponse:
    """A history page (or, for htmx, its history part): the filters, one
    keyset page, the paging and export links."""
    context = {**context, "form": form, "nav_active": "wallets", "base_url": base}
    # The filter form and the "Older" link swap only the history part when
    # htmx is there; a history restore (back button) wants the whole page.
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    if not partial and in_progress is not None:
        context["in_progress"] = in_progress()
    status = 200
    if form.is_valid():
        page = selectors.wallet_history(
            wallets=wallets(), limit=HISTORY_PAGE_SIZE, **form.history_filters()
        )
        params = form.filter_params()
        context.update(
            page=page,
            filtered=form.is_filtered,
            paged=form.cleaned_data.get("before") is not None,
            newest_url=_with_query(base, params),
            older_url=_with_query(base, {**params, "before": page.next_cursor})
            if page.next_cursor
            else "",
            export_url=_with_query(export_base, params) if export_base else "",
        )
    elif not partial:
        status = 400  # htmx swaps only successful responses; the errors are in the part
    response = render(
        request, "payments/_history.html" if partial else template, context, status=status
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def wallet_in_progress(request: HttpRequest, wallet_id: int) -> HttpResponse:
    """The "In progress" part of the wallet page, polled by htmx."""
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
    context = {"wallet": wallet, "in_progress": selectors.wallet_in_progress(wallet=wallet)}
    return render(request, "payments/_in_progress.html", context)


def _with_query(url: str, params: dict) -> str:
    return f"{url}?{urlencode(params)}" if params else url


@login_required
@require_GET
def wallet_export(request: HttpRequest, wallet_id: int) -> HttpResponse:
    """The filtered history as CSV, streamed in keyset chunks (the whole
    filtered history: a page cursor in the query is ignored)."""
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return _render_history(request, wallet, form)
    filters = form.history_filters()
    filters.pop("before_id")
    writer = csv.writer(Echo())
    rows = (writer.writerow(row) for row in _csv_rows(wallet, filters))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d")
    filename = f"wallet-{wallet.currency_id}-{stamp}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


CSV_HEADER = ["date", "type", "description", "amount", "currency", "balance_after", "status"]


def _csv_rows(wallet: LedgerAccount, filters: dict) -> Iterator[list[str]]:
    yield CSV_HEADER
    exponent = wallet.currency.exponent
    cursor = None
    while True:
        page = selectors.wallet_history(
            wallet=wallet, before_id=cursor, limit=EXPORT_CHUNK, **filters
        )
        for entry in page.entries:
            yield [
                entry.created_at.astimezone(UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                csv_safe(kind_label(entry.transaction.kind)),
                csv_safe(entry.transaction.description),
                _plain(entry.amount, exponent),
                wallet.currency_id,
                _plain(entry.balance_after, exponent) if entry.balance_after is not None else "",
                entry.status,
            ]
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _plain(minor: int, exponent: int) -> str:
    return format(from_minor(minor, exponent), "f")  # "-0.00000001", never "-1E-8"
