"""Demo data of the IB programme, through the services, for the demo people of
``accounts.demo`` (after payments: their deposits and trading exist).

- A plan, "Standard IB": 8 USD per lot (metals 5 USD plus 10 % of the
  commission), 70 % to the client's partner and 30 % to the level above,
  deals held under a minute earn nothing, 200 USD at most per deal, 50 USD
  CPA for a first deposit of 100 USD or more.
- Diego (a partner since before the demo's history) and Erin, his
  sub-partner. Alice came through Diego's link, Bruno through Erin's (clicks
  and sign-ups recorded as the link and the sign-up record them, on the
  clock of the time line), so their past deals and first deposits earn
  commissions, accrued by the real accrual run.
- Finance paid Diego out once (his wallet shows it); Erin's commissions wait.
- Chen applied to become a partner: the application waits in the admin.

Idempotent: existing partners, links, referrals and payouts are kept; accrual
and CPA are idempotent by their own constraints.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from accounts.demo import DEMO_DOMAIN
from accounts.models import ClientProfile, Deal, User
from backoffice.demo import clock
from backoffice.money import from_minor
from payments.models import Deposit

from .exceptions import IbError
from .models import Material, Partner, Payout, Plan, Referral, ReferralLink
from .selectors import programme_settings

PLAN = "Standard IB"
PARTNERS = [
    # e-mail name, first, last, country, company, parent, link campaign
    ("diego", "Diego", "Fernandez", "ES", "Fernandez Trading Academy", None, "YouTube channel"),
    ("erin", "Erin", "Walsh", "IE", "", "diego", "Telegram group"),
]
# Who came through whose link (the client's name, the partner's).
REFERRED = [("alice", "diego"), ("bruno", "erin")]
# Visits of Diego's link that did not sign up (the funnel's top).
EXTRA_CLICKS = 37
PARTNERS_JOINED_AGO = timedelta(days=170)


def _user(name: str, first: str, last: str, country: str, joined: datetime) -> User:
    user, created = User.objects.get_or_create(
        email=f"{name}@{DEMO_DOMAIN}",
        defaults={"first_name": first, "last_name": last, "date_joined": joined},
    )
    if created:
        user.set_password(django_settings.DEMO_PASSWORD)
        user.save(update_fields=["password"])
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    ClientProfile.objects.get_or_create(user=user, defaults={"country": country})
    return user


def _plan(admin: User) -> Plan:
    from .services.plans import plan_create

    plan = Plan.objects.filter(name=PLAN).first()
    if plan is None:
        plan = plan_create(
            actor=admin,
            name=PLAN,
            currency="USD",
            description="Our standard plan for introducing brokers.",
            tier_shares="70, 30",
            min_hold_seconds=60,
            cap_per_deal=Decimal("200"),
            cpa_amount=Decimal("50"),
            cpa_min_deposit=Decimal("100"),
            effective_from=timezone.now(),
            rules=[
                {"instrument_group": "", "rebate_per_lot": Decimal("8")},
                {
                    "instrument_group": "metals",
                    "rebate_per_lot": Decimal("5"),
                    "commission_share": Decimal("10"),
                },
            ],
        )
    settings = programme_settings()
    if settings.default_plan_id is None:
        settings.default_plan = plan
        settings.save(update_fields=["default_plan"])
    return plan


def _partners(admin: User, plan: Plan, start: datetime) -> dict[str, Partner]:
    from .services import partner_create
    from .services.referrals import referral_link_create

    partners: dict[str, Partner] = {}
    for name, first, last, country, company, parent, campaign in PARTNERS:
        user = _user(name, first, last, country, start)
        partner = Partner.objects.filter(user=user).first()
        if partner is None:
            partner = partner_create(
                actor=admin, user=user, parent=partners.get(parent), plan=plan, company=company
            )
        partners[name] = partner
        if not ReferralLink.objects.filter(partner=partner).exists():
            referral_link_create(partner=partner, name=campaign)
            if parent is None:
                referral_link_create(
                    partner=partner, name="Invite sub-partners", kind=ReferralLink.PARTNER
                )
    return partners


def _link(partner: Partner) -> ReferralLink:
    return ReferralLink.objects.filter(partner=partner, kind=ReferralLink.CLIENT).earliest(
        "created_at"
    )


def _refer(users: dict[str, User], partners: dict[str, Partner]) -> None:
    """Each referred demo client visited their partner's link an hour
    before signing up; the sign-up is attributed by the same service the
    ``client.registered`` subscriber calls."""
    from .services.referrals import referral_attribute_signup, referral_visit

    for client_name, partner_name in REFERRED:
        client = users.get(client_name)
        if client is None or Referral.objects.filter(client=client).exists():
            continue
        link = _link(partners[partner_name])
        with clock(client.date_joined - timedelta(hours=1)):
            visit = referral_visit(code=link.code, ip="203.0.113.10", user_agent="demo")
        if visit is not None and visit.cookie_token:
            referral_attribute_signup(client_id=client.pk, click_token=visit.cookie_token)
        if client_name == "alice":
            first = client.date_joined - timedelta(days=9)
            for i in range(EXTRA_CLICKS):
                with clock(first + timedelta(hours=5 * i)):
                    referral_visit(code=link.code, ip=f"198.51.100.{i + 1}", user_agent="demo")


def _accrue(users: dict[str, User]) -> None:
    from .services.accrual import accrual_run
    from .services.cpa import cpa_on_deposit

    # Their deposits completed before this seeder attributed them: the
    # deposit.completed subscriber found no partner then; ask again.
    clients = [users[name] for name, _ in REFERRED if name in users]
    for deposit_id in Deposit.objects.filter(
        user__in=clients, status=Deposit.COMPLETED
    ).values_list("pk", flat=True):
        cpa_on_deposit(deposit_id)
    bounds = Deal.objects.aggregate(first=Min("id"), last=Max("id"))
    if bounds["first"] is not None:
        accrual_run(first_deal_id=bounds["first"], last_deal_id=bounds["last"])


def _pay(finance: User, partner: Partner) -> str:
    from .services.payouts import payout_create

    if Payout.objects.filter(partner=partner).exists():
        return ""
    try:
        payout = payout_create(partner=partner, actor=finance, kind=Payout.MANUAL)
    except IbError as exc:
        return f" (no payout: {exc})"
    amount = from_minor(payout.amount, payout.currency.exponent)
    return f"; Finance paid him {amount} {payout.currency_id}"


def _material() -> None:
    if not Material.objects.exists():
        Material.objects.create(
            kind=Material.TEXT,
            title="Short post for social media",
            text=(
                "I trade with Demo Broker: tight spreads, fast withdrawals and a "
                "trader's room that works on a phone. Open an account here: {link}"
            ),
        )


def seed() -> list[str]:
    users = {
        u.email.split("@")[0]: u for u in User.objects.filter(email__endswith=f"@{DEMO_DOMAIN}")
    }
    admin, finance = users.get("administrator"), users.get("finance")
    if admin is None or finance is None or "alice" not in users:
        return []
    start = timezone.now() - PARTNERS_JOINED_AGO
    with transaction.atomic():
        with clock(start):
            plan = _plan(admin)
            partners = _partners(admin, plan, start)
        _refer(users, partners)
        _material()
    _accrue(users)
    paid = _pay(finance, partners["diego"])
    chen = users.get("chen")
    if chen is not None and not Partner.objects.filter(user=chen).exists():
        from .services import partner_apply

        partner_apply(
            user=chen,
            company="SG Traders Club",
            note="I run a trading community of 2,000 members in Singapore.",
        )
    return [
        "",
        f"IB programme: diego@{DEMO_DOMAIN} and his sub-partner erin@{DEMO_DOMAIN} "
        "(same password) see their partner dashboard at /partner/. Alice came through "
        f"Diego's link, Bruno through Erin's{paid}. Chen's application waits in "
        "Admin → Introducing brokers → Partners.",
    ]
