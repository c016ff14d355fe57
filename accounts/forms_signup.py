"""The sign-up form, built from the registration flow that applies.

allauth's sign-up form (e-mail, password twice) comes first; then the flow's
fields, grouped by step: profile fields with the profile's own fields and
checks (:class:`accounts.forms.ProfileForm`), custom questions from their
definitions (:mod:`accounts.dynamic_fields`), an optional promo code; last,
one checkbox per legal document of the flow, for its version in effect.

The country of residence (and the campaign) decide the flow, so the form
is rebuilt when they change: by htmx on the page, or, without JavaScript,
on submission, when the flow the visitor saw (posted in ``flow``) is no
longer the one that applies; the form then asks the new questions instead
of signing up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.core import context as allauth_context
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import EMPTY_VALUES, MaxLengthValidator
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import escape, format_html

from backoffice import policies

from .dynamic_fields import answer_to_json, form_field_for
from .forms import ProfileForm
from .models import LegalDocumentVersion, RegistrationField, RegistrationFlow, User
from .registration import (
    CAMPAIGN_PATTERN,
    SESSION_CAMPAIGN,
    campaign_normalise,
    current_versions,
    flow_for,
)
from .services.registration import RegistrationData

# Custom questions are named q_<name> in the form, so that no name a staff
# member picks can clash with the form's own fields.
CUSTOM_PREFIX = "q_"
CONSENT_PREFIX = "consent_"
FLOW_CHANGED = (
    "The questions depend on your country of residence and promo code, and they "
    "have changed. Please check the form and answer the new questions."
)


class ConsentCheckbox(forms.CheckboxInput):
    """A checkbox whose value is the id of the version shown: the form posts
    which version the visitor accepted. A box ticked for another version (one
    since replaced) comes back unticked."""

    def __init__(self, version_id: int, attrs: dict | None = None) -> None:
        self.version_id = str(version_id)
        super().__init__(attrs, check_test=lambda value: str(value) == self.version_id)

    def format_value(self, value: Any) -> str:
        return self.version_id

    def value_from_datadict(self, data, files, name) -> str:
        value = data.get(name)
        return value if isinstance(value, str) else ""


class ConsentField(forms.Field):
    """Accept a legal document's version in effect; cleans to that version."""

    def __init__(self, version: LegalDocumentVersion, **kwargs: Any) -> None:
        self.version = version
        document = version.document
        url = reverse(
            "legal_document_version",
            kwargs={"slug": document.slug, "version": version.version},
        )
        label = format_html(
            'I have read and accept the <a href="{}" target="_blank" rel="noopener">{}</a>'
            '<span class="visually-hidden"> (opens in a new tab)</span> (version {}).',
            url,
            document.title,
            version.version,
        )
        super().__init__(label=label, required=True, widget=ConsentCheckbox(version.pk), **kwargs)

    def clean(self, value: Any) -> LegalDocumentVersion:
        title = self.version.document.title
        if not value:
            raise ValidationError(f"Accept the {title} to open an account.", code="required")
        if str(value) != str(self.version.pk):
            raise ValidationError(
                f"A new version of the {title} is in effect. Please read it and accept it.",
                code="stale",
            )
        return self.version


@dataclass
class Step:
    """One page of the form: its fields and, on the last, the consents."""

    number: int
    total: int
    title: str
    fields: list[forms.BoundField] = field(default_factory=list)
    consents: list[forms.BoundField] = field(default_factory=list)


def _profile_field(definition: RegistrationField) -> forms.Field:
    """The profile's own field (its widget, parsing and limits), with the
    flow's label, help text and whether it is required."""
    base = ProfileForm.base_fields[definition.profile_field]
    form_field = copy.deepcopy(base)
    form_field.label = definition.label or base.label
    form_field.required = definition.required
    form_field.widget.is_required = definition.required
    if definition.help_text:
        form_field.help_text = escape(definition.help_text)
    return form_field


