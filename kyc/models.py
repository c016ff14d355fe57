"""The KYC constructor and the clients' verification.

Configuration (staff edit it in the admin): ordered **levels**, each with its
limits and its **requirements** (a document, a questionnaire or a check by an
outside provider); **country rules** (blocked, high-risk with extra
requirements); **questionnaires**; configured **providers**; the list of
**reasons** a reviewer picks from.

A client's state: one ``ClientKyc`` row (their level, kept as granted so that
a configuration change never silently moves them), one ``Submission`` per
attempt at a requirement (the current one per requirement is marked), the
``Document`` files of a submission (encrypted, outside any public URL), the
``Review`` decisions and the ``LevelChange`` history.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_countries.fields import CountryField

from accounts.models import FieldDefinition

# --- documents --------------------------------------------------------------------

PASSPORT = "passport"
NATIONAL_ID = "national_id"
DRIVING_LICENCE = "driving_licence"
RESIDENCE_PERMIT = "residence_permit"
PROOF_OF_ADDRESS = "proof_of_address"
SELFIE = "selfie"
SOURCE_OF_FUNDS = "source_of_funds"
OTHER = "other"
DOCUMENT_KINDS = [
    (PASSPORT, "passport"),
    (NATIONAL_ID, "national ID card"),
    (DRIVING_LICENCE, "driving licence"),
    (RESIDENCE_PERMIT, "residence permit"),
    (PROOF_OF_ADDRESS, "proof of address"),
    (SELFIE, "selfie"),
    (SOURCE_OF_FUNDS, "source of funds"),
    (OTHER, "other document"),
]
# Cards with a back that carries data: both sides are asked for when the
# requirement says so.
TWO_SIDED_KINDS = {NATIONAL_ID, DRIVING_LICENCE, RESIDENCE_PERMIT}

FRONT = "front"
BACK = "back"
PAGE = "page"
SIDES = [(FRONT, "front"), (BACK, "back"), (PAGE, "page")]


class KycProvider(models.Model):
    """A configured verification provider (``kyc.providers``): the built-in
    manual review or an outside service such as Sumsub. Its webhooks arrive at
    ``/webhooks/kyc/<identifier>/``."""

    identifier = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=32, help_text="The provider implementation.")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True, editable=False, help_text="Encrypted.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "KYC provider"

    def __str__(self) -> str:
        return self.name


class Level(models.Model):
    """A verification level and what it allows. Limits are in
    ``limits_currency`` (amounts in other currencies are converted at the
    current rate); a blank limit means no limit."""

    number = models.PositiveSmallIntegerField(
        unique=True, help_text="0 is where every client starts; higher is more verified."
    )
    name = models.CharField(max_length=100)
    description = models.CharField(
        max_length=300, blank=True, help_text="Shown to clients: what this level gives."
    )
    limits_currency = models.ForeignKey(
        "payments.Currency", on_delete=models.PROTECT, default="USD", related_name="+"
    )
    deposit_daily_limit = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True
    )
    deposit_monthly_limit = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True
    )
    withdrawal_daily_limit = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True
    )
    withdrawal_monthly_limit = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True
    )
    allows_live_accounts = models.BooleanField("live trading accounts allowed", default=False)
    allows_withdrawals = models.BooleanField("withdrawals allowed", default=False)
    allows_transfers = models.BooleanField(
        "internal transfers allowed",
        default=True,
        help_text="Transfers between wallets, to other clients and to trading accounts.",
    )
    four_eyes = models.BooleanField(
        "second review",
        default=False,
        help_text="Approving this level's items needs a second reviewer (four eyes).",
    )
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} · {self.name}"


class Questionnaire(models.Model):
    """Questions a client answers (an appropriateness test, a source-of-wealth
    declaration). With a pass mark, each answer's points are summed and a
    score below it is refused at once."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, help_text="Shown above the questions.")
    pass_mark = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: not scored.")
    approve_on_pass = models.BooleanField(
        default=False,
        help_text="A scored questionnaire that passes is approved without a reviewer.",
    )
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Question(FieldDefinition):
    questionnaire = models.ForeignKey(
        Questionnaire, on_delete=models.CASCADE, related_name="questions"
    )
    scores = models.JSONField(
        default=dict,
        blank=True,
        help_text='Points per answer, e.g. {"yes": 2, "no": 0}; a checkbox scores "true".',
    )

    class Meta(FieldDefinition.Meta):
        constraints = [
            models.UniqueConstraint(fields=["questionnaire", "name"], name="question_unique_name")
        ]


