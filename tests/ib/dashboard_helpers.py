"""Builders for the partner dashboard's tests: clients with deals, deposits
and withdrawals (through the payments services), and commission rows written
directly (the accrual engine's output, whatever engine wrote it)."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import Deal
from accounts.roles import FINANCE
from ib.models import Commission, Partner, PlanVersion
from payments.models import PaymentMethod
from payments.services import wallet_adjust, wallet_open
from payments.services import withdrawals as wd
from payments.services.deposits import deposit_confirm
from tests.factories import StaffFactory, TraderFactory, open_trading_account
from tests.ib.factories import make_plan, refer
from tests.payments.providers.helpers import started

_tickets = itertools.count(5_000_000)


def client_of(partner: Partner, *, since: datetime | None = None, **user_fields):
    """A trader referred to ``partner`` (from ``since``, default an hour ago)."""
    client = TraderFactory(**user_fields)
    refer(client, partner, since=since or timezone.now() - timedelta(hours=1))
    return client


def add_deals(client, specs: list[dict], *, account=None) -> list[Deal]:
    """Deals of ``client`` (on a trading account opened for them)."""
    account = account or open_trading_account(client)
    deals = []
    for spec in specs:
        close_time = spec.get("close_time", timezone.now() - timedelta(minutes=5))
        deals.append(
            Deal(
                platform_id=account.platform_id,
                ticket=next(_tickets),
                account=account,
                client_id=client.pk,
                symbol=spec.get("symbol", "EURUSD"),
                side=Deal.BUY,
                volume=Decimal(spec.get("volume", "1")),
                open_time=close_time - timedelta(hours=1),
                close_time=close_time,
                open_price=Decimal("1.08"),
                close_price=Decimal("1.081"),
                profit=spec.get("profit", 1000),
                commission=-700,
                swap=0,
            )
        )
    return Deal.objects.bulk_create(deals)


def deposit_completed(client, amount: str, currency: str = "USD"):
    method = PaymentMethod.objects.get(name="Card (sandbox)")  # 2.5 % + 0.30 USD fee
    deposit = started(client, method, amount, currency)
    deposit_confirm(deposit=deposit, amount=Decimal(amount), currency=currency)
    deposit.refresh_from_db()
    return deposit


def withdrawal_paid(client, amount: str, currency: str = "USD"):
    """Fund the client's wallet, request a bank withdrawal, approve, mark paid."""
    wallet = wallet_open(user=client, currency=currency)
    wallet_adjust(
        actor=None,
        wallet=wallet,
        amount=Decimal(amount) * 2,
        reason="test funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
    )
    bank = PaymentMethod.objects.select_related("provider").get(name="Bank wire")
    withdrawal = wd.withdrawal_request(
        user=client,
        wallet=wallet,
        method=bank,
        amount=Decimal(amount),
        destination={"iban": "DE89 3704 0044 0532 0130 00", "account_holder": "T Trader"},
        otp_code=None,
        idempotency_key=str(uuid.uuid4()),
    )
    finance = StaffFactory(roles=[FINANCE])
    wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    return wd.withdrawal_mark_paid(actor=finance, withdrawal=withdrawal, payout_reference="TEST")


def version_of(plan) -> PlanVersion:
    return plan.versions.order_by("-effective_from", "-id").first()


_version = None


def any_version() -> PlanVersion:
    return version_of(make_plan())


def commission(
    partner: Partner,
    *,
    amount: int,
    kind: str = Commission.DEAL,
    client=None,
    deal: Deal | None = None,
    version: PlanVersion | None = None,
    earned_at: datetime | None = None,
    currency: str = "USD",
    **fields,
) -> Commission:
    """A commission row as accrual writes it."""
    if kind == Commission.DEAL and deal is not None:
        fields.setdefault("deal_id", deal.pk)
        fields.setdefault("lots", deal.volume)
        client = client or deal.client
        earned_at = earned_at or deal.close_time
    return Commission.objects.create(
        kind=kind,
        partner=partner,
        client_id=client.pk if client is not None else None,
        plan_version=version or any_version(),
        amount=amount,
        currency_id=currency,
        earned_at=earned_at or timezone.now() - timedelta(minutes=1),
        **fields,
    )
