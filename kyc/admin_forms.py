"""Forms of the KYC admin: the constructor's configuration (levels,
requirements, questionnaires and their questions, providers), the review
queue's filters, a reviewer's decision and a level set by hand.

Configuration forms refuse what would change the meaning of what clients
already have (a used requirement moved to another level or made another
kind, the number of a level clients hold): staff deactivate and add instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django_countries import countries

from accounts.dynamic_fields import ChoicesError, definition_errors, parse_choices
from payments.admin.deposits import PaymentProviderForm

from .models import (
    DOCUMENT_KINDS,
    ClientKyc,
    KycProvider,
    Level,
    Question,
    Questionnaire,
    Requirement,
    ReviewReason,
    Submission,
)
from .providers import KYC_PROVIDERS

# --- what configuration is in use ---------------------------------------------------------


def level_usage(level: Level) -> str:
    """Why ``level`` cannot be deleted ("" when nothing uses it)."""
    if level.pk is None:
        return ""
    reasons = []
    clients = ClientKyc.objects.filter(level=level).count()
    if clients:
        reasons.append(f"{clients:,} client{'s' if clients != 1 else ''} hold it")
    submissions = Submission.objects.filter(requirement__level=level).count()
    if submissions:
        reasons.append(f"{submissions:,} submission{'s' if submissions != 1 else ''} answer it")
    requirements = level.requirements.count()
    if requirements and not submissions:
        reasons.append(f"it has {requirements} requirement{'s' if requirements != 1 else ''}")
    return " and ".join(reasons)


def requirement_usage(requirement: Requirement) -> str:
    if requirement.pk is None:
        return ""
    submissions = Submission.objects.filter(requirement=requirement).count()
    if submissions:
        return f"{submissions:,} submission{'s' if submissions != 1 else ''} answer it"
    return ""


def questionnaire_usage(questionnaire: Questionnaire) -> str:
    if questionnaire.pk is None:
        return ""
    used = Requirement.objects.filter(questionnaire=questionnaire).count()
    if used:
        return f"{used} requirement{'s' if used != 1 else ''} ask{'' if used != 1 else 's'} it"
    return ""


def reason_usage(reason: ReviewReason) -> str:
    if reason.pk is None:
        return ""
    used = Submission.objects.filter(reason=reason).count() + reason_reviews(reason)
    if used:
        return f"{used:,} decision{'s' if used != 1 else ''} cite it"
    return ""


def reason_reviews(reason: ReviewReason) -> int:
    from .models import Review

    return Review.objects.filter(reason=reason).count()


# --- configuration -------------------------------------------------------------------------

LIMIT_FIELDS = [
    ("deposit_daily_limit", "deposit_monthly_limit"),
    ("withdrawal_daily_limit", "withdrawal_monthly_limit"),
]


class LevelForm(forms.ModelForm):
    class Meta:
        model = Level
        fields = [
            "number",
            "name",
            "description",
            "limits_currency",
            "deposit_daily_limit",
            "deposit_monthly_limit",
            "withdrawal_daily_limit",
            "withdrawal_monthly_limit",
            "allows_live_accounts",
            "allows_withdrawals",
            "allows_transfers",
            "four_eyes",
            "is_active",
        ]
        help_texts = {
            "deposit_daily_limit": "In the limits currency. Blank: no limit.",
            "withdrawal_daily_limit": "In the limits currency. Blank: no limit.",
        }

    def clean_number(self):
        number = self.cleaned_data["number"]
        held = self.instance.pk and ClientKyc.objects.filter(level=self.instance).exists()
        if held and number != self.instance.number:
            raise ValidationError(
                "Clients hold this level: its number cannot change (their level history "
                "names levels by number). Add a new level instead."
            )
        return number

    def clean(self):
        cleaned = super().clean()
        for daily_name, monthly_name in LIMIT_FIELDS:
            daily, monthly = cleaned.get(daily_name), cleaned.get(monthly_name)
            for name, value in ((daily_name, daily), (monthly_name, monthly)):
                if value is not None and value < Decimal(0):
                    self.add_error(name, "A limit cannot be negative (blank means no limit).")
            if daily is not None and monthly is not None and daily > monthly:
                self.add_error(daily_name, "The daily limit cannot be above the monthly limit.")
        number = cleaned.get("number")
        if cleaned.get("is_active") is False and number is not None:
            lower = Level.objects.filter(is_active=True, number__lt=number)
            others = Level.objects.filter(is_active=True).exclude(pk=self.instance.pk)
            if not lower.exists() and others.exists():
                self.add_error(
                    "is_active",
                    "This is the lowest active level, where every new client starts: "
                    "deactivating it would give new clients the next level's rights "
                    "without any verification.",
                )
        return cleaned


class RequirementForm(forms.ModelForm):
    """One requirement; the fields that matter depend on its kind, and those
    of the other kinds are cleared so that nothing stale stays behind."""

    document_kinds = forms.MultipleChoiceField(
        label="Documents accepted",
        choices=DOCUMENT_KINDS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Documents only: the client uploads any one of them.",
    )

    class Meta:
        model = Requirement
        fields = [
            "level",
            "name",
            "kind",
            "instructions",
            "document_kinds",
            "back_side_required",
            "max_age_days",
            "expiry_required",
            "questionnaire",
            "provider",
            "provider_level",
            "only_for_country_rules",
            "order",
            "is_active",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "questionnaire" in self.fields:
            self.fields["questionnaire"].help_text = "Questionnaires only."
        if "provider" in self.fields:
            self.fields["provider"].help_text = "Checks by a provider only: an outside service."

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == Requirement.DOCUMENT:
            if not cleaned.get("document_kinds"):
                self.add_error("document_kinds", "Choose at least one kind of document.")
        else:
            cleaned["document_kinds"] = []
            cleaned["max_age_days"] = None
            cleaned["expiry_required"] = False
        if kind == Requirement.QUESTIONNAIRE:
            questionnaire = cleaned.get("questionnaire")
            if questionnaire is None:
                self.add_error("questionnaire", "Choose the questionnaire the client answers.")
            elif not questionnaire.is_active:
                self.add_error("questionnaire", "This questionnaire is not active.")
        else:
            cleaned["questionnaire"] = None
        if kind == Requirement.PROVIDER:
            self._clean_provider(cleaned)
        else:
            cleaned["provider"] = None
            cleaned["provider_level"] = ""
        self._clean_in_use(cleaned)
        return cleaned

    def _clean_provider(self, cleaned) -> None:
        provider = cleaned.get("provider")
        if provider is None:
            self.add_error("provider", "Choose the provider that runs the check.")
        elif provider.kind not in KYC_PROVIDERS:
            self.add_error("provider", f"No implementation {provider.kind!r} is installed.")
        elif not KYC_PROVIDERS.get(provider.kind).external:
            self.add_error(
                "provider",
                "The built-in manual review is not an outside check: ask for a document "
                "or a questionnaire instead.",
            )
        elif not provider.enabled:
            self.add_error("provider", "This provider is disabled: enable it first.")
        if not (cleaned.get("provider_level") or "").strip():
            self.add_error("provider_level", "Name the provider's level (or flow) to run.")

    def _clean_in_use(self, cleaned) -> None:
        instance = self.instance
        if instance.pk is None or not Submission.objects.filter(requirement=instance).exists():
            return
        message = (
            "Clients have submitted for this requirement: its {} cannot change. "
            "Deactivate it and add a new requirement instead."
        )
        if "kind" in cleaned and cleaned["kind"] != instance.kind:
            self.add_error("kind", message.format("kind"))
        level = cleaned.get("level")
        if level is not None and level.pk != instance.level_id:
            self.add_error("level", message.format("level"))


class RequirementInlineForm(forms.ModelForm):
    """What a level's page edits of its requirements: order and on/off."""

    class Meta:
        model = Requirement
        fields = ["order", "is_active"]


