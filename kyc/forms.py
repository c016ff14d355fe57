"""The trader's verification forms: a document upload and a questionnaire.

The forms validate what a trader typed (the kind chosen, the sides given, the
dates) so that mistakes show next to their field; the services check it all
again and decide. A file's content is judged only by the service
(``kyc.documents.check_upload``), once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from .models import (
    BACK,
    DOCUMENT_KINDS,
    FRONT,
    PAGE,
    PASSPORT,
    SELFIE,
    TWO_SIDED_KINDS,
    Requirement,
)
from .services import MAX_PAGES, DocumentDetails, expected_sides

KIND_LABELS = dict(DOCUMENT_KINDS)
# Documents that carry a number worth recording (asked, never required).
IDENTITY_KINDS = {PASSPORT, *TWO_SIDED_KINDS}
ACCEPT = "image/jpeg,image/png,application/pdf"
SIDE_FIELDS = {FRONT: "front", BACK: "back", PAGE: "pages"}


def _sentence(text: str) -> str:
    """ "national ID card" → "National ID card" (str.capitalize would lower "ID")."""
    return text[:1].upper() + text[1:]


def max_upload_text() -> str:
    size = settings.KYC_DOCUMENT_MAX_BYTES / (1024 * 1024)
    return f"{size:g} MB"


@dataclass(frozen=True)
class KindOption:
    """A document kind as the page offers it: the sides it needs (for the
    script that shows only those file inputs) and a hint."""

    value: str
    label: str
    sides: str
    hint: str
    id: str
    checked: bool


class DocumentFileInput(forms.FileInput):
    """A file input for a document: JPEG, PNG or PDF, with the size limit
    for the page's script to check before uploading."""

    allow_multiple_selected = True

    def __init__(self, *, multiple: bool = False, capture: str = "", attrs=None):
        attrs = {
            "accept": ACCEPT,
            "data-max-bytes": str(settings.KYC_DOCUMENT_MAX_BYTES),
            **(attrs or {}),
        }
        attrs["multiple"] = multiple
        if multiple:
            attrs["data-max-files"] = str(MAX_PAGES)
        if capture:
            # Opens the camera straight away on a phone (no file library):
            # only for a selfie, which must be taken now anyway.
            attrs["capture"] = capture
        super().__init__(attrs)


class DocumentFileField(forms.FileField):
    """One or several files (a document's pages) as a list; empty is []."""

    def clean(self, data, initial=None):
        values = data if isinstance(data, list | tuple) else [data]
        single = super().clean
        return [single(value, initial) for value in values if value]