class Requirement(models.Model):
    """What a level asks for: a document, a questionnaire, or a provider check."""

    DOCUMENT = "document"
    QUESTIONNAIRE = "questionnaire"
    PROVIDER = "provider"
    KINDS = [
        (DOCUMENT, "document"),
        (QUESTIONNAIRE, "questionnaire"),
        (PROVIDER, "check by a provider"),
    ]

    level = models.ForeignKey(Level, on_delete=models.PROTECT, related_name="requirements")
    name = models.CharField(max_length=100, help_text="Shown to clients, e.g. 'Identity document'.")
    kind = models.CharField(max_length=20, choices=KINDS)
    instructions = models.TextField(blank=True, help_text="Shown to clients.")
    # Documents
    document_kinds = models.JSONField(
        default=list,
        blank=True,
        help_text="Document kinds accepted (any one of them), e.g. "
        '["passport", "national_id", "driving_licence"].',
    )
    back_side_required = models.BooleanField(
        default=True, help_text="Cards (ID, driving licence, permit): ask for both sides."
    )
    max_age_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The document must be issued within this many days "
        "(a proof of address: 90); it expires when it gets older.",
    )
    expiry_required = models.BooleanField(
        default=False, help_text="The client gives the document's expiry date; it expires then."
    )
    # Questionnaires
    questionnaire = models.ForeignKey(
        Questionnaire, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Provider checks
    provider = models.ForeignKey(
        KycProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    provider_level = models.CharField(
        max_length=100, blank=True, help_text="The provider's level or flow name."
    )
    only_for_country_rules = models.BooleanField(
        "only for countries naming it",
        default=False,
        help_text="Asked only of clients from countries whose rule lists it "
        "(an extra requirement for high-risk countries).",
    )
    order = models.PositiveSmallIntegerField(default=100)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["level__number", "order", "id"]

    def __str__(self) -> str:
        return f"{self.name} (level {self.level.number})" if self.level_id else self.name


class CountryRule(models.Model):
    """What a country of residence means for KYC."""

    country = CountryField(unique=True)
    blocked = models.BooleanField(default=False, help_text="Residents cannot register or act.")
    high_risk = models.BooleanField("high risk", default=False)
    extra_requirements = models.ManyToManyField(
        Requirement,
        blank=True,
        related_name="country_rules",
        limit_choices_to={"only_for_country_rules": True},
        help_text="Requirements asked only of this country's residents.",
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["country"]

    def __str__(self) -> str:
        return str(self.country.name)


class ReviewReason(models.Model):
    """A reason a reviewer picks when rejecting or asking for a resubmission."""

    REJECT = "reject"
    RESUBMIT = "resubmit"
    BOTH = "both"
    USES = [(REJECT, "rejection"), (RESUBMIT, "resubmission"), (BOTH, "both")]

    code = models.SlugField(max_length=40, unique=True)
    text = models.CharField(max_length=200, help_text="Shown to the client.")
    use = models.CharField(max_length=10, choices=USES, default=BOTH)
    is_active = models.BooleanField("active", default=True)
    order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["order", "text"]

    def __str__(self) -> str:
        return self.text


# --- a client's verification --------------------------------------------------------


class ClientKyc(models.Model):
    """A client's level as granted. Levels only go up by an approval and down
    by an expiry or a staff decision, never by a configuration change."""

    STANDARD = "standard"
    HIGH = "high"
    RISKS = [(STANDARD, "standard"), (HIGH, "high")]

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="kyc"
    )
    level = models.ForeignKey(Level, on_delete=models.PROTECT, related_name="+")
    risk = models.CharField(max_length=10, choices=RISKS, default=STANDARD)
    country = CountryField(blank=True, help_text="The country the rules were applied for.")
    level_changed_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "client KYC"
        verbose_name_plural = "clients' KYC"

    def __str__(self) -> str:
        return f"KYC of {self.user_id}"


class Submission(models.Model):
    """One attempt at a requirement. The latest per (client, requirement) is
    ``is_current``; earlier ones stay as history."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    RESUBMIT = "resubmit"
    EXPIRED = "expired"
    STATUSES = [
        (PENDING, "pending review"),
        (APPROVED, "approved"),
        (REJECTED, "rejected"),
        (RESUBMIT, "resubmission requested"),
        (EXPIRED, "expired"),
    ]
    # "missing" is the absence of a current submission.
    MISSING = "missing"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kyc_submissions"
    )
    requirement = models.ForeignKey(
        Requirement, on_delete=models.PROTECT, related_name="submissions"
    )
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    is_current = models.BooleanField(default=True)
    # Documents
    document_kind = models.CharField(max_length=20, choices=DOCUMENT_KINDS, blank=True)
    document_number = models.CharField(max_length=50, blank=True)
    issued_on = models.DateField(null=True, blank=True)
    expires_on = models.DateField(null=True, blank=True)
    # Questionnaires: [{"name", "label", "answer", "points"}], as asked then.
    answers = models.JSONField(default=list, blank=True)
    score = models.IntegerField(null=True, blank=True)
    # Provider checks
    provider = models.ForeignKey(
        KycProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    provider_reference = models.CharField(max_length=100, blank=True)
    provider_status = models.CharField(max_length=100, blank=True)
    # Review
    first_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Set while an approval awaits its second reviewer.",
    )
    reason = models.ForeignKey(
        ReviewReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason_note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When an approval lapses (document expiry or age)."
    )

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "requirement"],
                condition=models.Q(is_current=True),
                name="submission_one_current",
            )
        ]
        indexes = [
            # The review queue: pending, oldest first.
            models.Index(
                fields=["submitted_at", "id"],
                condition=models.Q(status="pending"),
                name="submission_queue",
            ),
            models.Index(fields=["user", "requirement"], name="submission_user_requirement"),
            # The expiry sweep.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="approved"),
                name="submission_expiry",
            ),
        ]
        permissions = [
            ("review_submission", "Can review KYC submissions"),
            ("view_kyc_document", "Can view KYC documents"),
        ]

    def __str__(self) -> str:
        return f"{self.requirement.name} of {self.user_id} ({self.get_status_display()})"

    @property
    def awaiting_second_review(self) -> bool:
        return self.status == self.PENDING and self.first_approved_by_id is not None


class Document(models.Model):
    """A file of a submission, encrypted at rest in the private document
    storage (``KYC_DOCUMENT_ROOT``), never under a public URL."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="documents")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kyc_documents"
    )
    side = models.CharField(max_length=8, choices=SIDES, default=PAGE)
    storage_name = models.CharField(max_length=200, unique=True, editable=False)
    content_type = models.CharField(max_length=50)
    size = models.PositiveIntegerField(help_text="Bytes, before encryption.")
    sha256 = models.CharField(max_length=64, help_text="Of the original file.")
    original_name = models.CharField(max_length=200, blank=True)
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["submission", "id"]

    def __str__(self) -> str:
        return f"{self.get_side_display()} of submission {self.submission_id}"


class Review(models.Model):
    """A reviewer's decision on a submission (append-only history)."""

    APPROVE = "approve"
    SECOND_APPROVE = "second_approve"
    REJECT = "reject"
    RESUBMIT = "resubmit"
    PROVIDER = "provider"
    DECISIONS = [
        (APPROVE, "approved"),
        (SECOND_APPROVE, "approved (second review)"),
        (REJECT, "rejected"),
        (RESUBMIT, "resubmission requested"),
        (PROVIDER, "decided by the provider"),
    ]

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=20, choices=DECISIONS)
    reason = models.ForeignKey(
        ReviewReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} on {self.submission_id}"


class LevelChange(models.Model):
    """A client's level moved (history)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kyc_level_changes"
    )
    from_level = models.PositiveSmallIntegerField()
    to_level = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=200)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.from_level} → {self.to_level}"


class ProviderApplicant(models.Model):
    """A client's applicant at an outside provider, to map its webhooks back."""

    provider = models.ForeignKey(KycProvider, on_delete=models.PROTECT, related_name="applicants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kyc_applicants"
    )
    applicant_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "applicant_id"], name="applicant_unique_id"
            ),
            models.UniqueConstraint(fields=["provider", "user"], name="applicant_one_per_user"),
        ]

    def __str__(self) -> str:
        return self.applicant_id


class ProviderEvent(models.Model):
    """A webhook received from a provider, kept once (replays are ignored)."""

    provider = models.ForeignKey(KycProvider, on_delete=models.PROTECT, related_name="events")
    event_key = models.CharField(max_length=200)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_key"], name="kyc_event_once")
        ]

    def __str__(self) -> str:
        return self.event_key