class QuestionnaireForm(forms.ModelForm):
    class Meta:
        model = Questionnaire
        fields = ["name", "description", "pass_mark", "approve_on_pass", "is_active"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("approve_on_pass") and cleaned.get("pass_mark") is None:
            self.add_error(
                "approve_on_pass", "Only a scored questionnaire (with a pass mark) can approve."
            )
        return cleaned


class QuestionForm(forms.ModelForm):
    """A question: the registration constructor's checks of a field
    definition (:func:`accounts.dynamic_fields.definition_errors`), plus its
    scores: whole points for answers the question can have."""

    class Meta:
        model = Question
        fields = [
            "order",
            "name",
            "label",
            "kind",
            "required",
            "help_text",
            "choices",
            "scores",
            "min_value",
            "max_value",
            "regex",
            "regex_message",
        ]
        widgets = {
            "choices": forms.Textarea(attrs={"rows": 3, "cols": 30}),
            "scores": forms.Textarea(attrs={"rows": 3, "cols": 24}),
            "label": forms.Textarea(attrs={"rows": 2, "cols": 30}),
        }

    def clean(self):
        cleaned = super().clean()
        probe = Question(
            **{
                name: cleaned.get(name)
                for name in ("kind", "choices", "min_value", "max_value", "regex")
            }
        )
        probe.choices = probe.choices or ""
        probe.regex = probe.regex or ""
        if probe.kind:
            for name, message in definition_errors(probe).items():
                if name in self.fields:
                    self.add_error(name, message)
        if "scores" in cleaned and probe.kind:
            self._clean_scores(cleaned, probe)
        return cleaned

    def _clean_scores(self, cleaned, probe: Question) -> None:
        scores = cleaned.get("scores")
        if scores in (None, ""):
            cleaned["scores"] = {}
            return
        if not isinstance(scores, dict):
            self.add_error("scores", 'Scores are a JSON object, e.g. {"yes": 2, "no": 0}.')
            return
        for key, points in scores.items():
            if isinstance(points, bool) or not isinstance(points, int):
                self.add_error("scores", f"The points for {key!r} must be a whole number.")
                return
        if not scores:
            return
        if probe.kind in (Question.CHOICE, Question.MULTIPLE_CHOICE):
            try:
                values = [value for value, _label in parse_choices(probe.choices)]
            except ChoicesError:
                return  # reported on the choices
            allowed, what = values, "choices"
        elif probe.kind == Question.CHECKBOX:
            allowed, what = ["true", "false"], 'the answers "true" (ticked) and "false"'
        else:
            self.add_error("scores", "Only choices and checkboxes are scored.")
            return
        unknown = [key for key in scores if key not in allowed]
        if unknown:
            self.add_error(
                "scores",
                f"Scores name answers the question does not have: {', '.join(unknown)}. "
                f"Score {what}: {', '.join(allowed)}.",
            )


def best_score(question: Question) -> int:
    """The most points one answer to ``question`` can earn."""
    points = [int(p) for p in (question.scores or {}).values()]
    if not points:
        return 0
    if question.kind == Question.MULTIPLE_CHOICE:
        return sum(p for p in points if p > 0)
    return max(0, *points)


class QuestionInlineFormSet(forms.BaseInlineFormSet):
    """A scored questionnaire must be passable: the best answers reach the
    pass mark."""

    def clean(self):
        super().clean()
        if any(form.errors for form in self.forms):
            return
        pass_mark = self.instance.pass_mark
        if pass_mark is None:
            return
        kept = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data"):
                continue
            if self.can_delete and self._should_delete_form(form):
                continue
            if form.instance.pk is None and not form.has_changed():
                continue  # an empty extra row
            kept.append(form.instance)
        best = sum(best_score(question) for question in kept)
        if best < pass_mark:
            raise ValidationError(
                f"The best answers score {best} points, below the pass mark of {pass_mark}: "
                "nobody could pass. Lower the pass mark or score more answers."
            )


class KycProviderForm(PaymentProviderForm):
    """The payments provider form (write-only secrets), for KYC providers."""

    registry = KYC_PROVIDERS

    class Meta:
        model = KycProvider
        fields = ["identifier", "name", "kind", "enabled", "settings"]


# --- the review queue and decisions ----------------------------------------------------------

YES_NO = [("", "all"), ("yes", "yes"), ("no", "no")]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class QueueFilterForm(forms.Form):
    """The queue's filters (GET). An invalid value is reported and ignored."""

    country = forms.ChoiceField(required=False)
    level = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    risk = forms.ChoiceField(required=False, choices=[("", "all"), *ClientKyc.RISKS])
    kind = forms.ChoiceField(
        label="Item", required=False, choices=[("", "all"), *Requirement.KINDS]
    )
    second = forms.ChoiceField(label="Awaiting second review", required=False, choices=YES_NO)
    after = forms.CharField(required=False, max_length=60, widget=forms.HiddenInput)

    FILTERS = ("country", "level", "risk", "kind", "second")

    def __init__(self, *args, levels: list[Level], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "all"), *countries]
        self.fields["level"].choices = [("", "all")] + [
            (str(level.number), str(level)) for level in levels
        ]

    def clean_after(self) -> tuple[datetime, int] | None:
        value = self.cleaned_data.get("after") or ""
        if not value:
            return None
        try:
            micros, pk = value.split("-", 1)
            position = EPOCH + timedelta(microseconds=int(micros)), int(pk)
            if not 0 < position[1] < 2**63:
                raise ValueError(pk)
            return position
        except (ValueError, OverflowError):
            raise ValidationError("This page link is not valid.") from None

    def filters(self) -> dict:
        """The valid filters, by name (invalid ones dropped)."""
        data = getattr(self, "cleaned_data", {})
        return {name: data[name] for name in self.FILTERS if data.get(name) not in (None, "")}


