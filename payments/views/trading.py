"""The trader's transfers between wallets and live trading accounts
(``/room/accounts/<id>/transfer/``, ``/room/accounts/transfers/<reference>/``).

The transfer page shows the account as the platform last reported it, the
form (direction, wallet, amount, and a key made when the page is shown, so
that a double click or a resubmit makes one transfer) and a live preview
(htmx) of what leaves and what arrives. Confirming calls the service and
leads to the transfer's status page, which polls while the platform has not
answered. The money moves only in ``payments.services.trading``.

Every id and reference from a request goes through the access getters in
``payments.selectors.trading``: another trader's account or transfer, and a
demo account, are a 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import TradingAccount
from accounts.selectors.trading import trading_account_operable
from backoffice.money import from_minor

from ..exceptions import LedgerError
from ..forms_trading import TradingTransferForm
from ..models import Currency, LedgerAccount, TradingTransfer
from ..selectors import trading as selectors
from ..selectors import wallets_for_user
from ..services.trading import (
    TradingTransferError,
    TradingTransferKeyReused,
    TransferFigures,
    trading_transfer_in,
    trading_transfer_out,
    transfer_figures,
)
from ..templatetags.payments import format_amount

NAV = "accounts"


@dataclass(frozen=True)
class Preview:
    """What the transfer in the form would move, in words and figures."""

    leaves_label: str
    leaves: str
    arrives_label: str
    arrives: str
    rate: str = ""  # "1 EUR = 1.0746 USD" when the currencies differ
    market_rate: str = ""
    markup: str = ""
    fee: str = ""
    warning: str = ""  # more than the wallet or the free margin holds
    below_minimum: bool = False


class _Page:
    """The account, the trader's wallets and what the page shows with them."""

    def __init__(self, request: HttpRequest, account_id: int) -> None:
        self.request = request
        self.account = selectors.trading_account_get_for_transfer(
            user=request.user, account_id=account_id
        )
        self.wallets = wallets_for_user(user=request.user)
        self.currency = selectors.account_currency(self.account, self.wallets)
        self.open = trading_account_operable(self.account)
        self.minimum = selectors.first_transfer_minimum(self.account) if self.open else None

    def money(self, minor: int | None) -> str:
        return selectors.account_money(minor, self.account, self.currency)

    def form(self, data=None) -> TradingTransferForm:
        if data is None:
            return TradingTransferForm.fresh(
                account=self.account,
                wallets=self.wallets,
                direction=self.request.GET.get("direction"),
            )
        return TradingTransferForm(data, account=self.account, wallets=self.wallets)

    def preview(self, form: TradingTransferForm) -> tuple[Preview | None, str]:
        """The preview of a bound form, or why there is none (a sentence)."""
        if not form.is_bound or not self.open:
            return None, ""
        if not str(form.data.get("amount") or "").strip():
            return None, ""  # nothing typed yet: the hint, not an error
        for name in ("direction", "wallet", "amount"):
            if form.has_error(name):
                return None, form.errors[name][0]
        data = form.cleaned_data
        wallet = form.selected_wallet()
        if wallet is None or data.get("amount") is None or not data.get("direction"):
            return None, ""
        try:
            figures = transfer_figures(
                direction=data["direction"],
                wallet=wallet,
                account=self.account,
                amount=data["amount"],
            )
        except LedgerError as exc:  # a bad amount, no rate: the message is for people
            return None, str(exc)
        return self._describe(figures, wallet), ""

    def _describe(self, figures: TransferFigures, wallet: LedgerAccount) -> Preview:
        account, math = self.account, figures.math
        login = account.login
        wallet_text = format_amount(figures.wallet_minor, wallet.currency)
        account_text = self.money(figures.account_minor)
        extra: dict = {}
        if figures.direction == TradingTransfer.IN:
            sold, bought = wallet.currency, self.currency
            labels = (
                f"Leaves your {wallet.currency_id} wallet",
                wallet_text,
                f"Arrives in account {login}",
                account_text,
            )
            if wallet.balance < figures.wallet_minor:
                extra["warning"] = (
                    f"More than your {wallet.currency_id} wallet holds "
                    f"({format_amount(wallet.balance, wallet.currency)})."
                )
            if self.minimum is not None:
                arriving = from_minor(figures.account_minor, account.currency_digits)
                extra["below_minimum"] = arriving < self.minimum
        else:
            sold, bought = self.currency, wallet.currency
            labels = (
                f"Leaves account {login}",
                account_text,
                f"Arrives in your {wallet.currency_id} wallet",
                wallet_text,
            )
            if account.state_updated_at is not None and figures.account_minor > account.free_margin:
                extra["warning"] = (
                    f"More than the account's free margin as last reported "
                    f"({self.money(account.free_margin)}); the platform decides."
                )
        if math is not None and sold is not None and bought is not None:
            extra["rate"] = f"1 {sold.code} = {_rate_text(math.rate)} {bought.code}"
            extra["market_rate"] = _rate_text(math.mid_rate)
            extra["markup"] = f"{math.markup_percent.normalize():f} %"
            extra["fee"] = format_amount(math.fee, sold) if math.fee else ""
        return Preview(*labels, **extra)

    def recent(self) -> list[TradingTransfer]:
        """The account's latest transfers, each with what it took from where."""
        transfers = selectors.trading_transfers_recent(account=self.account)
        for transfer in transfers:
            transfer.sent_text = (
                format_amount(transfer.amount, transfer.wallet.currency)
                if transfer.direction == TradingTransfer.IN
                else self.money(transfer.account_amount)
            )
        return transfers

    def render(
        self,
        form: TradingTransferForm,
        *,
        status: int = 200,
        error: str = "",
        refusal=None,
    ) -> HttpResponse:
        preview, problem = self.preview(form)
        account = self.account
        context = {
            "account": account,
            "form": form,
            "wallets": self.wallets,
            "open": self.open,
            "minimum": self.minimum,
            "currency_wallet": any(w.currency_id == account.currency for w in self.wallets),
            "balance": self.money(account.balance),
            "free_margin": self.money(account.free_margin),
            "preview": preview,
            "problem": problem,
            "error": error,
            "refusal": refusal,
            "refused": refusal is not None,  # a refusal is falsy (Decision.__bool__)
            "refusal_href": _unlock_href(refusal),
            "recent": self.recent(),
            "account_currency": self.currency,
            "nav_active": NAV,
        }
        return render(self.request, "payments/trading/transfer.html", context, status=status)


