"""The trader's trading accounts (``/room/accounts/``): the list with the
opening form, an account's page (figures, refresh, leverage, trading
password) and the links to transfers.

Every account id from a request goes through
``selectors.trading_account_get_for_user``: another trader's account is a
404. A trading password is shown once, in the response to the POST that
made it: never in a URL, a message (messages may live in a cookie), the
session or the cache; the response is marked ``no-store``.
"""

from __future__ import annotations

from uuid import uuid4

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ..exceptions import TradingError
from ..forms import TradingAccountOpenForm, TradingLeverageForm, TradingPasswordResetForm
from ..models import TradingAccount
from ..selectors import trading as selectors
from ..services import totp_device_confirmed
from ..services import trading as services

NAV = "accounts"
# The opening forms already used in this session (their request ids), so
# that reloading the page that shows a new password does not open a second
# account. Only ids are kept, never a password.
OPENED_SESSION_KEY = "trading_accounts_opened"
OPENED_REMEMBERED = 20


# --- The list and opening an account --------------------------------------------------


def _open_form(request: HttpRequest, data=None) -> TradingAccountOpenForm:
    types = selectors.account_types_available(user=request.user)
    form = TradingAccountOpenForm(data, types=types.all, initial={"request_id": uuid4()})
    form.available = types
    return form


def _list_page(
    request: HttpRequest, form: TradingAccountOpenForm, *, status: int = 200, refusal=None
) -> HttpResponse:
    context = {
        "cards": selectors.trading_accounts_for_user(user=request.user),
        "form": form,
        "types": form.available,
        "refusal": refusal,
        "nav_active": NAV,
    }
    return render(request, "accounts/trading/list.html", context, status=status)


@login_required
@require_GET
@never_cache  # "back" after opening gets a fresh form, and fresh figures
def trading_accounts(request: HttpRequest) -> HttpResponse:
    return _list_page(request, _open_form(request))


@login_required
@require_GET
def trading_account_open_leverage(request: HttpRequest) -> HttpResponse:
    """The leverage menu for the account type just picked (htmx)."""
    if not request.htmx:
        return redirect("room:trading_accounts")
    form = _open_form(request)
    form.chosen = form.types.get(_int(request.GET.get("account_type")))
    form.fields["leverage"].choices = form.leverage_choices(form.chosen)
    leverage = request.GET.get("leverage", "")
    if leverage in {value for value, _ in form.fields["leverage"].choices}:
        form.initial["leverage"] = leverage
    response = render(request, "accounts/trading/_leverage_field.html", {"form": form})
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
@never_cache
def trading_account_open(request: HttpRequest) -> HttpResponse:
    form = _open_form(request, request.POST)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    request_id = str(form.cleaned_data["request_id"])
    opened_ids = request.session.get(OPENED_SESSION_KEY, [])
    if request_id in opened_ids:
        messages.info(
            request,
            "This account was opened already; its password was shown once. "
            "You can reset the trading password on the account's page.",
        )
        return redirect("room:trading_accounts")
    data = form.cleaned_data
    try:
        opened = services.trading_account_open(
            user=request.user, account_type=data["account_type"], leverage=data["leverage"]
        )
    except TradingError as exc:
        form.add_error(None, str(exc))
        return _list_page(request, form, status=400, refusal=exc.decision)
    request.session[OPENED_SESSION_KEY] = [*opened_ids, request_id][-OPENED_REMEMBERED:]
    return _password_page(
        request,
        opened.account,
        password=opened.password,
        investor_password=opened.investor_password,
        opened=True,
    )


def _password_page(
    request: HttpRequest,
    account: TradingAccount,
    *,
    password: str,
    investor_password: str = "",
    opened: bool,
) -> HttpResponse:
    context = {
        "card": selectors.TradingAccountCard.of(account),
        "account": account,
        "password": password,
        "investor_password": investor_password,
        "server_name": selectors.platform_server_name(account),
        "opened": opened,
        "nav_active": NAV,
    }
    response = render(request, "accounts/trading/password.html", context)
    response["Cache-Control"] = "no-store"
    return response


# --- One account --------------------------------------------------------------------


def _transfer_url(account: TradingAccount) -> str:
    """The transfer page (payments app) for a live account; "" while that
    page does not exist, so that this page never links to nowhere."""
    if account.is_demo:
        return ""
    try:
        return reverse("trading_transfers:transfer", args=[account.pk])
    except NoReverseMatch:
        return ""


def _history_url(account: TradingAccount) -> str:
    """The trading history filtered to the account, once that page exists."""
    try:
        return f"{reverse('room:trading_history')}?account={account.pk}"
    except NoReverseMatch:
        return ""


def _detail_context(request: HttpRequest, account: TradingAccount) -> dict:
    operable = selectors.trading_account_operable(account)
    two_factor = operable and totp_device_confirmed(request.user) is not None
    return {
        "card": selectors.TradingAccountCard.of(account),
        "account": account,
        "operable": operable,
        "server_name": selectors.platform_server_name(account),
        "transfer_url": _transfer_url(account) if operable else "",
        "history_url": _history_url(account),
        "leverage_form": TradingLeverageForm(account=account),
        "reset_form": TradingPasswordResetForm(two_factor=two_factor),
        "nav_active": NAV,
    }


@login_required
@require_GET
def trading_account_detail(request: HttpRequest, account_id: int) -> HttpResponse:
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    return render(request, "accounts/trading/detail.html", _detail_context(request, account))


def _back(account: TradingAccount) -> HttpResponse:
    return redirect("room:trading_account", account_id=account.pk)


@login_required
@require_POST
def trading_account_refresh(request: HttpRequest, account_id: int) -> HttpResponse:
    """Read the figures from the platform now; with htmx, only the figures
    come back."""
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    problem = ""
    if not selectors.trading_account_operable(account):
        problem = "This account is read-only: its figures are not refreshed."
    elif not services.trading_account_refresh(account=account):
        problem = "The trading platform did not answer; the figures are the last ones we have."
    if request.htmx:
        context = {
            "card": selectors.TradingAccountCard.of(account),
            "account": account,
            "operable": selectors.trading_account_operable(account),
            "problem": problem,
            "refreshed": not problem,
        }
        return render(request, "accounts/trading/_figures.html", context)
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, "Figures updated from the trading platform.")
    return _back(account)


@login_required
@require_POST
def trading_account_leverage(request: HttpRequest, account_id: int) -> HttpResponse:
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    form = TradingLeverageForm(request.POST, account=account)
    if not form.is_valid():
        messages.error(request, form.errors["leverage"][0])
        return _back(account)
    leverage = form.cleaned_data["leverage"]
    try:
        services.trading_account_leverage_change(
            user=request.user, account=account, leverage=leverage
        )
    except TradingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"The leverage of account {account.login} is now 1:{leverage}.")
    return _back(account)


@login_required
@require_POST
@never_cache
def trading_account_password(request: HttpRequest, account_id: int) -> HttpResponse:
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    two_factor = totp_device_confirmed(request.user) is not None
    form = TradingPasswordResetForm(request.POST, two_factor=two_factor)
    if not form.is_valid():
        messages.error(request, f"The password was not reset. {form.errors['code'][0]}")
        return _back(account)
    try:
        password = services.trading_account_password_reset(
            user=request.user, account=account, otp_code=form.cleaned_data.get("code", "")
        )
    except TradingError as exc:
        messages.error(request, f"The password was not reset. {exc}")
        return _back(account)
    return _password_page(request, account, password=password, opened=False)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
