"""People: users (e-mail is the login), client profiles, staff roles."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_countries.fields import CountryField
from phonenumber_field.modelfields import PhoneNumberField

from backoffice.money import from_minor


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


def new_security_stamp() -> str:
    return secrets.token_hex(16)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField("e-mail address", unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(
        default=False, help_text="Staff can sign in to the administration."
    )
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Part of every session's auth hash: changing it signs out the user's
    # other sessions (see accounts.services.sessions_invalidate_others).
    security_stamp = models.CharField(max_length=32, default=new_security_stamp, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = "user"
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    def get_short_name(self) -> str:
        return self.first_name or self.email

    def _get_session_auth_hash(self, secret=None) -> str:
        # Django's hash covers the password only; ours also covers the
        # security stamp, rotated when two-factor authentication changes.
        return salted_hmac(
            "accounts.User.get_session_auth_hash",
            f"{self.password}:{self.security_stamp}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()


class ClientManager(UserManager):
    def get_queryset(self):
        return super().get_queryset().filter(is_staff=False)


class Client(User):
    """A trader, as staff manage them in the admin."""

    objects = ClientManager()

    class Meta:
        proxy = True
        verbose_name = "client"
        permissions = [("assign_manager", "Can assign clients to a manager")]


class StaffManager(UserManager):
    def get_queryset(self):
        return super().get_queryset().filter(is_staff=True)


class StaffUser(User):
    objects = StaffManager()

    class Meta:
        proxy = True
        verbose_name = "staff user"


class ClientProfile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    date_of_birth = models.DateField(null=True, blank=True)
    country = CountryField(blank=True, help_text="Country of residence.")
    phone = PhoneNumberField(blank=True)
    address_line1 = models.CharField("address", max_length=200, blank=True)
    address_line2 = models.CharField("address (line 2)", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField("state or region", max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    language = models.CharField(max_length=10, choices=settings.LANGUAGES, default="en")
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_clients",
        limit_choices_to={"is_staff": True},
        help_text="The staff member (sales manager) the client is assigned to.",
    )
    registration_flow = models.ForeignKey(
        "RegistrationFlow", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    campaign = models.CharField(
        max_length=50, blank=True, help_text="The campaign or promo code the client signed up with."
    )
    registration_data = models.JSONField(
        default=dict, blank=True, help_text="Answers to the sign-up flow's custom questions."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    REQUIRED_FOR_COMPLETE = (
        "date_of_birth",
        "country",
        "phone",
        "address_line1",
        "city",
        "postal_code",
    )

    class Meta:
        verbose_name = "client profile"

    def __str__(self) -> str:
        return f"Profile of {self.user_id}"

    @property
    def is_complete(self) -> bool:
        names = bool(self.user.first_name and self.user.last_name)
        return names and all(getattr(self, f) for f in self.REQUIRED_FOR_COMPLETE)


# ---------------------------------------------------------------------------
# Trading: platforms, account types, instruments, trading accounts, deals.
#
# A trading account lives on an outside trading platform (MetaTrader 5, the
# built-in demo platform, ...) reached through a gateway (accounts.platforms).
# Amounts the platform reports (balances, deal results) are integers in the
# minor unit of the account's currency, with the digits the platform uses for
# that currency (``currency_digits``, as an MT5 group has). They are the
# platform's figures, kept for display and analytics; money moves between a
# wallet and a trading account only through the payments ledger.
# ---------------------------------------------------------------------------


class Platform(models.Model):
    """A configured trading platform: its gateway implementation
    (``accounts.platforms.GATEWAYS``), connection settings, encrypted secrets,
    and the cursor of the incremental deal sync."""

    identifier = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=32, help_text="The gateway implementation.")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True, editable=False, help_text="Encrypted.")
    # Opaque to us: the gateway says where the next ``deals_since`` starts.
    deals_cursor = models.CharField(max_length=200, blank=True, editable=False)
    deals_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Instrument(models.Model):
    FX_MAJORS = "fx_majors"
    FX_MINORS = "fx_minors"
    FX_EXOTICS = "fx_exotics"
    METALS = "metals"
    ENERGIES = "energies"
    INDICES = "indices"
    STOCKS = "stocks"
    CRYPTO = "crypto"
    GROUPS = [
        (FX_MAJORS, "FX majors"),
        (FX_MINORS, "FX minors"),
        (FX_EXOTICS, "FX exotics"),
        (METALS, "metals"),
        (ENERGIES, "energies"),
        (INDICES, "indices"),
        (STOCKS, "stocks"),
        (CRYPTO, "crypto"),
    ]

    symbol = models.CharField(max_length=32, unique=True)
    description = models.CharField(max_length=100, blank=True)
    group = models.CharField(max_length=16, choices=GROUPS)
    contract_size = models.DecimalField(
        max_digits=20, decimal_places=4, help_text="Units of the base per lot (FX: 100,000)."
    )
    digits = models.PositiveSmallIntegerField(help_text="Decimal places of the price.")
    profit_currency = models.CharField(max_length=8, blank=True)
    spread_markup = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text=(
            "The broker's spread markup in points (price steps of the last digit): "
            "what IB plans share as the spread the broker earned."
        ),
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["group", "symbol"]

    def __str__(self) -> str:
        return self.symbol


class AccountType(models.Model):
    """What a trader picks when opening an account: defined by the broker per
    platform (live or demo, currency, leverage choices, platform group)."""

    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="account_types")
    name = models.CharField(max_length=100)
    is_demo = models.BooleanField("demo", default=False)
    currency = models.CharField(max_length=8, help_text="ISO code, e.g. USD.")
    currency_digits = models.PositiveSmallIntegerField(
        default=2, help_text="Decimal places the platform keeps for this currency."
    )
    leverage_choices = models.JSONField(
        default=list, help_text="The leverages a trader may pick, e.g. [50, 100, 200, 500]."
    )
    default_leverage = models.PositiveIntegerField(default=100)
    min_first_transfer = models.DecimalField(
        max_digits=24,
        decimal_places=8,
        default=Decimal("0"),
        help_text="Live accounts: the smallest first transfer, in the account's currency.",
    )
    demo_balance = models.DecimalField(
        max_digits=24,
        decimal_places=8,
        default=Decimal("10000"),
        help_text="Demo accounts: the virtual money the platform credits on opening.",
    )
    platform_group = models.CharField(
        max_length=100, help_text="The group on the platform, e.g. real\\standard\\USD."
    )
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    display_order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["display_order", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({'demo' if self.is_demo else 'live'}, {self.currency})"


class TradingAccount(models.Model):
    ACTIVE = "active"
    ARCHIVED = "archived"
    STATUSES = [(ACTIVE, "active"), (ARCHIVED, "archived")]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trading_accounts"
    )
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="accounts")
    account_type = models.ForeignKey(AccountType, on_delete=models.PROTECT, related_name="+")
    login = models.CharField(max_length=32)
    is_demo = models.BooleanField("demo", default=False)
    currency = models.CharField(max_length=8)
    currency_digits = models.PositiveSmallIntegerField(default=2)
    leverage = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=STATUSES, default=ACTIVE)
    # The platform's figures as last read (minor units of ``currency``).
    balance = models.BigIntegerField(default=0)
    equity = models.BigIntegerField(default=0)
    margin = models.BigIntegerField(default=0)
    free_margin = models.BigIntegerField(default=0)
    margin_level = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    state_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("export_tradingaccount", "Can export trading accounts")]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "login"], name="trading_account_login_unique"
            ),
            # What a deal's composite foreign key refers to (Deal, migration 0007).
            models.UniqueConstraint(
                fields=["id", "platform", "user"], name="trading_account_identity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.login} ({self.platform.identifier})" if self.platform_id else self.login

    def major(self, minor: int | None) -> Decimal | None:
        return None if minor is None else from_minor(minor, self.currency_digits)


class Deal(models.Model):
    """A closed trade as the platform reports it (read-only for everyone).

    ``client`` repeats the account's owner so that a trader's history reads
    one index, whatever the number of accounts."""

    BUY = "buy"
    SELL = "sell"
    SIDES = [(BUY, "buy"), (SELL, "sell")]

    # No single-column indexes on the keys: each leads a composite index
    # below, and every index is written for every imported deal. No foreign
    # key each either: on PostgreSQL one composite key (migration 0007)
    # checks the three at once, (account, platform, client) → the trading
    # account's (id, platform, user): a deal's client and platform are its
    # account's, one check per deal at commit instead of three.
    platform = models.ForeignKey(
        Platform, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    ticket = models.BigIntegerField(help_text="The platform's deal id.")
    account = models.ForeignKey(
        TradingAccount,
        on_delete=models.PROTECT,
        related_name="deals",
        db_index=False,
        db_constraint=False,
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=SIDES)
    volume = models.DecimalField(max_digits=16, decimal_places=4, help_text="Lots.")
    open_time = models.DateTimeField()
    close_time = models.DateTimeField()
    open_price = models.DecimalField(max_digits=20, decimal_places=8)
    close_price = models.DecimalField(max_digits=20, decimal_places=8)
    # Minor units of the account's currency.
    profit = models.BigIntegerField()
    commission = models.BigIntegerField(default=0)
    swap = models.BigIntegerField(default=0)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("export_deal", "Can export deals"),
            ("import_deal", "Can import deal reports"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["platform", "ticket"], name="deal_ticket_unique")
        ]
        indexes = [
            # Covering: the analytics aggregate a year of a trader's deals
            # from the index alone (docs/PERFORMANCE.md, "trading history").
            models.Index(
                fields=["client", "-close_time", "-id"],
                name="deal_client_time",
                include=[
                    "account",
                    "symbol",
                    "side",
                    "volume",
                    "open_time",
                    "profit",
                    "commission",
                    "swap",
                ],
            ),
            models.Index(fields=["account", "-close_time", "-id"], name="deal_account_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.ticket} {self.side} {self.volume} {self.symbol}"

    @property
    def net(self) -> int:
        return self.profit + self.commission + self.swap


# The built-in demo platform keeps its accounts and operations in these tables:
# it is an outside system that happens to live in our database, reached only
# through its gateway (accounts.platforms.demo), like MetaTrader would be.


class DemoPlatformAccount(models.Model):
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    login = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True)
    group = models.CharField(max_length=100)
    currency = models.CharField(max_length=8)
    currency_digits = models.PositiveSmallIntegerField(default=2)
    leverage = models.PositiveIntegerField()
    password_hash = models.CharField(max_length=200)
    balance = models.BigIntegerField(default=0)
    # Open positions' floating result and used margin (the simulator sets them).
    floating = models.BigIntegerField(default=0)
    margin = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "login"], name="demo_platform_login_unique")
        ]

    def __str__(self) -> str:
        return self.login


class DemoPlatformOperation(models.Model):
    """A balance operation on the demo platform, findable by its key."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    login = models.CharField(max_length=32)
    key = models.CharField(max_length=100)
    amount = models.BigIntegerField()
    comment = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "key"], name="demo_platform_op_key_unique")
        ]

    def __str__(self) -> str:
        return self.key


class DemoPlatformDeal(models.Model):
    """A deal closed on the demo platform (the market simulator writes them);
    the deal sync reads them through the gateway like any platform's."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    login = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    volume = models.DecimalField(max_digits=16, decimal_places=4)
    open_time = models.DateTimeField()
    close_time = models.DateTimeField()
    open_price = models.DecimalField(max_digits=20, decimal_places=8)
    close_price = models.DecimalField(max_digits=20, decimal_places=8)
    profit = models.BigIntegerField()
    commission = models.BigIntegerField(default=0)
    swap = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["platform", "id"], name="demo_platform_deal_seq")]

    def __str__(self) -> str:
        return f"#{self.pk}"


# ---------------------------------------------------------------------------
# The registration constructor: sign-up flows staff shape per country or
# campaign, the fields they ask, and the versioned legal documents a client
# accepts. ``FieldDefinition`` is shared with the KYC questionnaires (kyc app),
# and ``accounts.dynamic_fields`` turns either into Django form fields.
# ---------------------------------------------------------------------------


class FieldDefinition(models.Model):
    """One question of a form staff build in the admin."""

    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHOICE = "choice"
    MULTIPLE_CHOICE = "multiple_choice"
    CHECKBOX = "checkbox"
    KINDS = [
        (TEXT, "text"),
        (NUMBER, "number"),
        (DATE, "date"),
        (CHOICE, "choice (one)"),
        (MULTIPLE_CHOICE, "choice (several)"),
        (CHECKBOX, "checkbox"),
    ]

    name = models.SlugField(
        max_length=50,
        help_text="The key the answer is stored under (letters, digits, underscores).",
    )
    label = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=KINDS, default=TEXT)
    required = models.BooleanField(default=True)
    help_text = models.CharField(max_length=300, blank=True)
    choices = models.TextField(
        blank=True,
        help_text="For choices: one per line, as 'value|Label' or just 'Label'.",
    )
    min_value = models.DecimalField(
        max_digits=20,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Number: the smallest value; text: the shortest length.",
    )
    max_value = models.DecimalField(
        max_digits=20,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Number: the largest value; text: the longest length.",
    )
    regex = models.CharField(
        "pattern",
        max_length=200,
        blank=True,
        help_text="Text: a regular expression the whole answer must match.",
    )
    regex_message = models.CharField(
        "pattern message",
        max_length=200,
        blank=True,
        help_text="What to tell the client when the pattern does not match.",
    )
    order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        abstract = True
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return self.label


class RegistrationFlow(models.Model):
    """A sign-up path: which fields are asked, in which steps, and which
    documents are accepted. The flow for a visitor is the active one for their
    campaign (and country, when it names countries), else for their country,
    else the default."""

    name = models.CharField(max_length=100)
    is_active = models.BooleanField("active", default=True)
    is_default = models.BooleanField(
        "default", default=False, help_text="Used when no other flow applies; exactly one."
    )
    countries = CountryField(
        multiple=True, blank=True, help_text="Countries of residence this flow is for."
    )
    campaigns = models.TextField(
        blank=True,
        help_text="Campaign or referral codes this flow is for, one per line "
        "(the ?campaign= of a sign-up link, or a partner's promo code).",
    )
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="When several flows apply, the lowest number wins."
    )
    documents = models.ManyToManyField(
        "LegalDocument",
        blank=True,
        related_name="flows",
        help_text="Documents the client must accept (their current version).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="registration_one_default_flow",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def campaign_codes(self) -> list[str]:
        return [c.strip().lower() for c in self.campaigns.splitlines() if c.strip()]


class RegistrationField(FieldDefinition):
    """A field of a flow: one of the profile's fields, or a custom question
    whose answer is kept in ``ClientProfile.registration_data``."""

    PROFILE_FIELDS = [
        ("first_name", "first name"),
        ("last_name", "last name"),
        ("date_of_birth", "date of birth"),
        ("country", "country of residence"),
        ("phone", "phone"),
        ("address_line1", "address"),
        ("address_line2", "address (line 2)"),
        ("city", "city"),
        ("state", "state or region"),
        ("postal_code", "postal code"),
        ("language", "language"),
    ]

    flow = models.ForeignKey(RegistrationFlow, on_delete=models.CASCADE, related_name="fields")
    profile_field = models.CharField(
        max_length=30,
        choices=PROFILE_FIELDS,
        blank=True,
        help_text="A profile field (its own validation applies), or blank for a custom question.",
    )
    step = models.PositiveSmallIntegerField(default=1, help_text="1 is the first page.")

    class Meta(FieldDefinition.Meta):
        ordering = ["step", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "name"], name="registration_field_unique_name")
        ]


class LegalDocument(models.Model):
    """Terms, privacy policy, risk disclosure...: a document clients accept,
    in versions. The current version is the latest one in effect."""

    TERMS = "terms"
    PRIVACY = "privacy"
    RISK = "risk_disclosure"
    OTHER = "other"
    KINDS = [
        (TERMS, "terms and conditions"),
        (PRIVACY, "privacy policy"),
        (RISK, "risk disclosure"),
        (OTHER, "other"),
    ]

    kind = models.CharField(max_length=20, choices=KINDS)
    slug = models.SlugField(max_length=50, unique=True)
    title = models.CharField(max_length=200)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class LegalDocumentVersion(models.Model):
    document = models.ForeignKey(LegalDocument, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=20, help_text="e.g. 2026-11 or 3.1")
    body = models.TextField(help_text="Plain text; blank lines separate paragraphs.")
    effective_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["document", "-effective_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["document", "version"], name="legal_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.document.title} {self.version}"


class Consent(models.Model):
    """A client accepted a version of a legal document (append-only)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents"
    )
    version = models.ForeignKey(
        LegalDocumentVersion, on_delete=models.PROTECT, related_name="consents"
    )
    accepted_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    flow = models.ForeignKey(
        RegistrationFlow, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-accepted_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "version"], name="consent_once_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} accepted {self.version_id}"
