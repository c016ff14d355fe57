"""Introducing brokers: the partner tree, referral links and attribution,
commission plans (versioned), commissions and payouts.

The tree is a materialised path (django-treebeard's ``MP_Node``): a
partner's ancestors are the prefixes of its path and its subtree is the
paths that start with it, both one index range away at any depth. Moves are
recorded (:class:`PartnerMove`) so that accrual finds the chain a deal had
when it closed: a move is effective for deals closed after it.

Money is integer minor units of the row's currency, as in the ledger.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from treebeard.mp_tree import MP_Node

PERCENT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]
NON_NEGATIVE = [MinValueValidator(Decimal("0"))]


class Plan(models.Model):
    """A commission plan as staff edit it. What accrual reads is the plan's
    :class:`PlanVersion` in force when the deal closed: saving a plan through
    ``ib.services.plans.plan_save`` records a new version from its
    ``effective_from``, so a change applies to deals closed after it."""

    FIXED_SHARES = "fixed_shares"
    RATE_DIFFERENCE = "rate_difference"
    TIER_MODELS = [
        (FIXED_SHARES, "fixed shares per level above the trader"),
        (RATE_DIFFERENCE, "rate difference (each ancestor earns its rate minus the one below)"),
    ]
    DAY, WEEK, MONTH = "day", "week", "month"
    PERIODS = [(DAY, "day"), (WEEK, "week"), (MONTH, "month")]

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    currency = models.ForeignKey(
        "payments.Currency",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Rebates, CPA amounts and caps are in this currency.",
    )
    is_active = models.BooleanField("active", default=True)
    tier_model = models.CharField(max_length=20, choices=TIER_MODELS, default=FIXED_SHARES)
    tier_shares = models.CharField(
        max_length=100,
        default="100",
        blank=True,
        help_text=(
            "Fixed shares: percent of the deal's commission for the trader's partner, "
            "then each level above, e.g. 70, 20, 10. Levels beyond the list earn nothing."
        ),
    )
    min_hold_seconds = models.PositiveIntegerField(
        default=0, help_text="Deals held shorter than this earn nothing."
    )
    allow_own_trading = models.BooleanField(
        default=False, help_text="The partner earns on the deals of their own accounts."
    )
    cap_per_deal = models.DecimalField(
        max_digits=20,
        decimal_places=8,
        null=True,
        blank=True,
        validators=NON_NEGATIVE,
        help_text="Most paid for one deal, all levels together.",
    )
    cap_per_period = models.DecimalField(
        max_digits=20,
        decimal_places=8,
        null=True,
        blank=True,
        validators=NON_NEGATIVE,
        help_text="Most one partner earns on this plan in one period.",
    )
    cap_period = models.CharField(max_length=5, choices=PERIODS, default=MONTH)
    revshare_percent = models.DecimalField(
        "revenue share %",
        max_digits=6,
        decimal_places=3,
        null=True,
        blank=True,
        validators=PERCENT,
        help_text="Share of the broker's net result on the referred clients, per period.",
    )
    revshare_period = models.CharField(max_length=5, choices=PERIODS, default=MONTH)
    revshare_carry_negative = models.BooleanField(
        default=False,
        help_text="A losing period is carried into the next ones (else each period starts at 0).",
    )
    cpa_amount = models.DecimalField(
        "CPA amount",
        max_digits=20,
        decimal_places=8,
        null=True,
        blank=True,
        validators=NON_NEGATIVE,
    )
    cpa_min_deposit = models.DecimalField(
        "CPA minimum first deposit",
        max_digits=20,
        decimal_places=8,
        default=Decimal("0"),
        validators=NON_NEGATIVE,
    )
    cpa_min_lots = models.DecimalField(
        "CPA minimum lots",
        max_digits=16,
        decimal_places=4,
        default=Decimal("0"),
        validators=NON_NEGATIVE,
    )
    cpa_within_days = models.PositiveIntegerField(
        "CPA lots within days",
        default=30,
        help_text="The minimum lots must be traded within this many days of the deposit.",
    )
    effective_from = models.DateTimeField(
        default=timezone.now, help_text="Changes apply to deals closed from this moment."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PlanRule(models.Model):
    """What one instrument group earns under a plan (blank group: any group
    without a rule of its own)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="rules")
    instrument_group = models.CharField(
        max_length=16, blank=True, help_text="Blank: every group without its own rule."
    )
    rebate_per_lot = models.DecimalField(
        max_digits=20,
        decimal_places=8,
        default=Decimal("0"),
        validators=NON_NEGATIVE,
        help_text="In the plan's currency. Under rate difference this is the partner's rate.",
    )
    commission_share = models.DecimalField(
        "commission share %",
        max_digits=6,
        decimal_places=3,
        default=Decimal("0"),
        validators=PERCENT,
    )
    spread_share = models.DecimalField(
        "spread share %",
        max_digits=6,
        decimal_places=3,
        default=Decimal("0"),
        validators=PERCENT,
        help_text="Of the instrument's spread markup times the deal's volume.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "instrument_group"], name="ib_rule_group")
        ]

    def __str__(self) -> str:
        return self.instrument_group or "any group"