RATE_PLACES = Decimal("0.000001")


def _rate_text(rate: Decimal) -> str:
    """A rate as people read it: at most 6 decimal places (the stored rate
    keeps 12), no trailing zeros, never in scientific notation."""
    shown = rate.quantize(RATE_PLACES, ROUND_HALF_EVEN) if rate.as_tuple().exponent < -6 else rate
    return format(shown.normalize(), "f")


def _unlock_href(decision) -> str:
    """The page that would unlock a policy refusal, when it names one."""
    name = getattr(decision, "unlock_url", "") or ""
    if not name:
        return ""
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


@login_required
@require_http_methods(["GET", "POST"])
def transfer(request: HttpRequest, account_id: int) -> HttpResponse:
    """The transfer page (GET); confirming the form (POST) makes the transfer."""
    page = _Page(request, account_id)
    if request.method == "GET":
        return page.render(page.form())
    form = page.form(request.POST)
    if not page.open:
        return page.render(form, status=400, error=_closed_reason(page.account))
    if not form.is_valid():
        return page.render(form, status=400)
    data = form.cleaned_data
    service = (
        trading_transfer_in if data["direction"] == TradingTransfer.IN else trading_transfer_out
    )
    try:
        done = service(
            user=request.user,
            account=page.account,
            wallet=form.selected_wallet(),
            amount=data["amount"],
            idempotency_key=str(data["idempotency_key"]),
        )
    except TradingTransferKeyReused:
        # The page was sent before with other figures (the back button):
        # this one is a new request, with a new key.
        fresh = request.POST.copy()
        fresh["idempotency_key"] = str(uuid.uuid4())
        error = (
            "This form was already used for another transfer. Check the figures and "
            "confirm again to make a new one."
        )
        return page.render(page.form(fresh), status=409, error=error)
    except TradingTransferError as exc:
        decision = exc.decision if exc.decision is not None and not exc.decision.allowed else None
        return page.render(form, status=400, error=str(exc), refusal=decision)
    except LedgerError as exc:  # no rate just now, a conversion refused: said in words
        return page.render(form, status=400, error=str(exc))
    _tell(request, done, page)
    return redirect("trading_transfers:detail", reference=done.reference)


