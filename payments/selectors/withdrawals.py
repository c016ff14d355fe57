"""Reads about withdrawals: the methods a client may withdraw with, their
withdrawals (access getters that 404 on another client's), how many
approvals one needs, and what the admin shows beside it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
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


# The sums behind every withdrawal's KYC decision, written out once: building
# this query with the ORM costs about 1 ms of Python per call, a fifth of the
# decision's budget (docs/PERFORMANCE.md, kyc-policy). A withdrawal is always
# from the client's own wallet: saying so lets the join start from the
# client's few wallets, read with the withdrawal_user_created index.
_TOTALS_SQL = """
    SELECT l.currency_id, c.exponent,
           SUM(CASE WHEN w.created_at >= %s THEN w.amount ELSE 0 END),
           SUM(CASE WHEN w.created_at >= %s THEN w.amount ELSE 0 END)
      FROM payments_withdrawal w
      JOIN payments_ledgeraccount l ON l.id = w.wallet_id
      JOIN payments_currency c ON c.code = l.currency_id
     WHERE w.user_id = %s AND l.owner_id = %s AND w.created_at >= %s
       AND w.status NOT IN (%s, %s)
     GROUP BY l.currency_id, c.exponent
"""


def withdrawal_totals_since(*, user, day, month) -> list[tuple[str, Decimal, Decimal]]:
    """Per wallet currency: the sum of the client's withdrawals requested since
    ``day`` and since ``month`` (major units, as paid out), in one query;
    rejected and cancelled ones do not count."""
    at = connection.ops.adapt_datetimefield_value  # as the ORM would send them
    with connection.cursor() as cursor:
        cursor.execute(
            _TOTALS_SQL,
            [
                at(day),
                at(month),
                user.pk,
                user.pk,
                at(min(day, month)),
                Withdrawal.REJECTED,
                Withdrawal.CANCELLED,
            ],
        )
        rows = cursor.fetchall()
    return [
        (code, from_minor(int(day_sum), exponent), from_minor(int(month_sum), exponent))
        for code, exponent, day_sum, month_sum in rows
    ]