def keyset_cursor(submission: Submission) -> str:
    """The queue position after ``submission``, for the next page's link."""
    micros = (submission.submitted_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{submission.pk}"


def after_position(position: tuple[datetime, int] | None) -> Q:
    """Items after ``position`` in (submitted_at, id) order. The first
    condition alone bounds the index range; the OR inside it alone would
    make the database scan the queue from its start."""
    if position is None:
        return Q()
    submitted_at, pk = position
    return Q(submitted_at__gte=submitted_at) & (Q(submitted_at__gt=submitted_at) | Q(pk__gt=pk))


class DecisionForm(forms.Form):
    """A reviewer's decision. Which reason fits which decision, and when a
    note is needed, is the service's to say (``kyc.services``)."""

    APPROVE = "approve"
    REJECT = "reject"
    RESUBMIT = "resubmit"
    DECISIONS = [(APPROVE, "approve"), (REJECT, "reject"), (RESUBMIT, "ask for a resubmission")]

    decision = forms.ChoiceField(choices=DECISIONS)
    reason = forms.ModelChoiceField(
        queryset=ReviewReason.objects.filter(is_active=True),
        required=False,
        error_messages={"invalid_choice": "Choose one of the listed reasons."},
    )
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    and_next = forms.BooleanField(required=False)
    queue = forms.CharField(required=False, max_length=300)


class SetLevelForm(forms.Form):
    level = forms.ModelChoiceField(
        queryset=Level.objects.filter(is_active=True),
        empty_label=None,
        error_messages={"invalid_choice": "Choose one of the listed levels."},
    )
    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept in the client's level history.",
    )
