"""The trader's deposits: choose a currency, a method and an amount, see the
fee and what the wallet receives (an htmx preview; without JavaScript, a
review step), confirm, and go to the provider or to the bank details; then
a status page that follows the deposit until it completes.

A deposit reference from a URL goes through ``deposit_get_for_user``: another
trader's deposit is a 404. A method id from a form is accepted only from the
methods this client may use (the selectors' list)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods

from .. import services
from ..forms_deposits import DepositForm
from ..models import Currency, Deposit, PaymentMethod
from ..providers import psp_for
from ..selectors import deposits as selectors
from ..services.deposits import (
    DepositError,
    DepositQuote,
    deposit_create,
    deposit_quote,
    deposit_start,
)

RECENT = 10
WAITING = (Deposit.CREATED, Deposit.PENDING)


@dataclass
class _Choices:
    currencies: list[Currency]
    currency: Currency | None
    methods: list[PaymentMethod]
    recent: list[Deposit]


def _choices(request: HttpRequest, code: str | None, *, with_recent: bool = True) -> _Choices:
    methods = selectors.deposit_methods_for(user=request.user)
    currencies = selectors.deposit_currencies(methods)
    recent = (
        selectors.deposits_recent_for_user(user=request.user, limit=RECENT) if with_recent else []
    )
    by_code = {c.code: c for c in currencies}
    code = (code or "").strip().upper()
    if code not in by_code and recent:
        code = recent[0].wallet.currency_id  # where the client deposited last
    currency = by_code.get(code) or (currencies[0] if currencies else None)
    for_currency = selectors.methods_for_currency(methods, currency.code) if currency else []
    for method in for_currency:
        method.terms = method_terms(method, method.provider_currency or currency)
    return _Choices(currencies, currency, for_currency, recent)


def method_terms(method: PaymentMethod, paid: Currency) -> str:
    """ "Fee 2.5 % + 0.30 USD · min 10.00 · paid in EUR", for the method's card."""

    def amount(value: Decimal) -> str:
        return f"{value.quantize(Decimal(1).scaleb(-paid.exponent), rounding=ROUND_HALF_UP):,}"

    fees = []
    if method.fee_percent:
        fees.append(f"{method.fee_percent.normalize():f} %")
    if method.fee_fixed:
        fees.append(f"{amount(method.fee_fixed)} {paid.code}")
    parts = [f"Fee {' + '.join(fees)}" if fees else "No fee"]
    if method.min_amount:
        parts.append(f"min {amount(method.min_amount)}")
    if method.max_amount is not None:
        parts.append(f"max {amount(method.max_amount)}")
    if method.provider_currency_id and method.provider_currency_id != paid.code:
        parts.append(f"paid in {method.provider_currency_id}")
    return " · ".join(parts)


def _form(choices: _Choices, data=None) -> DepositForm:
    return DepositForm(data, currency=choices.currency, methods=choices.methods)


def _quote(request: HttpRequest, form: DepositForm) -> DepositQuote | None:
    """The quote for a valid form, or None with the reason added to the form."""
    if not form.is_valid():
        return None
    try:
        return deposit_quote(
            user=request.user,
            method=form.cleaned_data["method"],
            wallet_currency=form.currency_obj,
            amount=form.cleaned_data["amount"],
        )
    except DepositError as exc:
        form.add_error(None, str(exc))
        return None


def _render(
    request, choices: _Choices, form: DepositForm | None, quote=None, status=200, refusal=None
):
    context = {
        "choices": choices,
        "form": form,
        "quote": quote,
        "method": form.selected_method() if form is not None else None,
        # A policy's refusal (a KYC limit): the page links to what unlocks it.
        "refusal": refusal if refusal is not None and refusal.unlock_url else None,
        "nav_active": "deposit",
    }
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "payments/deposits/_main.html" if partial else "payments/deposits/new.html"
    response = render(request, template, context, status=200 if partial else status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "POST"])
def deposit_new(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    choices = _choices(request, source.get("currency"))
    if choices.currency is None:
        return _render(request, choices, None)
    if request.method != "POST":
        return _render(request, choices, _form(choices))
    form = _form(choices, data=request.POST)
    quote = _quote(request, form)
    if quote is None:
        return _render(request, choices, form, status=400)
    if not form.previewed_matches:
        # No JavaScript (or the amount changed since the preview): show the
        # fee and what the wallet receives, and ask again.
        messages.info(request, "Check the fee and what your wallet receives, then confirm.")
        return _render(request, choices, form, quote)
    try:
        with transaction.atomic():
            wallet = services.wallet_open(user=request.user, currency=choices.currency)
            deposit = deposit_create(
                user=request.user,
                wallet=wallet,
                method=form.cleaned_data["method"],
                amount=form.cleaned_data["amount"],
            )
    except DepositError as exc:
        form.add_error(None, str(exc))
        return _render(request, choices, form, status=400, refusal=exc)
    detail = reverse("payments:deposit_detail", args=[deposit.reference])
    try:
        start = deposit_start(deposit=deposit, return_url=request.build_absolute_uri(detail))
    except DepositError as exc:
        messages.error(request, str(exc))
        return redirect(detail)
    if start.redirect_url:
        return redirect(start.redirect_url)
    messages.success(request, f"Deposit {deposit.reference} created. Pay it as shown below.")
    return redirect(detail)


@login_required
@require_GET
def deposit_preview(request: HttpRequest) -> HttpResponse:
    """The fee and what the wallet receives, for the htmx preview."""
    choices = _choices(request, request.GET.get("currency"), with_recent=False)
    form = _form(choices, data=request.GET) if choices.currency else None
    quote = _quote(request, form) if form is not None else None
    context = {"form": form, "quote": quote, "method": form.selected_method() if form else None}
    return render(request, "payments/deposits/_preview.html", context)


@login_required
@require_GET
def deposit_detail(request: HttpRequest, reference: str) -> HttpResponse:
    deposit = selectors.deposit_get_for_user(user=request.user, reference=reference)
    instructions = []
    if deposit.status in WAITING:
        instructions = psp_for(deposit.provider).deposit_instructions(deposit)
    context = {
        "deposit": deposit,
        "instructions": instructions,
        "waiting": deposit.status in WAITING,
        "nav_active": "deposit",
    }
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "payments/deposits/_status.html" if partial else "payments/deposits/detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    response["Cache-Control"] = "private, no-store"
    return response
