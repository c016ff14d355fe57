from __future__ import annotations

from datetime import date

from django import forms
from django.conf import settings
from django.utils import timezone
from django_countries import countries
from django_countries.fields import LazyTypedChoiceField
from phonenumber_field.formfields import PhoneNumberField

MINIMUM_AGE = 18


class ProfileForm(forms.Form):
    first_name = forms.CharField(max_length=150, label="First name")
    last_name = forms.CharField(max_length=150, label="Last name")
    date_of_birth = forms.DateField(
        label="Date of birth", widget=forms.DateInput(attrs={"type": "date"})
    )
    country = LazyTypedChoiceField(
        choices=[("", "Choose a country")] + list(countries), label="Country of residence"
    )
    phone = PhoneNumberField(
        label="Phone",
        help_text="International format, e.g. +44 20 7946 0958.",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    address_line1 = forms.CharField(
        max_length=200,
        label="Address",
        widget=forms.TextInput(attrs={"autocomplete": "address-line1"}),
    )
    address_line2 = forms.CharField(
        max_length=200,
        label="Address (line 2)",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "address-line2"}),
    )
    city = forms.CharField(max_length=100, label="City")
    state = forms.CharField(max_length=100, label="State or region", required=False)
    postal_code = forms.CharField(max_length=20, label="Postal code")
    language = forms.ChoiceField(choices=settings.LANGUAGES, label="Language")

    def clean_date_of_birth(self) -> date:
        dob = self.cleaned_data["date_of_birth"]
        today = timezone.localdate()
        if dob > today:
            raise forms.ValidationError("The date of birth cannot be in the future.")
        if dob.year < 1900:
            raise forms.ValidationError("Enter a real date of birth.")
        age = today.year - dob.year - ((today.month, today.day) < (dob.month, dob.day))
        if age < MINIMUM_AGE:
            raise forms.ValidationError(f"You must be at least {MINIMUM_AGE} years old.")
        return dob

    def clean_postal_code(self) -> str:
        value = self.cleaned_data["postal_code"].strip().upper()
        if not all(c.isalnum() or c in " -" for c in value):
            raise forms.ValidationError("Use letters, digits, spaces and hyphens only.")
        return value

    @classmethod
    def initial_for(cls, user, profile) -> dict:
        initial = {"first_name": user.first_name, "last_name": user.last_name}
        for name in cls.base_fields:
            if hasattr(profile, name):
                value = getattr(profile, name)
                initial[name] = value if value is not None else ""
        initial["country"] = profile.country.code if profile.country else ""
        initial["phone"] = str(profile.phone) if profile.phone else ""
        return initial


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Authentication code",
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "spellcheck": "false",
                "autocapitalize": "off",
            }
        ),
        help_text="The 6-digit code from your authenticator app, or a backup code.",
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split()).replace("-", "")
        if not code.isalnum() or not 6 <= len(code) <= 10:
            raise forms.ValidationError("Enter the 6-digit code or a 10-character backup code.")
        return code


class TotpCodeForm(CodeForm):
    """Only a code from the authenticator app (not a backup code)."""

    code = forms.CharField(
        label="Code from the app",
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"}
        ),
        help_text="The 6-digit code your authenticator app shows now.",
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not (code.isdigit() and len(code) == 6):
            raise forms.ValidationError("Enter the 6-digit code from your authenticator app.")
        return code


# --- Trading accounts (room: /room/accounts/) ----------------------------------------


def _leverage_label(leverage: int) -> str:
    return f"1:{leverage}"


class TradingAccountOpenForm(forms.Form):
    """Pick an account type (from ``types``, the ones the trader may open)
    and a leverage among the type's choices (blank: the type's default)."""

    account_type = forms.TypedChoiceField(
        label="Account type",
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose an account type.",
            "invalid_choice": "Choose one of the account types offered.",
        },
    )
    leverage = forms.TypedChoiceField(
        label="Leverage",
        coerce=int,
        required=False,
        empty_value=None,
        help_text="How much you may trade for each unit of margin. You can change it later.",
        error_messages={"invalid_choice": "This leverage is not offered for this account type."},
    )
    # One id per displayed form: a reload of the result page opens nothing more.
    request_id = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": "The form was incomplete; reload the page and try again.",
            "invalid": "The form was incomplete; reload the page and try again.",
        },
    )

    def __init__(self, *args, types, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.types = {t.pk: t for t in types}
        self.fields["account_type"].choices = [(t.pk, t.name) for t in types]
        self.chosen = self._chosen_type()
        self.fields["leverage"].choices = self.leverage_choices(self.chosen)
        if self.chosen is not None:
            messages = self.fields["leverage"].error_messages
            messages["invalid_choice"] = self._not_offered(self.chosen)

    def _chosen_type(self):
        raw = self.data.get(self.add_prefix("account_type")) if self.is_bound else None
        raw = raw or self.initial.get("account_type")
        try:
            return self.types.get(int(raw))
        except (TypeError, ValueError):
            return None

    def leverage_choices(self, account_type=None) -> list[tuple[str, str]]:
        """The chosen type's leverages; before a type is chosen, all offered."""
        if account_type is not None:
            values = sorted(set(account_type.leverage_choices or []))
            default = f"The type's default ({_leverage_label(account_type.default_leverage)})"
        else:
            values = sorted({x for t in self.types.values() for x in t.leverage_choices or []})
            default = "The type's default"
        return [("", default), *((str(x), _leverage_label(x)) for x in values)]

    def clean_account_type(self):
        return self.types[self.cleaned_data["account_type"]]

    def clean(self):
        cleaned = super().clean()
        account_type, leverage = cleaned.get("account_type"), cleaned.get("leverage")
        if account_type is None or leverage is None:
            return cleaned
        if leverage not in (account_type.leverage_choices or []):
            self.add_error("leverage", self._not_offered(account_type))
        return cleaned

    @staticmethod
    def _not_offered(account_type) -> str:
        offered = ", ".join(map(_leverage_label, sorted(account_type.leverage_choices or [])))
        return f"{account_type.name} offers these leverages: {offered}."


class TradingLeverageForm(forms.Form):
    """A new leverage for ``account``, among its type's choices."""

    leverage = forms.TypedChoiceField(
        label="New leverage",
        coerce=int,
        error_messages={"invalid_choice": "This leverage is not offered for this account."},
    )

    def __init__(self, *args, account, **kwargs) -> None:
        kwargs.setdefault("auto_id", "leverage_%s")
        kwargs.setdefault("initial", {"leverage": account.leverage})
        super().__init__(*args, **kwargs)
        values = sorted(set(account.account_type.leverage_choices or []))
        self.fields["leverage"].choices = [(str(x), _leverage_label(x)) for x in values]


class TradingPasswordResetForm(CodeForm):
    """Resetting a trading password asks for a code when two-factor
    authentication is on; without it, the form has no field."""

    def __init__(self, *args, two_factor: bool, **kwargs) -> None:
        kwargs.setdefault("auto_id", "reset_%s")
        super().__init__(*args, **kwargs)
        self.two_factor = two_factor
        if not two_factor:
            del self.fields["code"]
