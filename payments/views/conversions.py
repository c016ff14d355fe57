"""The trader's convert and transfer pages.

Converting is two steps: the form asks for a quote (with htmx the quote
replaces the panel in place), the quote shows the rate, markup, fee and the
amount received with its countdown, and Confirm executes it. A transfer is
reviewed before it is sent; across currencies the review is such a quote.

Wallet ids come from the trader's own wallet list (the forms refuse any
other); quote ids go through ``conversion_get_for_user`` or the services,
which answer 404 for another trader's.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from backoffice.money import to_minor

from .. import selectors
from ..exceptions import LedgerError
from ..forms_conversions import ConvertForm, TransferForm
from ..models import Conversion, LedgerAccount
from ..selectors.conversions import (
    conversion_find_for_user,
    conversions_recent_for_user,
    quote_seconds_left,
    transfers_recent_for_user,
)
from ..services.conversions import (
    QuoteExpired,
    QuoteNotFound,
    conversion_execute,
    conversion_quote,
    transfer_execute,
)
from ..templatetags.payments import format_amount

# --- Convert ------------------------------------------------------------------------


def _prefill(request: HttpRequest, wallets: list[LedgerAccount]) -> dict:
    """Initial values from the query (a "get a new quote" link), else a
    sensible pair: the first wallet with money, then the next one."""
    ids = {str(w.pk) for w in wallets}
    initial = {}
    for name, key in (("from_wallet", "from"), ("to_wallet", "to")):
        if request.GET.get(key) in ids:
            initial[name] = request.GET[key]
    amount = request.GET.get("amount", "")
    if amount and len(amount) <= 30:
        initial["amount"] = amount
    if "from_wallet" not in initial and wallets:
        funded = [w for w in wallets if w.balance > 0] or wallets
        initial["from_wallet"] = funded[0].pk
        others = [w for w in wallets if w.pk != funded[0].pk]
        if others and "to_wallet" not in initial:
            initial["to_wallet"] = others[0].pk
    return initial


def _again_url(name: str, conversion: Conversion | None) -> str:
    url = reverse(name)
    if conversion is None:
        return url
    amount = conversion.from_wallet.currency.format_minor(conversion.sell_amount)
    query = {"from": conversion.from_wallet_id, "to": conversion.to_wallet_id, "amount": amount}
    return f"{url}?{urlencode(query)}"


def _quote_context(conversion: Conversion | None) -> dict:
    if conversion is None:
        return {"quote": None}
    source, target = conversion.from_wallet.currency, conversion.to_wallet.currency
    return {
        "quote": conversion,
        "quote_seconds": quote_seconds_left(conversion),
        "quote_from": source,
        "quote_to": target,
        "quote_net": conversion.sell_amount - conversion.fee,
        "quote_rate": _rate_text(conversion.rate),
        "quote_mid_rate": _rate_text(conversion.mid_rate),
    }


def _rate_text(rate: Decimal) -> str:
    """A rate without trailing zeros and never in scientific notation."""
    return format(rate.normalize(), "f")


def _render_convert(
    request: HttpRequest,
    wallets: list[LedgerAccount],
    form: ConvertForm,
    *,
    conversion: Conversion | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "wallets": wallets,
        "form": form,
        "error": error,
        "nav_active": "convert",
        "quote_ttl": settings.CONVERSION_QUOTE_TTL,
        **_quote_context(conversion),
    }
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    if partial:
        status = 200  # htmx swaps successful answers only; errors are in the panel
        template = "payments/conversions/_convert_panel.html"
    else:
        context["recent"] = conversions_recent_for_user(user=request.user)
        template = "payments/conversions/convert.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def convert(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    form = ConvertForm(wallets=wallets, initial=_prefill(request, wallets))
    return _render_convert(request, wallets, form)


@login_required
@require_POST
def convert_quote(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    form = ConvertForm(request.POST, wallets=wallets)
    if not form.is_valid():
        return _render_convert(request, wallets, form, status=400)
    try:
        conversion = conversion_quote(
            user=request.user,
            from_wallet=form.wallet("from_wallet"),
            to_wallet=form.wallet("to_wallet"),
            sell_amount=form.cleaned_data["amount"],
        )
    except LedgerError as exc:
        return _render_convert(request, wallets, form, error=str(exc), status=400)
    return _render_convert(request, wallets, form, conversion=conversion)


@login_required
@require_POST
def convert_confirm(request: HttpRequest) -> HttpResponse:
    public_id = request.POST.get("quote", "")
    try:
        conversion = conversion_execute(user=request.user, public_id=public_id)
    except QuoteNotFound:
        raise Http404("No such quote.") from None
    except LedgerError as exc:
        messages.error(request, str(exc))
        quote = conversion_find_for_user(user=request.user, public_id=public_id)
        return redirect(_again_url("payments:convert", quote))
    sold = format_amount(conversion.sell_amount, conversion.from_wallet.currency)
    bought = format_amount(conversion.buy_amount, conversion.to_wallet.currency)
    if conversion.replayed:
        messages.info(request, f"This conversion was already done: {sold} to {bought}.")
    else:
        messages.success(request, f"Converted {sold} to {bought}.")
    return redirect("payments:wallet", conversion.to_wallet_id)


# --- Transfer -----------------------------------------------------------------------


def _render_transfer(
    request: HttpRequest,
    wallets: list[LedgerAccount],
    form: TransferForm,
    *,
    reviewing: bool = False,
    conversion: Conversion | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "wallets": wallets,
        "form": form,
        "reviewing": reviewing,
        "error": error,
        "nav_active": "transfer",
        "quote_ttl": settings.CONVERSION_QUOTE_TTL,
        **_quote_context(conversion),
    }
    if reviewing and conversion is None:
        source = form.wallet("from_wallet")
        minor = to_minor(form.cleaned_data["amount"], source.currency.exponent)
        context["review_amount"] = format_amount(minor, source.currency)
        context["review_to_wallet"] = form.wallet("to_wallet")
        context["review_to_email"] = form.cleaned_data.get("to_email", "")
        context["review_from"] = source
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    if partial:
        status = 200
        template = "payments/conversions/_transfer_panel.html"
    else:
        context["recent"] = transfers_recent_for_user(user=request.user)
        template = "payments/conversions/transfer.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def transfer(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    form = TransferForm.fresh(wallets=wallets, initial=_prefill(request, wallets))
    return _render_transfer(request, wallets, form)


@login_required
@require_POST
def transfer_review(request: HttpRequest) -> HttpResponse:
    """Check the form and show what will happen: across currencies, a quote."""
    wallets = selectors.wallets_for_user(user=request.user)
    form = TransferForm(request.POST, wallets=wallets)
    if not form.is_valid():
        return _render_transfer(request, wallets, form, status=400)
    if "edit" in request.POST:
        return _render_transfer(request, wallets, form)
    if not form.converts:
        source = form.wallet("from_wallet")
        if source.balance < to_minor(form.cleaned_data["amount"], source.currency.exponent):
            error = (
                f"Insufficient funds: your {source.currency_id} wallet holds "
                f"{format_amount(source.balance, source.currency)}."
            )
            return _render_transfer(request, wallets, form, error=error, status=400)
        return _render_transfer(request, wallets, form, reviewing=True)
    try:
        conversion = conversion_quote(
            user=request.user,
            from_wallet=form.wallet("from_wallet"),
            to_wallet=form.wallet("to_wallet"),
            sell_amount=form.cleaned_data["amount"],
        )
    except LedgerError as exc:
        return _render_transfer(request, wallets, form, error=str(exc), status=400)
    return _render_transfer(request, wallets, form, reviewing=True, conversion=conversion)


@login_required
@require_POST
def transfer_confirm(request: HttpRequest) -> HttpResponse:
    wallets = selectors.wallets_for_user(user=request.user)
    form = TransferForm(request.POST, wallets=wallets)
    if not form.is_valid():
        return _render_transfer(request, wallets, form, status=400)
    data = form.cleaned_data
    try:
        done = transfer_execute(
            user=request.user,
            from_wallet=form.wallet("from_wallet"),
            to_wallet=form.wallet("to_wallet"),
            amount=data["amount"],
            idempotency_key=str(data["idempotency_key"]),
            to_user_email=data.get("to_email") or None,
            quote_id=request.POST.get("quote") or None,
            reference=data["reference"],
        )
    except QuoteNotFound:
        raise Http404("No such quote.") from None
    except QuoteExpired as exc:
        error = f"{exc} Press “Review” to get a new quote."
        return _render_transfer(request, wallets, form, error=error, status=409)
    except LedgerError as exc:
        return _render_transfer(request, wallets, form, error=str(exc), status=400)
    sent = format_amount(done.amount, form.wallet("from_wallet").currency)
    if done.replayed:
        messages.info(request, f"This transfer was already made ({sent}).")
    elif data.get("to_email"):
        messages.success(request, f"Sent {sent} to {data['to_email']}.")
    else:
        messages.success(
            request, f"Transferred {sent} to your {done.to_wallet.currency_id} wallet."
        )
    return redirect("payments:wallet", done.from_wallet_id)
