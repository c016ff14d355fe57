"""Forms of the convert and transfer pages. They validate; services write.

Wallets are offered from the trader's own list: an id that is not one of
theirs is refused by the form like any other bad choice, before a service
sees it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings

from backoffice.money import MoneyError, to_minor

from .models import LedgerAccount
from .templatetags.payments import format_amount

# At most 18 digits keeps any amount inside the ledger's 64-bit minor units.
MAX_DIGITS = 18
WALLET_CHOICE_ERRORS = {
    "required": "Choose a wallet.",
    "invalid_choice": "Choose one of your wallets.",
    "invalid": "Choose one of your wallets.",
}


def _wallet_label(wallet: LedgerAccount) -> str:
    return f"{wallet.currency_id} · {format_amount(wallet.balance, wallet.currency)}"


def _wallet_field(
    label: str, wallets: list[LedgerAccount], *, blank: str
) -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=label,
        coerce=int,
        choices=[("", blank)] + [(w.pk, _wallet_label(w)) for w in wallets],
        error_messages=WALLET_CHOICE_ERRORS,
    )


def _amount_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        max_digits=MAX_DIGITS,
        min_value=Decimal("0"),
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={
            "required": "Enter an amount.",
            "invalid": "Enter an amount as a number, such as 100 or 99.50.",
            "min_value": "Enter an amount greater than zero.",
            "max_digits": "The amount is too large.",
            "max_whole_digits": "The amount is too large.",
        },
    )


class _WalletsForm(forms.Form):
    def __init__(self, *args: Any, wallets: list[LedgerAccount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wallets = {w.pk: w for w in wallets}

    def wallet(self, name: str) -> LedgerAccount | None:
        return self.wallets.get(self.cleaned_data.get(name))

    def _check_amount(self, wallet: LedgerAccount | None) -> None:
        amount = self.cleaned_data.get("amount")
        if wallet is None or amount is None:
            return
        try:
            minor = to_minor(amount, wallet.currency.exponent)
        except MoneyError:
            places = wallet.currency.exponent
            self.add_error(
                "amount",
                f"{wallet.currency_id} amounts have at most {places} decimal places."
                if places
                else f"{wallet.currency_id} amounts are whole numbers.",
            )
            return
        if minor <= 0:
            self.add_error("amount", "Enter an amount greater than zero.")


class ConvertForm(_WalletsForm):
    """Sell ``amount`` (fee included) of one wallet's currency for another's."""

    from_wallet = forms.TypedChoiceField(coerce=int)  # replaced in __init__
    to_wallet = forms.TypedChoiceField(coerce=int)

    def __init__(self, *args: Any, wallets: list[LedgerAccount], **kwargs: Any) -> None:
        super().__init__(*args, wallets=wallets, **kwargs)
        self.fields["from_wallet"] = _wallet_field("From", wallets, blank="Choose a wallet")
        self.fields["to_wallet"] = _wallet_field("To", wallets, blank="Choose a wallet")
        self.fields["amount"] = _amount_field("Amount to convert")
        self.fields["amount"].help_text = "In the currency of the wallet you convert from."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        source, target = self.wallet("from_wallet"), self.wallet("to_wallet")
        if source is not None and target is not None:
            if source.pk == target.pk:
                self.add_error("to_wallet", "Choose a different wallet to convert to.")
            elif source.currency_id == target.currency_id:
                self.add_error("to_wallet", "Choose a wallet in another currency.")
        self._check_amount(source)
        return data


OWN = "own"
CLIENT = "client"


class TransferForm(_WalletsForm):
    """Move money to another of the trader's wallets, or (when the broker
    allows it) to another client's wallet in the same currency.

    The idempotency key is made when the page is first shown and travels
    through the review step, so confirming twice sends once.
    """

    idempotency_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form has expired; open the transfer page again.",
            "invalid": "This form has expired; open the transfer page again.",
        },
    )

    def __init__(
        self,
        *args: Any,
        wallets: list[LedgerAccount],
        to_clients: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, wallets=wallets, **kwargs)
        self.to_clients = settings.TRANSFERS_TO_OTHER_CLIENTS if to_clients is None else to_clients
        self.fields["from_wallet"] = _wallet_field("From", wallets, blank="Choose a wallet")
        if self.to_clients:
            self.fields["destination"] = forms.ChoiceField(
                label="Send to",
                choices=[(OWN, "One of my wallets"), (CLIENT, "Another client")],
                initial=OWN,
                widget=forms.RadioSelect,
                error_messages={"required": "Choose where to send the money."},
            )
        self.fields["to_wallet"] = _wallet_field("To my wallet", wallets, blank="Choose a wallet")
        self.fields["to_wallet"].required = False
        if self.to_clients:
            self.fields["to_email"] = forms.EmailField(
                label="Client's e-mail address",
                required=False,
                max_length=254,
                help_text="They receive the money in their wallet of the same currency.",
                error_messages={"invalid": "Enter a valid e-mail address."},
            )
        self.fields["amount"] = _amount_field("Amount")
        self.fields["amount"].help_text = "In the currency of the wallet you send from."
        self.fields["reference"] = forms.CharField(
            label="Note (optional)", required=False, max_length=140
        )
        self.order_fields(
            ["from_wallet", "destination", "to_wallet", "to_email", "amount", "reference"]
        )

    @classmethod
    def fresh(cls, *, wallets: list[LedgerAccount], initial: dict | None = None) -> TransferForm:
        return cls(wallets=wallets, initial={**(initial or {}), "idempotency_key": uuid.uuid4()})

    @property
    def to_client(self) -> bool:
        return self.to_clients and self.cleaned_data.get("destination") == CLIENT

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        source = self.wallet("from_wallet")
        if self.to_client:
            if not data.get("to_email") and "to_email" not in self.errors:
                self.add_error("to_email", "Enter the e-mail address of the client you are paying.")
            data["to_wallet"] = None
        else:
            target = self.wallet("to_wallet")
            if target is None and "to_wallet" not in self.errors:
                self.add_error("to_wallet", "Choose a wallet.")
            elif target is not None and source is not None and target.pk == source.pk:
                self.add_error("to_wallet", "Choose a different wallet to transfer to.")
            data["to_email"] = ""
        data["reference"] = (data.get("reference") or "").strip()
        self._check_amount(source)
        return data

    @property
    def converts(self) -> bool:
        """Whether the transfer crosses currencies (and so needs a quote)."""
        source, target = self.wallet("from_wallet"), self.wallet("to_wallet")
        return (
            not self.to_client
            and source is not None
            and target is not None
            and source.currency_id != target.currency_id
        )
