"""The form of the transfer page between a wallet and a trading account.
It validates; the service (``payments.services.trading``) writes.

Wallets are offered from the trader's own list: an id that is not one of
theirs is refused like any other wrong choice, before a service sees it.
The idempotency key is made when the page is shown, so a double click or a
resubmitted page makes one transfer.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms

from accounts.models import TradingAccount
from backoffice.money import MoneyError, to_minor

from .models import LedgerAccount, TradingTransfer
from .templatetags.payments import format_amount

# At most 18 digits keeps any amount inside the ledger's 64-bit minor units.
MAX_DIGITS = 18
IN, OUT = TradingTransfer.IN, TradingTransfer.OUT


def wallet_label(wallet: LedgerAccount) -> str:
    return f"{wallet.currency_id} wallet · {format_amount(wallet.balance, wallet.currency)}"


class TradingTransferForm(forms.Form):
    direction = forms.ChoiceField(
        label="Direction",
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose where the money goes.",
            "invalid_choice": "Choose where the money goes.",
        },
    )
    wallet = forms.TypedChoiceField(
        label="Wallet",
        coerce=int,
        error_messages={
            "required": "Choose a wallet.",
            "invalid_choice": "Choose one of your wallets.",
            "invalid": "Choose one of your wallets.",
        },
    )
    amount = forms.DecimalField(
        label="Amount",
        max_digits=MAX_DIGITS,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={
            "required": "Enter an amount.",
            "invalid": "Enter the amount as a number, such as 250 or 99.50.",
            "max_digits": "The amount is too large.",
            "max_whole_digits": "The amount is too large.",
            "max_decimal_places": "The amount has too many decimal places.",
        },
    )
    idempotency_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form has expired; open the transfer page again.",
            "invalid": "This form has expired; open the transfer page again.",
        },
    )

    def __init__(
        self,
        data=None,
        *,
        account: TradingAccount,
        wallets: list[LedgerAccount],
        initial: dict | None = None,
    ) -> None:
        super().__init__(data, initial=initial)
        self.account = account
        self.wallets = {w.pk: w for w in wallets}
        self.fields["direction"].choices = [
            (IN, f"To trading account {account.login}"),
            (OUT, "To a wallet"),
        ]
        self.fields["wallet"].choices = [("", "Choose a wallet")] + [
            (w.pk, wallet_label(w)) for w in wallets
        ]

    @classmethod
    def fresh(
        cls,
        *,
        account: TradingAccount,
        wallets: list[LedgerAccount],
        direction: str | None = None,
    ) -> TradingTransferForm:
        """An unbound form with a new key, a direction (``?direction=``) and
        the wallet that fits best: one in the account's currency (for a
        transfer in, one with money first)."""
        direction = direction if direction in (IN, OUT) else IN
        initial: dict[str, Any] = {"direction": direction, "idempotency_key": uuid.uuid4()}
        same = [w for w in wallets if w.currency_id == account.currency]
        candidates = same or wallets
        if direction == IN:
            candidates = [w for w in candidates if w.balance > 0] or candidates
        if candidates:
            initial["wallet"] = candidates[0].pk
        return cls(account=account, wallets=wallets, initial=initial)

    # --- What the form holds now (bound or not, valid or not) ---------------------------

    def _value(self, name: str) -> Any:
        if self.is_bound:
            if hasattr(self, "cleaned_data") and name in self.cleaned_data:
                return self.cleaned_data[name]
            return self.data.get(name)
        return self.initial.get(name)

    @property
    def chosen_direction(self) -> str:
        return OUT if self._value("direction") == OUT else IN

    @property
    def chosen_wallet(self) -> LedgerAccount | None:
        try:
            return self.wallets.get(int(self._value("wallet")))
        except (TypeError, ValueError):
            return None

    @property
    def amount_currency(self) -> str:
        """The currency the amount is typed in: the wallet's for a transfer
        in (empty until a wallet is chosen), the account's for one out."""
        if self.chosen_direction == OUT:
            return self.account.currency
        wallet = self.chosen_wallet
        return wallet.currency_id if wallet is not None else ""

    @property
    def amount_unit_text(self) -> str:
        if self.chosen_direction == OUT:
            return f"In {self.account.currency}, the trading account's currency."
        wallet = self.chosen_wallet
        if wallet is None:
            return "In the currency of the wallet you transfer from."
        return f"In {wallet.currency_id}, the currency of the wallet you transfer from."

    # --- Validation -------------------------------------------------------------------

    def selected_wallet(self) -> LedgerAccount | None:
        return self.wallets.get(self.cleaned_data.get("wallet"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        amount: Decimal | None = data.get("amount")
        if amount is None or "direction" not in data:
            return data
        if data["direction"] == OUT:
            places, code = self.account.currency_digits, self.account.currency
        else:
            wallet = self.selected_wallet()
            if wallet is None:
                return data
            places, code = wallet.currency.exponent, wallet.currency_id
        try:
            minor = to_minor(amount, places)
        except MoneyError:
            self.add_error(
                "amount",
                f"{code} amounts have at most {places} decimal places."
                if places
                else f"{code} amounts are whole numbers.",
            )
            return data
        if minor <= 0:
            self.add_error("amount", "Enter an amount greater than zero.")
        return data
