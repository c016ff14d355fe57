"""The double-entry ledger: currencies, ledger accounts (client wallets and
system accounts), journal transactions and their entries.

Amounts are integers in the currency's minor unit. Each transaction's entries
sum to zero per currency (checked by the posting service, and on PostgreSQL by
a deferred constraint trigger). Entries are append-only (a trigger refuses
UPDATE and DELETE). Client wallets keep a running balance, updated under a row
lock and held non-negative by a check constraint; system accounts keep none
(their balance is the sum of their entries), so that postings never queue on
one shared row (shared/BASELINES.md, "the hot-row lesson").
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_countries.fields import CountryField

from backoffice.money import from_minor, to_minor


class Currency(models.Model):
    FIAT = "fiat"
    CRYPTO = "crypto"

    code = models.CharField(max_length=8, primary_key=True)
    name = models.CharField(max_length=64)
    exponent = models.PositiveSmallIntegerField(
        help_text="Decimal places of the minor unit stored in the ledger (USD 2, JPY 0, BTC 8)."
    )
    kind = models.CharField(max_length=8, choices=[(FIAT, "fiat"), (CRYPTO, "crypto")])
    symbol = models.CharField(max_length=8, blank=True)
    display_order = models.PositiveSmallIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    withdrawal_two_approvers_above = models.DecimalField(
        max_digits=24,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="Withdrawals above this amount need two different approvers (blank: never).",
    )

    class Meta:
        ordering = ["display_order", "code"]
        verbose_name_plural = "currencies"
        constraints = [
            models.CheckConstraint(condition=Q(exponent__lte=18), name="currency_exponent_max")
        ]

    def __str__(self) -> str:
        return self.code

    def format_minor(self, minor: int) -> Decimal:
        return from_minor(minor, self.exponent)


class LedgerAccount(models.Model):
    """One side of ledger entries: a client's wallet, or a system account."""

    WALLET = "wallet"
    SYSTEM = "system"
    KINDS = [(WALLET, "client wallet"), (SYSTEM, "system account")]

    kind = models.CharField(max_length=8, choices=KINDS)
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_accounts",
    )
    # System accounts: a stable code such as "psp_clearing:sandbox", "fees",
    # "withdrawals_pending", "conversion", "equity:opening".
    code = models.CharField(max_length=64, blank=True)
    # Running balance in minor units. Kept for wallets only (under a row lock);
    # always 0 for system accounts, whose balance is the sum of their entries.
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("adjust_wallet", "Can credit or debit a wallet by hand")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="system") | Q(balance__gte=0), name="wallet_balance_non_negative"
            ),
            models.CheckConstraint(
                condition=(Q(kind="wallet") & Q(owner__isnull=False) & Q(code=""))
                | (Q(kind="system") & Q(owner__isnull=True) & ~Q(code="") & Q(balance=0)),
                name="ledger_account_kind_shape",
            ),
            models.UniqueConstraint(
                fields=["owner", "currency"],
                condition=Q(kind="wallet"),
                name="one_wallet_per_owner_currency",
            ),
            models.UniqueConstraint(
                fields=["code", "currency"],
                condition=Q(kind="system"),
                name="one_system_account_per_code_currency",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.WALLET:
            return f"wallet {self.currency_id} of user {self.owner_id}"
        return f"{self.code} ({self.currency_id})"

    @property
    def is_wallet(self) -> bool:
        return self.kind == self.WALLET


class JournalTransaction(models.Model):
    """One movement of money: two or more entries summing to zero per currency."""

    # Not indexed: every index is written on every posting (docs/PERFORMANCE.md);
    # kind and actor are read per transaction, not searched across the ledger.
    kind = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=200, unique=True)
    # SHA-256 of the canonical request: same key + different request = conflict.
    request_hash = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("reverse_transaction", "Can reverse a ledger transaction")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Entry(models.Model):
    """One line of a journal transaction. Never updated, never deleted."""

    transaction = models.ForeignKey(
        JournalTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    # Indexed by the (account, id) and (account, time, id) indexes below; a
    # single-column index more would only slow every posting down.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    # Denormalised from the account, so that balance per currency is one
    # GROUP BY (and the database trigger needs no join). Not indexed: summed
    # over whole ledgers only (ledger_check), never looked up.
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    amount = models.BigIntegerField(help_text="Minor units; positive credits the account.")
    # The wallet's balance after this entry (wallets only), for statements.
    balance_after = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "entries"
        permissions = [("export_entry", "Can export ledger entries")]
        indexes = [
            models.Index(fields=["account", "-id"], name="entry_account_history"),
            # History filtered by a period (payments.selectors.wallet_history).
            models.Index(fields=["account", "-created_at", "-id"], name="entry_account_time"),
        ]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency_id} → {self.account_id}"


