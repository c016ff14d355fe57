"""Reads about withdrawals: the methods a client may withdraw with, their
withdrawals (access getters that 404 on another client's), how many
approvals one needs, and what the admin shows beside it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum
from django.http import Http404

from backoffice.models import Event
from backoffice.money import from_minor

from ..models import LedgerAccount, PaymentMethod, Withdrawal, WithdrawalApproval

WITHDRAWAL_DIRECTIONS = (PaymentMethod.WITHDRAWAL, PaymentMethod.BOTH)


def withdrawal_methods(*, country: str) -> list[PaymentMethod]:
    """Enabled methods (of enabled providers) that pay out, and serve
    ``country`` (a method with no countries serves every country), in display
    order, with their currencies prefetched: two queries."""
    methods = (
        PaymentMethod.objects.filter(
            enabled=True, provider__enabled=True, direction__in=WITHDRAWAL_DIRECTIONS
        )
        .select_related("provider")
        .prefetch_related("currencies")
        .order_by("display_order", "name")
    )
    return [m for m in methods if method_serves_country(m, country)]


def method_serves_country(method: PaymentMethod, country: str) -> bool:
    codes = {c.code for c in method.countries}
    return not codes or (bool(country) and country in codes)


def method_serves_currency(method: PaymentMethod, currency_code: str) -> bool:
    """Reads the prefetched currencies when they are there."""
    return any(c.code == currency_code for c in method.currencies.all())


def withdrawals_for_user(*, user, limit: int = 50) -> list[Withdrawal]:
    return list(
        Withdrawal.objects.filter(user=user)
        .select_related("wallet__currency", "method")
        .order_by("-id")[:limit]
    )


def withdrawal_get_for_user(*, user, reference: str) -> Withdrawal:
    """The user's own withdrawal, or 404 (never another user's)."""
    withdrawal = (
        Withdrawal.objects.filter(user=user, reference=reference)
        .select_related("wallet__currency", "method__provider")
        .first()
    )
    if withdrawal is None:
        raise Http404("No such withdrawal.")
    return withdrawal


def withdrawal_for_request(*, user, key: str) -> Withdrawal | None:
    """The withdrawal a request with this (scoped) idempotency key created, if any."""
    return (
        Withdrawal.objects.filter(user=user, reserve_journal__idempotency_key=key)
        .select_related("wallet__currency", "method__provider")
        .first()
    )


def approvals_required(withdrawal: Withdrawal) -> int:
    """Two different approvers above the currency's threshold (in major
    units; none set: never), otherwise one."""
    currency = withdrawal.wallet.currency
    threshold = currency.withdrawal_two_approvers_above
    if threshold is not None and from_minor(withdrawal.amount, currency.exponent) > threshold:
        return 2
    return 1


def withdrawal_approvals(withdrawal: Withdrawal) -> list[WithdrawalApproval]:
    return list(withdrawal.approvals.select_related("approver").order_by("id"))


def wallet_balance(wallet: LedgerAccount) -> int:
    """The wallet's balance as committed now (not the copy a caller holds)."""
    return LedgerAccount.objects.filter(pk=wallet.pk).values_list("balance", flat=True).first() or 0


@dataclass(frozen=True)
class PayoutFailure:
    message: str
    permanent: bool
    at: datetime


def withdrawal_payout_failure(withdrawal: Withdrawal) -> PayoutFailure | None:
    """The provider's last payout error for an approved withdrawal, if the
    last payout attempt failed (it is recorded as a ``withdrawal.payout_failed``
    event, so that it stays visible after the page that showed it)."""
    event = (
        Event.objects.filter(
            name="withdrawal.payout_failed",
            subject_type=Withdrawal._meta.label_lower,
            subject_id=str(withdrawal.pk),
        )
        .order_by("-id")
        .only("payload", "created_at")
        .first()
    )
    if event is None:
        return None
    return PayoutFailure(
        message=str(event.payload.get("error", "")),
        permanent=bool(event.payload.get("permanent")),
        at=event.created_at,
    )


def withdrawal_totals_since(*, user, day, month) -> list[tuple[str, Decimal, Decimal]]:
    """Per wallet currency: the sum of the client's withdrawals requested since
    ``day`` and since ``month`` (major units, as paid out), in one query;
    rejected and cancelled ones do not count."""
    rows = (
        Withdrawal.objects.filter(user=user, created_at__gte=min(day, month))
        .exclude(status__in=(Withdrawal.REJECTED, Withdrawal.CANCELLED))
        .values("wallet__currency_id", "wallet__currency__exponent")
        .annotate(
            day=Sum("amount", filter=Q(created_at__gte=day), default=0),
            month=Sum("amount", filter=Q(created_at__gte=month), default=0),
        )
        .order_by()
    )
    return [
        (
            row["wallet__currency_id"],
            from_minor(row["day"], row["wallet__currency__exponent"]),
            from_minor(row["month"], row["wallet__currency__exponent"]),
        )
        for row in rows
    ]
