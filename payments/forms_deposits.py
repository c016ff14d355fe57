"""Forms of deposits: the client's deposit form, and Finance's wire matching
and flag resolution in the admin. They validate; the services write."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from .models import Currency, PaymentMethod

# Enough for any amount the ledger can hold (10**18 minor units).
MAX_DIGITS = 30


class DepositForm(forms.Form):
    """Currency, method and amount. ``methods`` are the ones this client may
    use for ``currency`` (from the selectors); another id is refused."""

    currency = forms.CharField(widget=forms.HiddenInput, max_length=8)
    method = forms.TypedChoiceField(
        label="Payment method",
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose a payment method.",
            "invalid_choice": "Choose a payment method from the list.",
        },
    )
    amount = forms.DecimalField(
        label="Amount",
        max_digits=MAX_DIGITS,
        min_value=Decimal("0"),
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={
            "required": "Enter the amount you want to deposit.",
            "invalid": "Enter the amount as a number, e.g. 250.00.",
            "min_value": "Enter an amount greater than zero.",
            "max_digits": "This amount is too large.",
        },
    )
    # "method|amount|currency" of the preview the client saw; the deposit is
    # created only when it matches what is submitted.
    previewed = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self, *args: Any, currency: Currency, methods: list[PaymentMethod], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.currency_obj = currency
        self.methods = {m.pk: m for m in methods}
        self.fields["currency"].initial = currency.code
        self.fields["method"].choices = [(m.pk, m.name) for m in methods]
        if len(methods) == 1:
            self.fields["method"].initial = methods[0].pk

    def clean_currency(self) -> str:
        code = self.cleaned_data["currency"].strip().upper()
        if code != self.currency_obj.code:
            raise forms.ValidationError("Choose the currency again.")
        return code

    def clean_method(self) -> PaymentMethod:
        return self.methods[self.cleaned_data["method"]]

    def selected_method(self) -> PaymentMethod | None:
        """The method chosen in the submitted data (for the page to show the
        amount's currency), valid or not yet."""
        raw = self.data.get("method") if self.is_bound else self.fields["method"].initial
        try:
            return self.methods.get(int(raw))
        except (TypeError, ValueError):
            return None

    def preview_token(self) -> str:
        method = self.cleaned_data["method"]
        amount = format(self.cleaned_data["amount"].normalize(), "f")  # "100", never "1E+2"
        return f"{method.pk}|{amount}|{self.currency_obj.code}"

    @property
    def previewed_matches(self) -> bool:
        return bool(self.cleaned_data.get("previewed")) and (
            self.cleaned_data["previewed"] == self.preview_token()
        )


class MatchWireForm(forms.Form):
    """Finance records the bank payment that pays a wire deposit."""

    amount = forms.DecimalField(
        label="Amount received", max_digits=MAX_DIGITS, min_value=Decimal("0")
    )
    currency = forms.CharField(label="Currency", max_length=8)
    bank_reference = forms.CharField(
        label="Bank reference",
        max_length=200,
        help_text="The bank's id of the incoming payment (from the statement).",
    )

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].strip().upper()


class ResolveFlaggedForm(forms.Form):
    decision = forms.ChoiceField(
        label="Decision",
        choices=[
            ("credit", "Credit the wallet as the deposit was created"),
            ("fail", "Fail the deposit (nothing is credited)"),
        ],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        label="Note",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why: kept on the deposit and in the client's timeline.",
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError("Write down why.")
        return note