# --- Exchange rates and conversion --------------------------------------------------


class RateSource(models.Model):
    """A configured rate provider (``payments.providers.rates``): manual rates,
    the ECB daily reference rates, a crypto price feed. Sources are tried by
    priority; a rate older than the source's maximum age is refused."""

    identifier = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=32, help_text="The rate provider implementation.")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower is tried first.")
    max_age_seconds = models.PositiveIntegerField(
        default=24 * 3600, help_text="Rates older than this are refused for conversions."
    )
    settings = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True, editable=False, help_text="Encrypted.")
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["priority", "identifier"]

    def __str__(self) -> str:
        return self.name


class Rate(models.Model):
    """The latest rate of a source for a pair: 1 ``base`` = ``rate`` ``quote``
    (mid-market, before the broker's markup)."""

    source = models.ForeignKey(RateSource, on_delete=models.CASCADE, related_name="rates")
    base = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    quote = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    rate = models.DecimalField(max_digits=30, decimal_places=12)
    as_of = models.DateTimeField(help_text="When the provider published this rate.")
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "base", "quote"], name="one_rate_per_pair"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="rate_positive"),
            models.CheckConstraint(condition=~Q(base=F("quote")), name="rate_distinct_pair"),
        ]

    def __str__(self) -> str:
        return f"1 {self.base_id} = {self.rate} {self.quote_id}"


class Markup(models.Model):
    """The broker's markup and fee on conversions, for one pair, one side or
    every pair (blank currencies match any; the most specific row wins)."""

    base = models.ForeignKey(
        Currency,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Currency sold (blank: any).",
    )
    quote = models.ForeignKey(
        Currency,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Currency bought (blank: any).",
    )
    markup_percent = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("0.5"),
        help_text="Taken from the rate the client gets.",
    )
    fee_percent = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal("0"))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["base", "quote"], name="one_markup_per_pair", nulls_distinct=False
            ),
            models.CheckConstraint(
                condition=Q(markup_percent__gte=0, markup_percent__lt=50)
                & Q(fee_percent__gte=0, fee_percent__lt=50),
                name="markup_sane",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.base_id or 'any'} → {self.quote_id or 'any'}: {self.markup_percent} %"


class Conversion(models.Model):
    """A quote for converting between two of a client's wallets, and, once the
    client confirms it in time, the conversion itself."""

    QUOTED = "quoted"
    EXECUTED = "executed"
    STATUSES = [(QUOTED, "quoted"), (EXECUTED, "executed")]

    public_id = models.UUIDField(unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversions"
    )
    from_wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    to_wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    sell_amount = models.BigIntegerField(help_text="Minor units debited, fee included.")
    fee = models.BigIntegerField(default=0, help_text="Minor units of the sold currency.")
    buy_amount = models.BigIntegerField(help_text="Minor units credited.")
    mid_rate = models.DecimalField(max_digits=30, decimal_places=12)
    rate = models.DecimalField(max_digits=30, decimal_places=12, help_text="After markup.")
    markup_percent = models.DecimalField(max_digits=6, decimal_places=3)
    rate_source = models.ForeignKey(RateSource, null=True, on_delete=models.SET_NULL)
    rate_as_of = models.DateTimeField()
    status = models.CharField(max_length=10, choices=STATUSES, default=QUOTED)
    journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    executed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(sell_amount__gt=0, buy_amount__gt=0, fee__gte=0),
                name="conversion_amounts_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"conversion #{self.pk}"


