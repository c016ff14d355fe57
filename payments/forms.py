"""Forms of the trader's wallet pages. They validate; services write."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from .models import Currency
from .selectors.wallets import STATUS_FILTERS

# Human wording of journal transaction kinds, in the order the history
# filter offers them. Later work (deposits, withdrawals, conversions) adds
# its kinds here; an unlisted kind is still shown, spelt out from its code.
TRANSACTION_TYPES: dict[str, str] = {
    "deposit": "Deposit",
    "withdrawal_reserve": "Withdrawal",
    "withdrawal_release": "Withdrawal returned",
    "conversion": "Conversion",
    "transfer": "Transfer",
    "trading_transfer_in": "To trading account",
    "trading_transfer_out": "From trading account",
    "adjustment": "Adjustment",
    "reversal": "Reversal",
}

FILTERS = ("type", "status", "date_from", "date_to")

# Keyset cursors are entry ids: bigint on PostgreSQL. A larger number would
# make the database raise instead of the form.
MAX_CURSOR = 2**63 - 1


def kind_label(kind: str) -> str:
    return TRANSACTION_TYPES.get(kind) or kind.replace("_", " ").capitalize()


class WalletOpenForm(forms.Form):
    """Open a wallet in an active currency.

    The menu lists the active currencies the trader has no wallet in yet;
    any active currency is accepted, so that a repeated submission (a double
    click, the back button) finds the wallet already open instead of an error.
    """

    currency = forms.CharField(
        label="Currency",
        max_length=8,
        widget=forms.Select,
        error_messages={"required": "Choose a currency."},
    )

    def __init__(
        self, *args: Any, active: list[Currency], owned_codes: set[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.active = {c.code: c for c in active}
        self.available = [c for c in active if c.code not in owned_codes]
        self.fields["currency"].widget.choices = [("", "Choose a currency")] + [
            (c.code, f"{c.code} · {c.name}") for c in self.available
        ]

    def clean_currency(self) -> Currency:
        code = self.cleaned_data["currency"].strip().upper()
        currency = self.active.get(code)
        if currency is None:
            raise forms.ValidationError(
                "%(code)s is not a currency you can open a wallet in. Choose one from the list.",
                code="unknown_currency",
                params={"code": code or "That"},
            )
        return currency


class HistoryFilterForm(forms.Form):
    """The history filters and the keyset cursor, from the query string."""

    type = forms.ChoiceField(
        label="Type",
        required=False,
        choices=lambda: [("", "All types"), *TRANSACTION_TYPES.items()],  # apps add kinds
        error_messages={"invalid_choice": "Choose a type from the list."},
    )
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status")],  # set in __init__ (the selectors own the states)
        error_messages={"invalid_choice": "Choose a status from the list."},
    )
    date_from = forms.DateField(
        label="From",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    date_to = forms.DateField(
        label="To",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    before = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_CURSOR,
        widget=forms.HiddenInput,
        error_messages={
            "invalid": "This page link is not valid.",
            "min_value": "This page link is not valid.",
            "max_value": "This page link is not valid.",
        },
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *STATUS_FILTERS.items()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in FILTERS)

    def filter_params(self) -> dict[str, str]:
        """The valid filters (no cursor), for links that keep them."""
        params = {}
        for name in FILTERS:
            value = self.cleaned_data.get(name)
            if value:
                params[name] = value.isoformat() if isinstance(value, date) else value
        return params

    def history_filters(self) -> dict[str, Any]:
        """Keyword arguments for ``selectors.wallet_history``: whole days, "to"
        inclusive, in the site's time zone."""
        start, end = self.cleaned_data.get("date_from"), self.cleaned_data.get("date_to")
        return {
            "kind": self.cleaned_data.get("type") or None,
            "status": self.cleaned_data.get("status") or None,
            "since": _start_of(start) if start else None,
            "until": _start_of(end + timedelta(days=1)) if end and end < date.max else None,
            "before_id": self.cleaned_data.get("before"),
        }


class AllHistoryFilterForm(HistoryFilterForm):
    """The history of all the trader's wallets, with a currency filter."""

    currency = forms.ChoiceField(
        label="Currency",
        required=False,
        error_messages={"invalid_choice": "Choose one of your wallets' currencies."},
    )

    field_order = ["currency", "type", "status", "date_from", "date_to", "before"]

    def __init__(self, *args, currencies: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [("", "All currencies")] + [(c, c) for c in currencies]

    @property
    def is_filtered(self) -> bool:
        return super().is_filtered or bool(self.cleaned_data.get("currency"))

    def filter_params(self) -> dict[str, str]:
        params = super().filter_params()
        if self.cleaned_data.get("currency"):
            params = {"currency": self.cleaned_data["currency"], **params}
        return params


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
