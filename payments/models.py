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

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from backoffice.money import from_minor


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

    kind = models.CharField(max_length=32, db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    # SHA-256 of the canonical request: same key + different request = conflict.
    request_hash = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
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
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    # Denormalised from the account, so that balance per currency is one
    # GROUP BY (and the database trigger needs no join).
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Minor units; positive credits the account.")
    # The wallet's balance after this entry (wallets only), for statements.
    balance_after = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "entries"
        indexes = [
            models.Index(fields=["account", "-id"], name="entry_account_history"),
            # History filtered by a period (payments.selectors.wallet_history).
            models.Index(fields=["account", "-created_at", "-id"], name="entry_account_time"),
        ]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency_id} → {self.account_id}"