class Transfer(models.Model):
    """An internal transfer between wallets: the client's own (through a
    conversion when the currencies differ), or another client's when the
    broker allows it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="transfers"
    )
    from_wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    to_wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Minor units debited from the source wallet.")
    credited = models.BigIntegerField(help_text="Minor units credited to the target wallet.")
    conversion = models.OneToOneField(
        Conversion, null=True, blank=True, on_delete=models.PROTECT, related_name="transfer"
    )
    journal = models.OneToOneField(JournalTransaction, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=140, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"transfer #{self.pk}"


# --- Payment providers and methods -------------------------------------------------


class PaymentProvider(models.Model):
    """A configured PSP (``payments.providers``): its implementation, settings,
    encrypted secrets and optional webhook IP allow-list. Its webhooks arrive
    at ``/webhooks/<identifier>/``."""

    identifier = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=32, help_text="The PSP implementation.")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    secrets = models.TextField(blank=True, editable=False, help_text="Encrypted.")
    webhook_ip_allowlist = models.TextField(
        blank=True, help_text="Addresses or networks (CIDR), one per line; blank allows any."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PaymentMethod(models.Model):
    """What a client picks to deposit or withdraw: a provider, the currencies
    and countries it serves, limits and fees."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    BOTH = "both"
    DIRECTIONS = [(DEPOSIT, "deposits"), (WITHDRAWAL, "withdrawals"), (BOTH, "both")]
    ICONS = [("bank", "bank"), ("card", "card"), ("crypto", "crypto"), ("wallet", "wallet")]

    provider = models.ForeignKey(PaymentProvider, on_delete=models.PROTECT, related_name="methods")
    name = models.CharField(max_length=100)
    direction = models.CharField(max_length=10, choices=DIRECTIONS, default=BOTH)
    currencies = models.ManyToManyField(
        Currency, related_name="+", help_text="Wallet currencies this method serves."
    )
    provider_currency = models.ForeignKey(
        Currency,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The currency the provider settles in, when it differs from the wallet's "
        "(the amount is converted at the rate of the moment).",
    )
    min_amount = models.DecimalField(max_digits=24, decimal_places=8, default=Decimal("0"))
    max_amount = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    fee_percent = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal("0"))
    fee_fixed = models.DecimalField(
        max_digits=24,
        decimal_places=8,
        default=Decimal("0"),
        help_text="In the currency of the payment.",
    )
    countries = CountryField(multiple=True, blank=True, help_text="Blank: every country.")
    display_order = models.PositiveSmallIntegerField(default=100)
    icon = models.CharField(max_length=16, choices=ICONS, default="card")
    instructions = models.TextField(
        blank=True, help_text="Shown to the client (e.g. bank details)."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["display_order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_amount__gte=0)
                & (Q(max_amount__isnull=True) | Q(max_amount__gte=F("min_amount"))),
                name="method_limits_sane",
            ),
            models.CheckConstraint(
                condition=Q(fee_percent__gte=0, fee_percent__lt=100, fee_fixed__gte=0),
                name="method_fees_sane",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def fee_minor(self, amount: Decimal, exponent: int) -> int:
        """The fee on ``amount`` (major units): the percent plus the fixed
        part, rounded half up to the minor unit (``exponent`` places)."""
        fee = amount * self.fee_percent / Decimal(100) + self.fee_fixed
        return to_minor(fee, exponent, rounding=ROUND_HALF_UP)


class Deposit(models.Model):
    """A client's deposit through a payment method. Credited through the
    ledger once, when the provider confirms it (or Finance matches a wire)."""

    CREATED = "created"
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    FLAGGED = "flagged"
    STATUSES = [
        (CREATED, "created"),
        (PENDING, "pending"),
        (COMPLETED, "completed"),
        (FAILED, "failed"),
        (FLAGGED, "flagged for Finance"),
    ]

    reference = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposits"
    )
    wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="deposits")
    method = models.ForeignKey(PaymentMethod, on_delete=models.PROTECT, related_name="deposits")
    provider = models.ForeignKey(PaymentProvider, on_delete=models.PROTECT, related_name="deposits")
    # What the client pays the provider, in the provider's currency.
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Minor units paid to the provider.")
    fee = models.BigIntegerField(default=0, help_text="Minor units of the paid currency.")
    # What the wallet receives (amount - fee, converted when currencies differ).
    credit_amount = models.BigIntegerField(help_text="Minor units of the wallet's currency.")
    rate = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    status = models.CharField(max_length=10, choices=STATUSES, default=CREATED, db_index=True)
    provider_reference = models.CharField(max_length=200, blank=True)
    flag_reason = models.TextField(blank=True)
    journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("confirm_deposit", "Can confirm (match) a deposit"),
            ("export_deposit", "Can export deposits"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0, fee__gte=0, credit_amount__gt=0),
                name="deposit_amounts_positive",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_reference"],
                condition=~Q(provider_reference=""),
                name="deposit_unique_provider_reference",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-id"], name="deposit_user_recent"),
            # The KYC limits' sums of a client's day and month, read from the
            # index alone (docs/PERFORMANCE.md, kyc-policy).
            models.Index(
                fields=["user", "created_at"],
                include=["currency", "amount", "status"],
                name="deposit_user_created",
            ),
        ]

    def __str__(self) -> str:
        return f"deposit {self.reference}"