class PlanVersion(models.Model):
    """An immutable snapshot of a plan's terms and rules (``terms``, the
    shape ``ib.services.plans.plan_terms`` writes), in force from
    ``effective_from`` until the next version's."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="versions")
    effective_from = models.DateTimeField()
    terms = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["plan", "-effective_from", "-id"]
        indexes = [models.Index(fields=["plan", "-effective_from"], name="ib_version_plan_time")]

    def __str__(self) -> str:
        return f"{self.plan} from {self.effective_from:%Y-%m-%d %H:%M}"


class Partner(MP_Node):
    """An introducing broker: a user placed in the affiliate tree."""

    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    STATUSES = [
        (PENDING, "pending approval"),
        (ACTIVE, "active"),
        (REJECTED, "rejected"),
        (SUSPENDED, "suspended"),
    ]
    MANUAL = "manual"
    DAILY = "daily"
    WEEKLY = "weekly"
    SCHEDULES = [(MANUAL, "by hand or on request"), (DAILY, "daily"), (WEEKLY, "weekly")]

    # Paths of 4 characters per level: 1.6 million children per parent.
    steplen = 4
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    node_order_by: list[str] = []

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="partner"
    )
    # Denormalised from the path for plain joins (kept by the services).
    parent_partner = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children_set",
        editable=False,
    )
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING, db_index=True)
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="partners"
    )
    company = models.CharField(max_length=200, blank=True)
    website = models.URLField(blank=True)
    application_note = models.TextField(blank=True, help_text="What the applicant wrote.")
    payout_currency = models.ForeignKey(
        "payments.Currency", on_delete=models.PROTECT, related_name="+", default="USD"
    )
    payout_schedule = models.CharField(max_length=10, choices=SCHEDULES, default=MANUAL)
    payout_minimum = models.DecimalField(
        max_digits=20,
        decimal_places=8,
        default=Decimal("50"),
        validators=NON_NEGATIVE,
        help_text="In the payout currency: requests and scheduled payouts below it wait.",
    )
    payouts_held = models.BooleanField(default=False)
    hold_reason = models.CharField(max_length=200, blank=True)
    show_client_contacts = models.BooleanField(
        default=False, help_text="This partner sees their clients' e-mail and phone."
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("approve_partner", "Can approve partner applications"),
            ("move_partner", "Can move partners and clients in the tree"),
            ("pay_partner", "Can pay out and hold partner commissions"),
        ]
        indexes = [
            # Subtree reads are prefix matches on the path (LIKE 'path%').
            models.Index(
                fields=["path"], name="ib_partner_path_prefix", opclasses=["varchar_pattern_ops"]
            )
        ]

    def __str__(self) -> str:
        return self.user.email if self.user_id else f"partner {self.pk}"


class PlanAssignment(models.Model):
    """Which plan a partner was on from when: accrual reads the one in force
    at the deal's close."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="assignments")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["partner", "-since", "-id"]
        indexes = [models.Index(fields=["partner", "-since"], name="ib_assignment_time")]

    def __str__(self) -> str:
        return f"{self.partner_id} on plan {self.plan_id} from {self.since:%Y-%m-%d}"


class PartnerMove(models.Model):
    """A partner moved under another parent (or a client to another partner):
    the audit record, and what accrual reads to find the chain of a deal
    closed before the move."""

    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="moves"
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    old_parent = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    new_parent = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"move at {self.at:%Y-%m-%d %H:%M}"


