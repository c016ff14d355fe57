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