class WebhookEvent(models.Model):
    """Every webhook that passed signature checks, once per provider event id
    (a replay is recognised here and answered without effect)."""

    APPLIED = "applied"
    IGNORED = "ignored"
    FLAGGED = "flagged"
    RESULTS = [(APPLIED, "applied"), (IGNORED, "ignored"), (FLAGGED, "flagged")]

    provider = models.ForeignKey(PaymentProvider, on_delete=models.PROTECT, related_name="webhooks")
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=100, blank=True)
    deposit = models.ForeignKey(
        Deposit, null=True, blank=True, on_delete=models.PROTECT, related_name="webhooks"
    )
    payload = models.JSONField(default=dict)
    result = models.CharField(max_length=10, choices=RESULTS)
    message = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_once_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.provider_id}:{self.event_id}"


class Withdrawal(models.Model):
    """A client's withdrawal: reserved at once (wallet → pending account),
    approved by Finance (never by the requester; two approvers above the
    currency's threshold), paid through the provider, or rejected/cancelled
    (the reserve released)."""

    PENDING = "pending"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    STATUSES = [
        (PENDING, "pending approval"),
        (APPROVED, "approved"),
        (PAID, "paid"),
        (REJECTED, "rejected"),
        (CANCELLED, "cancelled"),
    ]

    reference = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals"
    )
    wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="withdrawals")
    method = models.ForeignKey(PaymentMethod, on_delete=models.PROTECT, related_name="withdrawals")
    amount = models.BigIntegerField(help_text="Minor units paid out to the client.")
    fee = models.BigIntegerField(default=0, help_text="Minor units, on top of the amount.")
    destination = models.JSONField(default=dict, blank=True, help_text="IBAN, address, ...")
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING, db_index=True)
    reserve_journal = models.OneToOneField(
        JournalTransaction, on_delete=models.PROTECT, related_name="+"
    )
    settle_journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payout_reference = models.CharField(max_length=200, blank=True)
    decision_reason = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("approve_withdrawal", "Can approve or reject a withdrawal"),
            ("pay_withdrawal", "Can record a withdrawal's payout"),
            ("export_withdrawal", "Can export withdrawals"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0, fee__gte=0), name="withdrawal_amounts_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-id"], name="withdrawal_user_recent"),
            models.Index(
                fields=["user", "created_at"],
                include=["wallet", "amount", "status"],
                name="withdrawal_user_created",
            ),
        ]

    def __str__(self) -> str:
        return f"withdrawal {self.reference}"


class WithdrawalApproval(models.Model):
    withdrawal = models.ForeignKey(Withdrawal, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["withdrawal", "approver"], name="one_approval_per_approver"
            )
        ]

    def __str__(self) -> str:
        return f"approval of {self.withdrawal_id} by {self.approver_id}"


# --- Transfers between wallets and trading accounts -----------------------------------


class TradingTransfer(models.Model):
    """Money between a client's wallet and their live trading account.

    In: the wallet is debited to the platform's clearing account in one
    posting, then the platform is credited with the transfer's key; a refusal
    reverses the posting. Out: the platform is debited first, then the wallet
    credited. A platform call whose outcome is unknown (``sending`` or
    ``unknown``) is settled only after asking the platform whether the
    operation with that key happened (``payments.services.trading``)."""

    IN = "in"
    OUT = "out"
    DIRECTIONS = [(IN, "wallet to trading account"), (OUT, "trading account to wallet")]

    PENDING = "pending"  # recorded; the platform not called yet
    SENDING = "sending"  # the platform is being called: outcome unknown until answered
    UNKNOWN = "unknown"  # the call timed out: the sweeper asks the platform
    COMPLETED = "completed"
    FAILED = "failed"  # refused; an "in" transfer's posting is reversed
    STATUSES = [
        (PENDING, "pending"),
        (SENDING, "in progress"),
        (UNKNOWN, "being checked"),
        (COMPLETED, "completed"),
        (FAILED, "failed"),
    ]
    OPEN_STATUSES = (PENDING, SENDING, UNKNOWN)

    reference = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trading_transfers"
    )
    direction = models.CharField(max_length=3, choices=DIRECTIONS)
    wallet = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    trading_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="transfers"
    )
    amount = models.BigIntegerField(help_text="Minor units of the wallet's currency.")
    account_amount = models.BigIntegerField(
        help_text="Minor units of the trading account's currency (its currency digits)."
    )
    rate = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, help_text="When converted."
    )
    fee = models.BigIntegerField(
        default=0, help_text="Conversion fee, minor units of the currency sold."
    )
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    idempotency_key = models.CharField(max_length=200, unique=True)
    request_hash = models.CharField(max_length=64, blank=True)
    journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reversal_journal = models.OneToOneField(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    platform_ticket = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["status", "updated_at"],
                condition=Q(status__in=["pending", "sending", "unknown"]),
                name="trading_transfer_open",
            )
        ]

    def __str__(self) -> str:
        return f"trading transfer {self.reference}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES
