"""Forms of the IB pages: the room's partner application and the dashboard's
link form. They validate; the services in :mod:`ib.services` write."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse

from accounts.models import RegistrationFlow

from .exceptions import IbError
from .models import ReferralLink
from .services.referrals import SIGNUP_PAGE, landing_page_clean

CUSTOM = "custom"


class PartnerApplyForm(forms.Form):
    company = forms.CharField(
        label="Company or brand",
        max_length=200,
        required=False,
        help_text="Leave blank if you work under your own name.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    website = forms.URLField(
        label="Website or social media page",
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text="Where you will share your links, if you have one.",
        widget=forms.TextInput(
            attrs={"autocomplete": "url", "inputmode": "url", "spellcheck": "false"}
        ),
    )
    note = forms.CharField(
        label="What do you plan?",
        max_length=2000,
        help_text="Your audience and how you will reach it: a few sentences are enough.",
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if len(note) < 10:
            raise forms.ValidationError("Tell us a little more: a sentence or two.")
        return note


def landing_choices() -> list[tuple[str, str]]:
    return [
        ("", "Default for the link (sign-up or programme page)"),
        (SIGNUP_PAGE, "Sign-up page"),
        (reverse("account_login"), "Sign-in page"),
        (reverse("ib:apply"), "Partner programme page"),
        (CUSTOM, "Another page of this site…"),
    ]


class LinkCreateForm(forms.Form):
    name = forms.CharField(
        label="Campaign name",
        max_length=100,
        help_text="For you: where you will use the link, e.g. “Spring newsletter”.",
    )
    kind = forms.ChoiceField(
        label="The link is for",
        choices=[
            (ReferralLink.CLIENT, "Clients: traders who open an account"),
            (ReferralLink.PARTNER, "Sub-partners: partners who join your team"),
        ],
        initial=ReferralLink.CLIENT,
        widget=forms.RadioSelect,
    )
    landing = forms.ChoiceField(label="Landing page", required=False)
    landing_custom = forms.CharField(
        label="Path of the page",
        required=False,
        max_length=200,
        help_text="When you chose another page: its path on this site, e.g. /accounts/signup/.",
        widget=forms.TextInput(attrs={"placeholder": "/accounts/signup/", "spellcheck": "false"}),
    )
    registration_flow = forms.ModelChoiceField(
        label="Registration form",
        queryset=RegistrationFlow.objects.none(),
        required=False,
        empty_label="By the visitor's country (default)",
        help_text="Optional: the sign-up form your visitors get. Default: the one for their "
        "country.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["landing"].choices = landing_choices()
        self.fields["registration_flow"].queryset = RegistrationFlow.objects.filter(
            is_active=True
        ).order_by("priority", "name")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        landing = cleaned.get("landing") or ""
        if landing == CUSTOM:
            landing = (cleaned.get("landing_custom") or "").strip()
            if not landing:
                self.add_error("landing_custom", "Give the path of the page, or choose a page.")
                return cleaned
        try:
            cleaned["landing_page"] = landing_page_clean(
                landing, kind=cleaned.get("kind") or ReferralLink.CLIENT
            )
        except IbError as exc:
            self.add_error(
                "landing_custom" if cleaned.get("landing") == CUSTOM else "landing", str(exc)
            )
        return cleaned
