"""Forms of the payments admin: a manual wallet adjustment and a reversal.

They validate only; the admin views pass the cleaned data to the services.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms

from backoffice.money import to_minor

from .models import LedgerAccount

# At most 18 digits in all keeps any amount below 10**18 minor units, inside
# the 64-bit integers the ledger stores, whatever the currency's exponent.
MAX_DIGITS = 18


class AdjustBalanceForm(forms.Form):
    """A credit (positive amount) or debit (negative) of one wallet.

    The idempotency key is generated when the form is first shown and travels
    in a hidden field through the confirmation step, so submitting twice
    posts once.
    """

    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown in the ledger and the client's activity timeline.",
    )
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, wallet: LedgerAccount, check_funds: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.wallet = wallet
        self.check_funds = check_funds
        self.fields["amount"] = forms.DecimalField(
            label=f"Amount ({wallet.currency_id})",
            max_digits=MAX_DIGITS,
            decimal_places=wallet.currency.exponent,
            help_text="Positive credits the wallet, negative debits it.",
        )
        self.order_fields(["amount", "reason", "idempotency_key"])

    @classmethod
    def fresh(cls, *, wallet: LedgerAccount) -> AdjustBalanceForm:
        return cls(wallet=wallet, initial={"idempotency_key": uuid.uuid4()})

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount cannot be zero.")
        return amount

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give the reason for the adjustment.")
        return reason

    def clean(self) -> dict:
        cleaned = super().clean()
        amount = cleaned.get("amount")
        if self.check_funds and amount is not None and amount < 0:
            # A courtesy message before confirming. On confirming, the ledger
            # decides under the wallet's lock (and first replays a key already
            # posted, so a double-submitted debit is not mistaken for an overdraft).
            minor = to_minor(amount, self.wallet.currency.exponent)
            if self.wallet.balance + minor < 0:
                raise forms.ValidationError(
                    "Insufficient funds: the wallet holds %(balance)s %(currency)s, "
                    "so it cannot be debited %(debit)s %(currency)s.",
                    params={
                        "balance": f"{self.wallet.currency.format_minor(self.wallet.balance):,}",
                        "debit": f"{self.wallet.currency.format_minor(-minor):,}",
                        "currency": self.wallet.currency_id,
                    },
                    code="insufficient_funds",
                )
        return cleaned

    @property
    def minor_amount(self) -> int:
        return to_minor(self.cleaned_data["amount"], self.wallet.currency.exponent)


class ReverseTransactionForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded on the reversal transaction.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give the reason for the reversal.")
        return reason