def _closed_reason(account: TradingAccount) -> str:
    if account.status != TradingAccount.ACTIVE:
        return "This trading account is archived; it takes no transfers. Nothing was transferred."
    return "Transfers to this trading platform are not available just now. Nothing was transferred."


def _tell(request: HttpRequest, done: TradingTransfer, page: _Page) -> None:
    if getattr(done, "replayed", False):
        messages.info(
            request, f"Transfer {done.reference} was already made; nothing more was moved."
        )
        return
    sent = format_amount(done.amount, done.wallet.currency)
    if done.direction == TradingTransfer.IN:
        text = (
            f"Transfer {done.reference}: {sent} from your {done.wallet.currency_id} wallet "
            f"to trading account {page.account.login}."
        )
    else:
        text = (
            f"Transfer {done.reference}: {page.money(done.account_amount)} from trading "
            f"account {page.account.login} to your {done.wallet.currency_id} wallet."
        )
    messages.success(request, text)


@login_required
@require_POST
def transfer_preview(request: HttpRequest, account_id: int) -> HttpResponse:
    """What the form would move now (htmx: the preview panel, and the
    amount's currency out of band). Without JavaScript: the page with it."""
    page = _Page(request, account_id)
    form = page.form(request.POST)
    form.is_valid()
    if not request.htmx:
        return page.render(form)
    preview, problem = page.preview(form)
    context = {
        "form": form,
        "preview": preview,
        "problem": problem,
        "minimum": page.minimum,
        "account": page.account,
        "open": page.open,
        "oob": True,
    }
    response = render(request, "payments/trading/_preview_response.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- A transfer's status page ---------------------------------------------------------------


def _status_context(transfer: TradingTransfer) -> dict:
    account = transfer.trading_account
    wallet_currency = transfer.wallet.currency
    if account.currency == wallet_currency.code:
        currency: Currency | None = wallet_currency
    else:
        currency = Currency.objects.filter(code=account.currency).first()
    return {
        "transfer": transfer,
        "account": account,
        "wallet_amount": format_amount(transfer.amount, wallet_currency),
        "account_amount": selectors.account_money(transfer.account_amount, account, currency),
        "rate_text": _transfer_rate(transfer, currency),
        "fee_text": _transfer_fee(transfer, currency),
        "nav_active": NAV,
    }


def _transfer_rate(transfer: TradingTransfer, currency: Currency | None) -> str:
    if transfer.rate is None:
        return ""
    account_code = transfer.trading_account.currency
    wallet_code = transfer.wallet.currency_id
    sold, bought = (
        (wallet_code, account_code)
        if transfer.direction == TradingTransfer.IN
        else (account_code, wallet_code)
    )
    return f"1 {sold} = {_rate_text(transfer.rate)} {bought}"


def _transfer_fee(transfer: TradingTransfer, currency: Currency | None) -> str:
    """The conversion fee, in the currency sold (minor units of the ledger)."""
    if transfer.rate is None or not transfer.fee:
        return ""
    sold = transfer.wallet.currency if transfer.direction == TradingTransfer.IN else currency
    return format_amount(transfer.fee, sold) if sold is not None else ""


@login_required
@require_GET
def transfer_detail(request: HttpRequest, reference: str) -> HttpResponse:
    transfer = selectors.trading_transfer_get_for_user(user=request.user, reference=reference)
    return render(request, "payments/trading/detail.html", _status_context(transfer))


@login_required
@require_GET
def transfer_status(request: HttpRequest, reference: str) -> HttpResponse:
    """The status panel alone, polled by htmx every 2 s while the transfer
    is open; a settled transfer's panel polls no more."""
    transfer = selectors.trading_transfer_get_for_user(user=request.user, reference=reference)
    if not request.htmx:
        return redirect("trading_transfers:detail", reference=transfer.reference)
    response = render(request, "payments/trading/_status.html", _status_context(transfer))
    patch_vary_headers(response, ["HX-Request"])
    response["Cache-Control"] = "no-store"
    return response
