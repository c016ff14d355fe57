"""Forms of the IB admin: commission plans and their rules, the decisions
on partners (approve, reject, suspend, plan, moves), staff creation of a
partner, programme settings and marketing materials.

The forms check what can be checked before anything is written (tier
shares, a plan change's date, a partner looked up by e-mail among those
the member of staff may see), so that an error shows on the form and
nothing is saved; the services check again and do the writing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django import forms
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from accounts.models import Instrument

from .exceptions import IbError
from .models import Material, Partner, Plan, PlanRule, PlanVersion
from .services.plans import tier_shares_parse

# A plan change may start this far back (the time it takes to press "Save").
PAST_TOLERANCE = timezone.timedelta(minutes=1)
GROUP_CHOICES = [("", "any group"), *Instrument.GROUPS]


# --- Plans ------------------------------------------------------------------------------------


def tidy_decimals(form: forms.BaseForm) -> None:
    """Show stored decimals as people write them: 50, not 50.00000000 or 0E-8."""
    for name, field in form.fields.items():
        value = form.initial.get(name)
        if isinstance(field, forms.DecimalField) and isinstance(value, Decimal):
            form.initial[name] = format(value.normalize(), "f") if value else "0"


class PlanForm(forms.ModelForm):
    """A plan's terms. ``effective_from`` opens at the moment the page was
    opened: left as it is, the change takes effect when it is saved; a later
    moment schedules it. A moment in the past is refused (deals already
    closed keep the terms they were paid under)."""

    effective_from = forms.SplitDateTimeField(
        label="Effective from",
        widget=AdminSplitDateTime,
        show_hidden_initial=True,
        help_text=(
            "Changes apply to deals closed from this moment. Leave it as it is for “as soon "
            "as I save”; a later moment schedules the change."
        ),
    )

    class Meta:
        model = Plan
        fields = [
            "name",
            "description",
            "currency",
            "is_active",
            "effective_from",
            "tier_model",
            "tier_shares",
            "min_hold_seconds",
            "allow_own_trading",
            "cap_per_deal",
            "cap_per_period",
            "cap_period",
            "revshare_percent",
            "revshare_period",
            "revshare_carry_negative",
            "cpa_amount",
            "cpa_min_deposit",
            "cpa_min_lots",
            "cpa_within_days",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 60})}
        labels = {
            "min_hold_seconds": "Minimum hold (seconds)",
            "allow_own_trading": "Own trading earns",
            "cap_period": "Period",
            "revshare_period": "Period",
            "revshare_carry_negative": "Carry losses into the next periods",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tidy_decimals(self)
        self.initial["effective_from"] = timezone.now().replace(microsecond=0)
        self.effective_moment: datetime | None = None

    def clean_tier_shares(self) -> str:
        return (self.cleaned_data.get("tier_shares") or "").strip()

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("tier_model") == Plan.FIXED_SHARES:
            text = cleaned.get("tier_shares", "")
            if not text:
                self.add_error(
                    "tier_shares",
                    "A fixed-shares plan needs its tier shares: 100 for the client's partner "
                    "alone, or e.g. 70, 20, 10 for three levels.",
                )
            elif "tier_shares" not in self.errors:
                try:
                    tier_shares_parse(text)
                except IbError as exc:
                    self.add_error("tier_shares", str(exc))
        if "effective_from" in cleaned:
            self._clean_moment(cleaned["effective_from"])
        return cleaned

    def _clean_moment(self, chosen: datetime) -> None:
        now = timezone.now()
        changed = "effective_from" in self.changed_data
        if changed and chosen < now - PAST_TOLERANCE:
            self.add_error(
                "effective_from",
                "A change cannot take effect in the past: deals already closed keep the "
                "terms they were paid under. Choose now or a later moment.",
            )
            return
        moment = chosen if changed else None
        if self.instance.pk is not None:
            latest = (
                PlanVersion.objects.filter(plan_id=self.instance.pk)
                .order_by("-effective_from", "-id")
                .values_list("effective_from", flat=True)
                .first()
            )
            if latest is not None and (moment or now) < latest:
                self.add_error(
                    "effective_from",
                    f"The plan already has a version from "
                    f"{timezone.localtime(latest):%Y-%m-%d %H:%M}: a new one starts at that "
                    "moment or later.",
                )
                return
        self.effective_moment = moment


class PlanRuleForm(forms.ModelForm):
    instrument_group = forms.ChoiceField(
        label="instrument group",
        choices=GROUP_CHOICES,
        required=False,
        help_text="“any group”: every group without a rule of its own.",
    )

    class Meta:
        model = PlanRule
        fields = ["instrument_group", "rebate_per_lot", "commission_share", "spread_share"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tidy_decimals(self)
        current = self.instance.instrument_group if self.instance.pk else ""
        known = {value for value, _label in GROUP_CHOICES}
        if current not in known:  # a group written by code keeps showing
            self.fields["instrument_group"].choices = [*GROUP_CHOICES, (current, current)]


class PlanRuleFormSet(BaseInlineFormSet):
    """What a plan's rules must give: under rate difference, a rate (a
    rebate per lot) somewhere; and a plan must pay something."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        live = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        plan = self.instance
        if plan.tier_model == Plan.RATE_DIFFERENCE and not any(
            (rule.get("rebate_per_lot") or 0) > 0 for rule in live
        ):
            raise ValidationError(
                "A rate-difference plan needs a rule with a rebate per lot: that is the "
                "partner's rate, and each partner above earns the difference to theirs."
            )
        pays = any(
            (rule.get(name) or 0) > 0
            for rule in live
            for name in ("rebate_per_lot", "commission_share", "spread_share")
        )
        if not pays and not plan.revshare_percent and not plan.cpa_amount:
            raise ValidationError(
                "This plan pays nothing: give a rule a rebate or a share, or set a revenue "
                "share or a CPA amount."
            )


