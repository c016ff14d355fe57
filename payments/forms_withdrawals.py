"""Forms of the withdrawal pages. They validate; the services write.

The wallet and method menus list only the trader's own wallets and the
methods open to them: an id typed into the form that is not in the list is
refused like any other wrong choice (never looked up by id).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms

from .models import LedgerAccount, PaymentMethod
from .selectors.withdrawals import method_serves_currency
from .services.withdrawals import DESTINATION_FIELDS, WithdrawalError, destination_clean
from .templatetags.payments import format_amount

# At most 18 digits keeps any amount inside the ledger's 64-bit integers.
MAX_DIGITS = 18


def fee_text(method: PaymentMethod, currency=None) -> str:
    """ "fee 2.5 % + $0.30", "fee 1 %", "no fee": the method's fee, in words."""
    parts = []
    if method.fee_percent:
        parts.append(f"{method.fee_percent.normalize():f} %")
    if method.fee_fixed:
        if currency is not None:
            quantum = Decimal(1).scaleb(-currency.exponent)
            minor = int(method.fee_fixed.quantize(quantum).scaleb(currency.exponent))
            parts.append(format_amount(minor, currency))
        else:
            parts.append(f"{method.fee_fixed.normalize():f}")
    return "fee " + " + ".join(parts) if parts else "no fee"


class WithdrawalForm(forms.Form):
    wallet = forms.TypedChoiceField(
        label="From wallet",
        coerce=int,
        error_messages={
            "required": "Choose the wallet to withdraw from.",
            "invalid_choice": "Choose one of your wallets.",
        },
    )
    method = forms.TypedChoiceField(
        label="Withdrawal method",
        coerce=int,
        error_messages={
            "required": "Choose how you want to be paid.",
            "invalid_choice": "Choose a method from the list.",
        },
    )
    amount = forms.DecimalField(
        label="Amount",
        max_digits=MAX_DIGITS,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={
            "required": "Enter the amount to withdraw.",
            "invalid": "Enter the amount as a number, like 250.00.",
            "max_digits": "That amount is too large.",
        },
        help_text="What you receive. The fee is reserved on top of it.",
    )
    iban = forms.CharField(
        label="IBAN",
        required=False,
        max_length=42,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="The account must be in your name.",
    )
    account_holder = forms.CharField(
        label="Account holder",
        required=False,
        max_length=140,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    address = forms.CharField(
        label="Wallet address",
        required=False,
        max_length=120,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="Copy it from your wallet app; a wrong address loses the money.",
    )
    card_last4 = forms.CharField(
        label="Card (last 4 digits)",
        required=False,
        max_length=4,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text="Optional: the card the payout goes back to.",
    )
    otp_code = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=16,
        help_text="Two-factor authentication is on: the 6-digit code from your app, "
        "or a backup code.",
    )
    idempotency_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={"required": "This form has expired. Open the withdrawal page again."},
    )

    def __init__(
        self,
        data=None,
        *,
        wallets: list[LedgerAccount],
        methods: list[PaymentMethod],
        two_factor: bool,
        preview: bool = False,
        preview_url: str = "",
        initial: dict | None = None,
    ) -> None:
        super().__init__(data, initial=initial)
        self.wallets = {w.pk: w for w in wallets}
        self.all_methods = methods
        self.two_factor = two_factor
        self.preview = preview
        self.fields["wallet"].choices = [
            (w.pk, f"{w.currency_id} · {format_amount(w.balance, w.currency)} available")
            for w in wallets
        ]
        wallet = self.selected_wallet
        if not self.is_bound and wallet is not None:
            self.initial["wallet"] = wallet.pk  # ?wallet=<id> of another user's: the first
        self.methods = {
            m.pk: m
            for m in methods
            if wallet is None or method_serves_currency(m, wallet.currency_id)
        }
        currency = wallet.currency if wallet is not None else None
        # Any method open to the trader validates (a wallet changed without
        # JavaScript gets a clear "does not pay out" below); the menu offers
        # those serving the chosen wallet.
        self.fields["method"].choices = [(m.pk, m.name) for m in methods]
        self.fields["method"].widget.choices = [("", "Choose a method")] + [
            (m.pk, f"{m.name} · {fee_text(m, currency)}") for m in self.methods.values()
        ]
        if self.methods and self.selected_method not in self.methods.values():
            # The first method preselected, so that its details show without
            # JavaScript; and in the preview, after the wallet changed to one
            # the method chosen does not serve.
            first = next(iter(self.methods))
            if not self.is_bound:
                self.initial["method"] = first
            elif preview:
                self.data = self.data.copy()
                self.data[self.add_prefix("method")] = str(first)
        if preview_url:
            # The fields that change the fee ask for a new preview (the form
            # element says where it goes: hx-target and friends are inherited).
            for name, trigger in [
                ("wallet", "change"),
                ("method", "change"),
                ("amount", "input changed delay:400ms, change"),
            ]:
                self.fields[name].widget.attrs.update(
                    {"hx-get": preview_url, "hx-trigger": trigger}
                )
        if two_factor:
            self.fields["otp_code"].required = True
            self.fields["otp_code"].error_messages["required"] = (
                "Enter the code from your authenticator app."
            )
        else:
            del self.fields["otp_code"]
        if preview:
            self.fields["idempotency_key"].required = False
            self.fields.pop("otp_code", None)

    @classmethod
    def fresh(cls, *, wallet_id: Any = None, **kwargs: Any) -> WithdrawalForm:
        return cls(initial={"wallet": wallet_id, "idempotency_key": uuid.uuid4()}, **kwargs)

    def _raw(self, name: str) -> Any:
        if self.is_bound:
            return self.data.get(self.add_prefix(name))
        return self.initial.get(name)

    @property
    def selected_wallet(self) -> LedgerAccount | None:
        """The wallet chosen (the first one when none is), before validation."""
        try:
            return self.wallets[int(self._raw("wallet"))]
        except (TypeError, ValueError, KeyError):
            return next(iter(self.wallets.values()), None)

    @property
    def selected_method(self) -> PaymentMethod | None:
        try:
            method_id = int(self._raw("method"))
        except (TypeError, ValueError):
            return None
        return next((m for m in self.all_methods if m.pk == method_id), None)

    def destination_fields(self) -> list[forms.BoundField]:
        method = self.selected_method
        if method is None:
            return []
        return [self[name] for name in DESTINATION_FIELDS.get(method.icon, ())]

    def clean_wallet(self) -> LedgerAccount:
        wallet = self.wallets.get(self.cleaned_data["wallet"])
        if wallet is None:
            raise forms.ValidationError("Choose one of your wallets.")
        return wallet

    def clean_method(self) -> PaymentMethod:
        method = next((m for m in self.all_methods if m.pk == self.cleaned_data["method"]), None)
        if method is None:
            raise forms.ValidationError("Choose a method from the list.")
        return method

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        wallet, method = data.get("wallet"), data.get("method")
        if wallet is not None and method is not None:
            if not method_serves_currency(method, wallet.currency_id):
                self.add_error(
                    "method",
                    f"{method.name} does not pay out {wallet.currency_id}. Choose another method.",
                )
            elif not self.preview:
                try:
                    data["destination"] = destination_clean(method=method, data=data)
                except WithdrawalError as exc:
                    self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return data

    def add_service_error(self, exc: WithdrawalError) -> None:
        field = exc.field if exc.field in self.fields else None
        self.add_error(field, str(exc))