class DocumentForm(forms.Form):
    """A document for ``requirement``: its kind (one of those asked), the
    files for the sides that kind needs, and the dates and number the
    requirement asks for."""

    document_kind = forms.ChoiceField(
        label="Document",
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose which document you upload.",
            "invalid_choice": "Choose one of the documents listed.",
        },
    )

    def __init__(self, *args, requirement: Requirement, **kwargs):
        super().__init__(*args, **kwargs)
        self.requirement = requirement
        kinds = [k for k in requirement.document_kinds or [] if k in KIND_LABELS]
        self.kinds = kinds
        field = self.fields["document_kind"]
        field.choices = [(kind, _sentence(KIND_LABELS[kind])) for kind in kinds]
        if len(kinds) == 1:
            # Nothing to choose: the one kind, also when the form omits it.
            field.initial = kinds[0]
            field.required = False
            field.widget = forms.HiddenInput()
        self.side_sets = {kind: expected_sides(requirement, kind) for kind in kinds}
        needs = {side for sides in self.side_sets.values() for side in sides}
        limit = max_upload_text()
        help_file = f"A photo or scan: JPEG, PNG or PDF, up to {limit}."
        if FRONT in needs:
            self.fields["front"] = DocumentFileField(
                label="Front of the card",
                required=False,
                widget=DocumentFileInput(),
                help_text=help_file,
            )
        if BACK in needs:
            self.fields["back"] = DocumentFileField(
                label="Back of the card",
                required=False,
                widget=DocumentFileInput(),
                help_text=help_file,
            )
        if PAGE in needs:
            selfie = kinds == [SELFIE]
            self.fields["pages"] = DocumentFileField(
                label=self._pages_label(kinds),
                required=False,
                widget=DocumentFileInput(
                    multiple=not selfie,
                    capture="user" if selfie else "",
                    attrs={"accept": "image/jpeg,image/png"} if selfie else None,
                ),
                help_text=(
                    f"A photo of your face holding your identity document: JPEG or PNG, "
                    f"up to {limit}."
                    if selfie
                    else f"{help_file} Several pages: choose up to {MAX_PAGES} files at once."
                ),
            )
        if requirement.max_age_days:
            self.fields["issued_on"] = forms.DateField(
                label="Date of issue",
                widget=forms.DateInput(
                    attrs={"type": "date", "max": timezone.localdate().isoformat()}
                ),
                help_text=f"It must be less than {requirement.max_age_days} days old.",
                error_messages={"required": "Enter the date the document was issued."},
            )
        if requirement.expiry_required:
            tomorrow = timezone.localdate() + timedelta(days=1)
            self.fields["expires_on"] = forms.DateField(
                label="Expiry date",
                widget=forms.DateInput(attrs={"type": "date", "min": tomorrow.isoformat()}),
                help_text="As printed on the document.",
                error_messages={"required": "Enter the date the document expires."},
            )
        if IDENTITY_KINDS & set(kinds):
            self.fields["document_number"] = forms.CharField(
                label="Document number",
                required=False,
                max_length=50,
                help_text="Optional: it speeds up the review.",
                widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            )

    def _pages_label(self, kinds: list[str]) -> str:
        paged = [kind for kind in kinds if self.side_sets[kind] == [PAGE]]
        if paged == [SELFIE]:
            return "Selfie"
        if paged == [PASSPORT]:
            return "Passport photo page"
        return "Document"

    # --- reading it --------------------------------------------------------------

    def kind_label(self, kind: str) -> str:
        return KIND_LABELS.get(kind, kind)

    def clean_document_kind(self) -> str:
        kind = self.cleaned_data.get("document_kind") or ""
        if not kind and len(self.kinds) == 1:
            return self.kinds[0]
        if not kind:
            raise forms.ValidationError("Choose which document you upload.")
        return kind

    def clean_document_number(self) -> str:
        value = self.cleaned_data.get("document_number", "").strip()
        if any(not (ch.isalnum() or ch in " -/.") for ch in value):
            raise forms.ValidationError("Use letters, digits, spaces, - / and . only.")
        return value

    def clean_issued_on(self):
        issued = self.cleaned_data.get("issued_on")
        today = timezone.localdate()
        if issued and issued > today:
            raise forms.ValidationError("The issue date cannot be in the future.")
        days = self.requirement.max_age_days
        if issued and days and (today - issued).days > days:
            raise forms.ValidationError(f"The document must be issued within the last {days} days.")
        return issued

    def clean_expires_on(self):
        expires = self.cleaned_data.get("expires_on")
        if expires and expires <= timezone.localdate():
            raise forms.ValidationError(
                "This document has expired: upload one that is still valid."
            )
        return expires

    def clean(self):
        data = super().clean()
        kind = data.get("document_kind")
        if not kind:
            return data
        sides = self.side_sets[kind]
        name = self.kind_label(kind)
        if sides == [PAGE]:
            pages = data.get("pages") or []
            if not pages:
                self.add_error("pages", f"Upload your {name}.")
            elif len(pages) > MAX_PAGES:
                self.add_error("pages", f"Upload at most {MAX_PAGES} pages.")
            for side in (FRONT, BACK):
                if data.get(SIDE_FIELDS[side]):
                    self.add_error(
                        SIDE_FIELDS[side],
                        f"A {name} is uploaded as pages, not as the sides of a card: "
                        "leave this empty.",
                    )
        else:
            for side in sides:
                files = data.get(SIDE_FIELDS[side]) or []
                if not files:
                    self.add_error(SIDE_FIELDS[side], f"Upload the {side} of your {name}.")
                elif len(files) > 1:
                    self.add_error(SIDE_FIELDS[side], "Choose one file for this side.")
            for side in {FRONT, BACK, PAGE} - set(sides):
                field = SIDE_FIELDS[side]
                if field in self.fields and data.get(field):
                    self.add_error(field, f"Not needed for a {name}: leave this empty.")
        return data

    def files_for_service(self) -> list[tuple[str, object]]:
        """(side, uploaded file) for the kind chosen, in the service's terms."""
        kind = self.cleaned_data["document_kind"]
        result = []
        for side in self.side_sets[kind]:
            result.extend((side, upload) for upload in self.cleaned_data.get(SIDE_FIELDS[side], []))
        return result

    def details(self) -> DocumentDetails:
        return DocumentDetails(
            document_kind=self.cleaned_data["document_kind"],
            issued_on=self.cleaned_data.get("issued_on"),
            expires_on=self.cleaned_data.get("expires_on"),
            document_number=self.cleaned_data.get("document_number", ""),
        )

    def add_service_error(self, exc: Exception) -> None:
        """Put a refusal from the service next to the file it is about (the
        service names the side of a file it refused), else above the form."""
        field = SIDE_FIELDS.get(getattr(exc, "side", ""))
        if field is not None and field in self.fields:
            self.add_error(field, str(exc))
        else:
            self.add_error(None, str(exc))

    @property
    def kind_options(self) -> list[KindOption]:
        selected = self["document_kind"].value()
        options = []
        for index, kind in enumerate(self.kinds):
            sides = self.side_sets[kind]
            if sides == [FRONT, BACK]:
                hint = "front and back"
            elif sides == [FRONT]:
                hint = "the front"
            elif kind == PASSPORT:
                hint = "the photo page"
            elif kind == SELFIE:
                hint = "one photo"
            else:
                hint = f"up to {MAX_PAGES} pages"
            options.append(
                KindOption(
                    value=kind,
                    label=_sentence(KIND_LABELS[kind]),
                    sides=" ".join(SIDE_FIELDS[side] for side in sides),
                    hint=hint,
                    id=f"id_document_kind_{index}",
                    checked=selected == kind,
                )
            )
        return options


class QuestionnaireForm(forms.Form):
    """A questionnaire's questions, each a field built like the registration
    constructor's (``accounts.dynamic_fields.form_field_for``)."""

    def __init__(self, *args, questions, **kwargs):
        from accounts.dynamic_fields import form_field_for

        super().__init__(*args, **kwargs)
        self.questions = list(questions)
        for question in self.questions:
            self.fields[question.name] = form_field_for(question)
