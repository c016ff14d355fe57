"""What the database itself holds for deals (PostgreSQL): a deal's client
and platform are its account's (one composite foreign key), and a ticket is
stored once per platform."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Deal
from tests.conftest import require_or_skip
from tests.factories import TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db


def deal(account, *, ticket=1, client=None, platform=None) -> Deal:
    now = timezone.now()
    return Deal(
        platform=platform or account.platform,
        ticket=ticket,
        account=account,
        client=client or account.user,
        symbol="EURUSD",
        side="buy",
        volume=Decimal("0.10"),
        open_time=now - timedelta(hours=1),
        close_time=now,
        open_price=Decimal("1.08000"),
        close_price=Decimal("1.08100"),
        profit=1000,
    )


def check_now() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_deal_for_another_client_than_its_accounts_is_refused():
    require_or_skip(connection.vendor == "postgresql", "the composite key is PostgreSQL's")
    owner, other = TraderFactory(), TraderFactory()
    account = open_trading_account(owner)
    deal(account, ticket=1).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        deal(account, ticket=2, client=other).save()
        check_now()
    assert Deal.objects.count() == 1


def test_a_ticket_is_stored_once_per_platform():
    account = open_trading_account(TraderFactory())
    deal(account, ticket=7).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        deal(account, ticket=7).save()
    assert Deal.objects.count() == 1
