"""The trader's withdrawals: the request form (with an htmx preview of the
fee and the total reserved), the list, a withdrawal's status page, cancel.

Every reference from a request goes through
``selectors.withdrawal_get_for_user``: another trader's withdrawal is a 404,
and a cancel of it changes nothing.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import profile_for_user

from ..forms_withdrawals import WithdrawalForm
from ..policies import can_withdraw
from ..selectors import wallets_for_user
from ..selectors import withdrawals as selectors
from ..services import withdrawals as services
from ..services.withdrawals import WithdrawalError
from ..templatetags.payments import format_amount

NAV = "withdraw"


def _form(request: HttpRequest, data=None, *, preview: bool = False, **kwargs) -> WithdrawalForm:
    country = profile_for_user(user=request.user).country
    options = {
        "wallets": wallets_for_user(user=request.user),
        "methods": selectors.withdrawal_methods(country=getattr(country, "code", "") or ""),
        "two_factor": services.two_factor_required(request.user),
        "preview_url": reverse("payments:withdraw_preview"),
    }
    if data is None:
        return WithdrawalForm.fresh(wallet_id=request.GET.get("wallet"), **options)
    return WithdrawalForm(data, preview=preview, **options, **kwargs)


def _quote(
    request: HttpRequest, form: WithdrawalForm
) -> tuple[services.WithdrawalQuote | None, str]:
    """The quote for a bound form's wallet, method and amount, or why there is none."""
    if not form.is_bound:
        return None, ""
    data = form.cleaned_data if hasattr(form, "cleaned_data") else {}
    if form.preview and not str(form.data.get("amount") or "").strip():
        return None, ""  # nothing typed yet: the hint, not an error
    if any(form.has_error(name) for name in ("wallet", "method", "amount")):
        if form.preview:
            return None, next(iter(form.errors.values()))[0]
        return None, ""  # shown at the field
    if not all(data.get(name) is not None for name in ("wallet", "method", "amount")):
        return None, ""
    try:
        quote = services.withdrawal_quote(
            user=request.user, wallet=data["wallet"], method=data["method"], amount=data["amount"]
        )
    except WithdrawalError as exc:
        return None, str(exc)
    decision = can_withdraw(request.user, quote.amount_major, quote.wallet.currency_id)
    if not decision:
        return None, decision.reason or "You cannot withdraw at the moment."
    return quote, ""


def _page(request: HttpRequest, form: WithdrawalForm, *, status: int = 200, refusal=None):
    quote, problem = _quote(request, form)
    context = {
        "form": form,
        "quote": quote,
        "problem": problem,
        "withdrawals": selectors.withdrawals_for_user(user=request.user),
        "refusal": refusal,
        "nav_active": NAV,
    }
    return render(request, "payments/withdrawals/withdraw.html", context, status=status)


@login_required
@require_GET
def withdraw(request: HttpRequest) -> HttpResponse:
    return _page(request, _form(request))


@login_required
@require_POST
def withdraw_request(request: HttpRequest) -> HttpResponse:
    form = _form(request, request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    data = form.cleaned_data
    try:
        withdrawal = services.withdrawal_request(
            user=request.user,
            wallet=data["wallet"],
            method=data["method"],
            amount=data["amount"],
            destination=data["destination"],
            otp_code=data.get("otp_code"),
            idempotency_key=str(data["idempotency_key"]),
        )
    except WithdrawalError as exc:
        form.add_service_error(exc)
        return _page(request, form, status=400, refusal=exc if exc.unlock else None)
    currency = withdrawal.wallet.currency
    if withdrawal.replayed:
        messages.info(
            request,
            f"Withdrawal {withdrawal.reference} was already requested; nothing more was reserved.",
        )
    else:
        total = format_amount(withdrawal.amount + withdrawal.fee, currency)
        messages.success(
            request,
            f"Withdrawal {withdrawal.reference} requested: {total} is reserved from your "
            f"{currency.code} wallet until Finance has reviewed it.",
        )
    return redirect("payments:withdrawal", reference=withdrawal.reference)


@login_required
@require_GET
def withdraw_preview(request: HttpRequest) -> HttpResponse:
    """The fee, the total reserved and the balance after, for what the form
    holds now (htmx). When the wallet or the method changed, the method menu
    and the destination fields come along (out of band)."""
    if not request.htmx:
        return redirect(f"{reverse('payments:withdraw')}?{request.GET.urlencode()}")
    form = _form(request, request.GET, preview=True)
    form.is_valid()
    quote, problem = _quote(request, form)
    trigger = request.htmx.trigger_name or ""
    context = {
        "form": form,
        "quote": quote,
        "problem": problem,
        "oob_method": trigger == "wallet",
        "oob_destination": trigger in ("wallet", "method"),
    }
    response = render(request, "payments/withdrawals/_preview.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def withdrawal_detail(request: HttpRequest, reference: str) -> HttpResponse:
    withdrawal = selectors.withdrawal_get_for_user(user=request.user, reference=reference)
    destination = [
        (services.DESTINATION_LABELS.get(key, key), _grouped(value) if key == "iban" else value)
        for key, value in (withdrawal.destination or {}).items()
    ]
    context = {"withdrawal": withdrawal, "destination": destination, "nav_active": NAV}
    return render(request, "payments/withdrawals/detail.html", context)


def _grouped(iban: str) -> str:
    """An IBAN in groups of four, as banks print it."""
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


@login_required
@require_POST
def withdrawal_cancel(request: HttpRequest, reference: str) -> HttpResponse:
    withdrawal = selectors.withdrawal_get_for_user(user=request.user, reference=reference)
    try:
        services.withdrawal_cancel(user=request.user, withdrawal=withdrawal)
    except WithdrawalError as exc:
        messages.error(request, str(exc))
    else:
        total = format_amount(withdrawal.amount + withdrawal.fee, withdrawal.wallet.currency)
        messages.success(
            request,
            f"Withdrawal {withdrawal.reference} cancelled: {total} is back in your "
            f"{withdrawal.wallet.currency_id} wallet.",
        )
    if request.POST.get("next") == "list":
        return redirect("payments:withdraw")
    return redirect("payments:withdrawal", reference=withdrawal.reference)