# --- Partners: looking them up ----------------------------------------------------------------


def _https_urls(db_field, **kwargs):
    """Web addresses typed without a scheme are https (Django 6's default)."""
    if isinstance(db_field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return db_field.formfield(**kwargs)


class PartnerDetailsForm(forms.ModelForm):
    """The partner's page form: details and payout settings (the fields the
    admin leaves editable for the member of staff)."""

    class Meta:
        model = Partner
        formfield_callback = _https_urls
        fields = [
            "company",
            "website",
            "payout_currency",
            "payout_schedule",
            "payout_minimum",
            "show_client_contacts",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tidy_decimals(self)


def _email(value: str) -> str:
    return (value or "").strip()


def partner_by_email(partners: QuerySet[Partner], email: str) -> Partner:
    """The partner with this e-mail among ``partners`` (those the member of
    staff may see), or a form error that says no more than "not found"."""
    partner = partners.select_related("user").filter(user__email__iexact=_email(email)).first()
    if partner is None:
        raise ValidationError(f"No partner with the e-mail {email} (among those you can see).")
    return partner


class _PartnerFormMixin:
    def __init__(self, *args, partners: QuerySet[Partner], **kwargs) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.partners = partners


def _plan_field(*, required: bool, empty_label: str | None) -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=Plan.objects.filter(is_active=True).select_related("currency"),
        required=required,
        empty_label=empty_label,
        label="plan",
    )


class ApproveForm(forms.Form):
    plan = _plan_field(required=False, empty_label="no plan for now")

    def __init__(self, *args, default_plan: Plan | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if default_plan is not None:
            self.fields["plan"].empty_label = f"the programme's default plan ({default_plan})"
            self.fields["plan"].initial = default_plan.pk


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": 200}),
        error_messages={"required": "Give the reason."},
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Give the reason.")
        return reason


class AssignPlanForm(forms.Form):
    plan = _plan_field(required=True, empty_label=None)


class MovePartnerForm(_PartnerFormMixin, forms.Form):
    new_parent = forms.CharField(
        label="new parent partner's e-mail",
        required=False,
        max_length=254,
    )
    to_top = forms.BooleanField(label="to the top of the tree (no parent)", required=False)
    reason = forms.CharField(max_length=200, required=False)

    def clean(self):
        cleaned = super().clean()
        email, to_top = _email(cleaned.get("new_parent", "")), cleaned.get("to_top")
        if email and to_top:
            raise ValidationError("Either name the new parent or move to the top, not both.")
        if not email and not to_top:
            raise ValidationError("Name the new parent partner's e-mail, or tick “to the top”.")
        cleaned["parent"] = None if to_top else partner_by_email(self.partners, email)
        return cleaned


class MoveClientForm(_PartnerFormMixin, forms.Form):
    partner = forms.CharField(label="new partner's e-mail", required=False, max_length=254)
    no_partner = forms.BooleanField(label="no partner from now on", required=False)
    reason = forms.CharField(max_length=200, required=False)

    def clean(self):
        cleaned = super().clean()
        email, none = _email(cleaned.get("partner", "")), cleaned.get("no_partner")
        if email and none:
            raise ValidationError("Either name the new partner or choose no partner, not both.")
        if not email and not none:
            raise ValidationError("Name the new partner's e-mail, or tick “no partner”.")
        cleaned["target"] = None if none else partner_by_email(self.partners, email)
        return cleaned


class PartnerCreateForm(_PartnerFormMixin, forms.Form):
    """Staff make a client a partner: active at once, on the plan chosen."""

    client = forms.EmailField(
        label="client's e-mail", help_text="The client who becomes a partner."
    )
    parent = forms.CharField(
        label="parent partner's e-mail",
        required=False,
        max_length=254,
        help_text="Blank: at the top of the tree.",
    )
    plan = _plan_field(required=False, empty_label="the programme's default plan")
    company = forms.CharField(max_length=200, required=False)
    website = forms.URLField(required=False, assume_scheme="https")

    def __init__(self, *args, clients: QuerySet, default_plan: Plan | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.clients = clients
        if default_plan is not None:
            self.fields["plan"].empty_label = f"the programme's default plan ({default_plan})"

    def clean_client(self):
        email = _email(self.cleaned_data["client"])
        client = self.clients.filter(email__iexact=email).first()
        if client is None:
            raise ValidationError(f"No client with the e-mail {email} (among those you can see).")
        if Partner.objects.filter(user_id=client.pk).exists():
            raise ValidationError(f"{client.email} is already a partner (or has applied).")
        return client

    def clean_parent(self):
        email = _email(self.cleaned_data.get("parent", ""))
        return partner_by_email(self.partners, email) if email else None


# --- Materials ----------------------------------------------------------------------------------

MAX_BANNER_BYTES = 2 * 1024 * 1024
MAX_BANNER_SIDE = 4000
# Pillow's format name -> the extension the stored file gets (never the upload's).
BANNER_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}


def banner_inspect(upload) -> tuple[str, int, int]:
    """(extension, width, height) of a banner upload, or a ValidationError:
    a real PNG, JPEG, GIF or WebP picture (decoded, not judged by its name
    or its declared type), at most 2 MB and 4,000 pixels a side."""
    if upload.size > MAX_BANNER_BYTES:
        raise ValidationError(
            f"The banner is {upload.size / 1024 / 1024:.1f} MB: at most 2 MB. Save it smaller "
            "or as a JPEG or WebP."
        )
    refused = ValidationError(
        "This is not a PNG, JPEG, GIF or WebP picture (its content was checked, not its name)."
    )
    try:
        upload.seek(0)
        with Image.open(upload, formats=list(BANNER_FORMATS)) as image:
            fmt, (width, height) = image.format, image.size
            if width > MAX_BANNER_SIDE or height > MAX_BANNER_SIDE:
                raise ValidationError(
                    f"The banner is {width}×{height} pixels: at most {MAX_BANNER_SIDE} a side."
                )
            image.verify()
        upload.seek(0)
        with Image.open(upload, formats=[fmt]) as image:
            image.load()  # decodes every byte: a truncated or doctored file fails here
    except ValidationError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise refused from None
    finally:
        upload.seek(0)
    if fmt not in BANNER_FORMATS:
        raise refused
    return BANNER_FORMATS[fmt], width, height


class MaterialForm(forms.ModelForm):
    class Meta:
        model = Material
        fields = ["kind", "title", "image", "text", "language", "is_active", "display_order"]
        widgets = {"text": forms.Textarea(attrs={"rows": 4, "cols": 60})}
        help_texts = {
            "image": "Banners: PNG, JPEG, GIF or WebP, at most 2 MB and 4,000 pixels a side.",
            "text": "For a text: write {link} where the partner's referral link goes.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.banner_size: tuple[int, int] | None = None

    def clean_image(self):
        image = self.cleaned_data.get("image")
        if image and hasattr(image, "content_type"):  # a new upload (not the stored file)
            extension, width, height = banner_inspect(image)
            image.name = f"{uuid.uuid4().hex}.{extension}"
            self.banner_size = (width, height)
        return image

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == Material.BANNER and not cleaned.get("image") and "image" not in self.errors:
            self.add_error("image", "A banner needs its picture.")
        if kind == Material.TEXT:
            text = (cleaned.get("text") or "").strip()
            if not text:
                self.add_error("text", "Write the text partners copy.")
            elif "{link}" not in text:
                self.add_error(
                    "text", "Put {link} where the partner's link goes: the text is for sharing it."
                )
            if cleaned.get("image"):
                self.add_error("image", "A text has no picture: choose “banner” for a picture.")
        return cleaned