class ReferralLink(models.Model):
    """A partner's tracking link; its code also works typed in as a promo code."""

    CLIENT = "client"
    PARTNER = "partner"
    KINDS = [(CLIENT, "clients"), (PARTNER, "sub-partners")]

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="links")
    kind = models.CharField(max_length=10, choices=KINDS, default=CLIENT)
    code = models.CharField(max_length=50, unique=True)
    name = models.CharField("campaign", max_length=100)
    landing_page = models.CharField(
        max_length=200,
        default="/accounts/signup/",
        help_text="A path on this site where the visitor lands.",
    )
    registration_flow = models.ForeignKey(
        "accounts.RegistrationFlow",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    is_active = models.BooleanField("active", default=True)
    clicks = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.code


class Click(models.Model):
    """One visit through a link; the attribution cookie carries its token."""

    link = models.ForeignKey(ReferralLink, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=32, unique=True)
    at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["link", "at"], name="ib_click_link_time")]

    def __str__(self) -> str:
        return f"click {self.token[:8]}"


class Referral(models.Model):
    """A client attributed to a partner (their direct partner) from
    ``since`` until ``until`` (open: now). One open row per client."""

    COOKIE = "cookie"
    PROMO = "promo"
    STAFF = "staff"
    SOURCES = [(COOKIE, "link visit"), (PROMO, "promo code"), (STAFF, "set by staff")]

    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referrals"
    )
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="referrals")
    link = models.ForeignKey(
        ReferralLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="referrals"
    )
    source = models.CharField(max_length=10, choices=SOURCES)
    since = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client"], condition=Q(until__isnull=True), name="ib_referral_current"
            )
        ]
        indexes = [
            models.Index(fields=["partner", "since"], name="ib_referral_partner"),
            models.Index(fields=["link"], name="ib_referral_link"),
        ]

    def __str__(self) -> str:
        return f"client {self.client_id} → partner {self.partner_id}"


class Payout(models.Model):
    """Commissions paid into the partner's wallet in one ledger posting."""

    SCHEDULED = "scheduled"
    REQUESTED = "requested"
    MANUAL = "manual"
    KINDS = [(SCHEDULED, "scheduled"), (REQUESTED, "on request"), (MANUAL, "by staff")]

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="payouts")
    kind = models.CharField(max_length=10, choices=KINDS)
    currency = models.ForeignKey("payments.Currency", on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Minor units credited to the partner's wallet.")
    commissions = models.PositiveIntegerField(default=0, help_text="How many rows it covers.")
    covers_from = models.DateTimeField(null=True, blank=True)
    covers_until = models.DateTimeField(null=True, blank=True)
    # {currency: {"amount": minor, "rate": "1.0", "credited": minor}} per
    # commission currency converted at the moment of payout.
    breakdown = models.JSONField(default=dict)
    journal = models.OneToOneField(
        "payments.JournalTransaction", on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["partner", "-created_at"], name="ib_payout_partner")]

    def __str__(self) -> str:
        return f"payout #{self.pk}"