class SignupForm(AllauthSignupForm):
    """allauth's sign-up form plus the fields of the flow that applies.

    ``request`` gives the campaign kept in the session (allauth's own view
    does not pass it: the request allauth's middleware keeps is used then);
    ``preview_flow`` forces a flow, for staff previewing it.
    """

    def __init__(
        self,
        *args: Any,
        request: HttpRequest | None = None,
        preview_flow: RegistrationFlow | None = None,
        **kwargs: Any,
    ) -> None:
        self.request = request if request is not None else allauth_context.request
        super().__init__(*args, **kwargs)
        self.preview = preview_flow is not None
        self.campaign = self._campaign()
        self.flow = preview_flow or flow_for(country=self._raw("country"), campaign=self.campaign)
        self.flow_id = self.flow.pk if self.flow else None
        self.flow_changed = self.is_bound and self._raw("flow") != str(self.flow_id or "")
        self.definitions = list(self.flow.fields.all()) if self.flow else []
        self.versions = current_versions(flow_id=self.flow_id)
        self._build()

    # --- building ----------------------------------------------------------------

    def _raw(self, name: str) -> str:
        source = self.data if self.is_bound else self.initial
        value = source.get(name)
        return value.strip()[:100] if isinstance(value, str) else ""

    def _campaign(self) -> str:
        """The campaign deciding the flow: the promo code field when the form
        is posted (it starts with the campaign of the sign-up link, and the
        visitor may change it), else the link's campaign kept in the session."""
        if self.is_bound or "promo_code" in self.initial:
            return campaign_normalise(self._raw("promo_code"))
        session = getattr(self.request, "session", None)
        return campaign_normalise(session.get(SESSION_CAMPAIGN, "") if session else "")

    def _build(self) -> None:
        account_fields = list(self.fields)  # allauth's: e-mail, passwords
        if "email" in self.fields:
            # allauth would cut a longer address to the column's size and
            # store what is left (no longer an address): refuse it instead.
            email_length = User._meta.get_field("email").max_length
            self.fields["email"].max_length = email_length
            self.fields["email"].validators.append(MaxLengthValidator(email_length))
            self.fields["email"].widget.attrs["maxlength"] = str(email_length)
        numbers = sorted({d.step for d in self.definitions}) or [1]
        by_step: dict[int, list[str]] = {n: [] for n in numbers}
        by_step[numbers[0]][:0] = account_fields
        self.custom: dict[str, RegistrationField] = {}
        self.profile_names: list[str] = []
        for definition in self.definitions:
            if definition.profile_field:
                name = definition.profile_field
                if name in self.fields:
                    continue  # asked twice by mistake: once is enough
                self.fields[name] = _profile_field(definition)
                self.profile_names.append(name)
            else:
                name = CUSTOM_PREFIX + definition.name
                if name in self.fields:
                    continue
                self.fields[name] = form_field_for(definition)
                self.custom[name] = definition
            by_step[definition.step].append(name)
        if "country" not in self.fields:
            # The country decides the flow and whether the visitor may sign up.
            self.fields["country"] = copy.deepcopy(ProfileForm.base_fields["country"])
            self.profile_names.append("country")
            by_step[numbers[0]].insert(len(account_fields), "country")
        self.fields["promo_code"] = forms.CharField(
            label="Promo code",
            required=False,
            max_length=50,
            help_text="If you have one.",
            initial=self.campaign,
            widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "none"}),
        )
        first = by_step[numbers[0]]
        after_country = first.index("country") + 1 if "country" in first else len(first)
        first.insert(after_country, "promo_code")
        self._rebuild_on_change("country", "[name=promo_code]")
        self._rebuild_on_change("promo_code", "[name=country]")
        self.fields["country"].widget.attrs.setdefault("autocomplete", "country")
        self.consent_names: list[str] = []
        for version in self.versions:
            name = CONSENT_PREFIX + version.document.slug
            self.fields[name] = ConsentField(version)
            self.consent_names.append(name)
        self._layout = [(n, by_step[n]) for n in numbers]

    def _rebuild_on_change(self, name: str, include: str) -> None:
        """Ask the server for the form of the flow that now applies (htmx)."""
        if self.preview:
            return
        self.fields[name].widget.attrs.update(
            {
                "hx-get": reverse("account_signup"),
                "hx-trigger": "change",
                "hx-target": "#signup-body",
                "hx-include": include,
                "hx-sync": "closest form:replace",
            }
        )

    @property
    def steps(self) -> list[Step]:
        total = len(self._layout)
        steps = [
            Step(
                number=i,
                total=total,
                title="Your account" if i == 1 else "About you",
                fields=[self[name] for name in names],
            )
            for i, (_number, names) in enumerate(self._layout, start=1)
        ]
        steps[-1].consents = [self[name] for name in self.consent_names]
        return steps

    # --- checking ----------------------------------------------------------------

    def clean_promo_code(self) -> str:
        value = self.cleaned_data.get("promo_code", "").strip().lower()
        if value and not CAMPAIGN_PATTERN.fullmatch(value):
            raise ValidationError(
                "A promo code has letters, digits, dots, dashes and underscores only.",
                code="invalid",
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.flow_changed:
            # Fields the visitor has not seen yet are not "missing": say once
            # what happened and let them answer.
            for name in list(self.errors):
                if name in self.fields and name not in self.data and name != "country":
                    del self.errors[name]
            self.add_error(None, FLOW_CHANGED)
        country = cleaned.get("country")
        if "country" not in self.errors:
            decision = policies.check(None, policies.REGISTER, country=country or "")
            if not decision:
                self.add_error("country", decision.reason)
        return cleaned

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and self._errors and "password1" in self.fields:
            # A refused form does not send passwords back to the page.
            field = self.fields["password1"]
            field.help_text = format_html(
                "<strong>Enter your password again.</strong> {}", field.help_text
            )
            self["password1"].help_text = field.help_text  # the bound field copied it

    def refuse_blocked_country(self) -> None:
        """On an unbound form (the page shown for a chosen country), put the
        policy's refusal next to the country at once, before any typing."""
        country = self._raw("country")
        if country:
            decision = policies.check(None, policies.REGISTER, country=country.upper())
            if not decision:
                # add_error() needs cleaned data, which an unbound form lacks.
                self.errors["country"] = self.error_class([decision.reason])

    # --- saving ------------------------------------------------------------------

    def registration_data(self) -> RegistrationData:
        """What the service records beside the new user (cleaned form only)."""
        data = self.cleaned_data
        return RegistrationData(
            flow_id=self.flow_id,
            campaign=data.get("promo_code", ""),
            profile={name: data.get(name) for name in self.profile_names},
            answers={
                definition.name: answer_to_json(definition, data.get(name))
                for name, definition in self.custom.items()
            },
            consents={data[name].document_id: data[name].pk for name in self.consent_names},
        )

    def save(self, request: HttpRequest):
        # The user, profile, answers and consents are created together or not
        # at all (a refusal in the service rolls the user back).
        with transaction.atomic():
            return super().save(request)


def _profile_cleaner(name: str):
    cleaner = getattr(ProfileForm, f"clean_{name}")

    def clean(self: SignupForm) -> Any:
        value = self.cleaned_data.get(name)
        if value in EMPTY_VALUES:  # an optional profile field left blank
            return value
        return cleaner(self)

    clean.__name__ = f"clean_{name}"
    clean.__doc__ = f"The profile's own check (ProfileForm.clean_{name})."
    return clean


# The profile's checks (age, postal code, ...) apply here unchanged.
for _name in ProfileForm.base_fields:
    if hasattr(ProfileForm, f"clean_{_name}"):
        setattr(SignupForm, f"clean_{_name}", _profile_cleaner(_name))
