"""The IB demo (``ib.demo``, run by ``manage.py seed_demo``): partners, links,
referred clients and their commissions made by the real services and the
real accrual run; a payout; an application waiting; a second run adds
nothing."""

from __future__ import annotations

import pytest

from accounts.demo import seed_demo, seed_trading
from accounts.models import Deal
from ib import demo
from ib.models import Click, Commission, Partner, Payout, Referral, ReferralLink
from kyc import demo as kyc_demo
from payments import demo as payments_demo
from payments.models import LedgerAccount

# The live accounts are credited by the transfers' tasks after commit.
pytestmark = pytest.mark.django_db(transaction=True)


def seed_everything() -> str:
    seed_demo()
    kyc_demo.seed()
    seed_trading()
    payments_demo.seed()
    payments_demo.seed_trading_funding()
    return "\n".join(demo.seed())


def counts() -> tuple:
    return tuple(
        model.objects.count()
        for model in (Partner, ReferralLink, Click, Referral, Commission, Payout)
    )


def test_the_demo_programme_is_made_by_the_services_and_is_idempotent():
    lines = seed_everything()
    diego = Partner.objects.get(user__email="diego@demo.test")
    erin = Partner.objects.get(user__email="erin@demo.test")
    chen = Partner.objects.get(user__email="chen@demo.test")
    assert (diego.status, erin.status, chen.status) == ("active", "active", "pending")
    assert erin.parent_partner_id == diego.pk and diego.plan.name == demo.PLAN
    referred = dict(Referral.objects.values_list("client__email", "partner__user__email"))
    assert referred == {"alice@demo.test": "diego@demo.test", "bruno@demo.test": "erin@demo.test"}
    assert Referral.objects.filter(source=Referral.COOKIE).count() == 2
    # Alice's deals pay Diego at level 1; Bruno's pay Erin 70 % and Diego 30 %.
    levels = set(
        Commission.objects.filter(kind=Commission.DEAL).values_list("partner__user__email", "level")
    )
    assert levels == {("diego@demo.test", 1), ("erin@demo.test", 1), ("diego@demo.test", 2)}
    # No commission on Alice's demo account.
    paid_deals = Commission.objects.filter(kind=Commission.DEAL).values_list("deal_id", flat=True)
    assert not Deal.objects.filter(pk__in=paid_deals, account__is_demo=True).exists()
    assert Commission.objects.filter(kind=Commission.CPA).count() == 2
    payout = Payout.objects.get()
    assert payout.partner_id == diego.pk
    wallet = LedgerAccount.objects.get(owner=diego.user, currency="USD")
    assert wallet.balance == payout.amount > 0
    assert not Commission.objects.filter(partner=diego, payout__isnull=True, amount__gt=0).exists()
    assert Commission.objects.filter(partner=erin, payout__isnull=True, amount__gt=0).exists()
    assert "diego@demo.test" in lines and "Chen's application" in lines

    before = counts()
    demo.seed()
    assert counts() == before