class Commission(models.Model):
    """What one partner earned from one source: a deal (``deal``), a first
    deposit (``cpa``) or a revenue-share period (``revshare``).

    Unique per source and partner, so accrual is idempotent. The figures
    that produced the amount are kept in columns (one row per deal and
    level can be millions) and explained by ``ib.display``."""

    DEAL = "deal"
    CPA = "cpa"
    REVSHARE = "revshare"
    KINDS = [(DEAL, "trading"), (CPA, "CPA"), (REVSHARE, "revenue share")]

    kind = models.CharField(max_length=8, choices=KINDS)
    # No database foreign keys on the hot columns: each would be checked row
    # by row at commit, millions of times per accrual run (docs/PERFORMANCE.md,
    # "IB commission accrual"); partners and payouts are never deleted.
    partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        related_name="commissions",
        db_index=False,
        db_constraint=False,
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # No foreign key: accrual writes millions of rows and the deal is
    # immutable; the unique constraint below is the one index it needs.
    deal_id = models.BigIntegerField(null=True, blank=True)
    deposit_id = models.BigIntegerField(null=True, blank=True)
    period_start = models.DateField(null=True, blank=True)
    plan_version = models.ForeignKey(
        PlanVersion,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    level = models.PositiveSmallIntegerField(default=1, help_text="1: the client's own partner.")
    instrument_group = models.CharField(max_length=16, blank=True)
    lots = models.DecimalField(max_digits=16, decimal_places=4, default=Decimal("0"))
    # The parts before tiers and caps, in the commission's currency.
    rebate = models.BigIntegerField(default=0)
    share = models.BigIntegerField(default=0, help_text="Commission and spread shares.")
    basis = models.BigIntegerField(
        default=0, help_text="Rate difference: the rate below; revenue share: the net result."
    )
    tier_percent = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True)
    capped = models.BooleanField(default=False)
    amount = models.BigIntegerField()
    currency = models.ForeignKey(
        "payments.Currency",
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    earned_at = models.DateTimeField(help_text="The deal's close, the deposit, the period's end.")
    created_at = models.DateTimeField(default=timezone.now)
    payout = models.ForeignKey(
        Payout,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="items",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deal_id", "partner"],
                condition=Q(kind="deal"),
                name="ib_commission_deal_partner",
            ),
            models.UniqueConstraint(
                fields=["client", "partner"], condition=Q(kind="cpa"), name="ib_commission_cpa"
            ),
            models.UniqueConstraint(
                fields=["partner", "period_start", "plan_version"],
                condition=Q(kind="revshare"),
                name="ib_commission_revshare",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "-earned_at"], name="ib_commission_partner_time"),
            models.Index(
                fields=["partner", "currency"],
                condition=Q(payout__isnull=True),
                name="ib_commission_unpaid",
            ),
            models.Index(
                fields=["payout"],
                condition=Q(payout__isnull=False),
                name="ib_commission_payout",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class PendingCpa(models.Model):
    """A first deposit that qualifies for CPA once the client trades the
    plan's minimum lots before ``deadline``."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    deposit_id = models.BigIntegerField()
    plan_version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="+")
    deposited_at = models.DateTimeField()
    deadline = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "partner"], name="ib_pending_cpa_once")
        ]

    def __str__(self) -> str:
        return f"pending CPA for client {self.client_id}"


class AccrualRun(models.Model):
    """One pass of accrual over a range of deals: progress and figures for
    operators (deal ids ``first_deal``..``last_deal`` of one import)."""

    first_deal = models.BigIntegerField()
    last_deal = models.BigIntegerField()
    deals = models.PositiveIntegerField(default=0)
    commissions = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"deals {self.first_deal}–{self.last_deal}"


class Material(models.Model):
    """A banner or text staff upload for partners; ``{link}`` in the text (or
    the banner's link) is replaced by the partner's referral link."""

    BANNER = "banner"
    TEXT = "text"
    KINDS = [(BANNER, "banner"), (TEXT, "text")]

    kind = models.CharField(max_length=10, choices=KINDS)
    title = models.CharField(max_length=200)
    image = models.ImageField(upload_to="ib/materials/", blank=True)
    width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    text = models.TextField(blank=True, help_text="Use {link} where the partner's link goes.")
    language = models.CharField(max_length=10, choices=settings.LANGUAGES, default="en")
    is_active = models.BooleanField("active", default=True)
    display_order = models.PositiveSmallIntegerField(default=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["display_order", "-created_at"]

    def __str__(self) -> str:
        return self.title


class Settings(models.Model):
    """The IB programme's switches (one row, edited in the admin)."""

    FIRST_CLICK = "first"
    LAST_CLICK = "last"
    ATTRIBUTION = [(FIRST_CLICK, "first click wins"), (LAST_CLICK, "last click wins")]

    attribution = models.CharField(max_length=5, choices=ATTRIBUTION, default=FIRST_CLICK)
    cookie_days = models.PositiveSmallIntegerField(
        "cookie lifetime (days)", default=30, validators=[MinValueValidator(1)]
    )
    show_client_contacts = models.BooleanField(
        default=False, help_text="All partners see their clients' e-mail and phone."
    )
    default_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Given to partners approved without a plan.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "programme settings"
        verbose_name_plural = "programme settings"

    def __str__(self) -> str:
        return "IB programme settings"
