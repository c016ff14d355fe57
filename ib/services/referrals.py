"""Referral links, their clicks and the attribution of sign-ups.

A link's code is also a promo code (``accounts.registration.CAMPAIGN_PATTERN``)
and a campaign that may choose the link's registration flow. A visit
through ``/r/<code>/`` records a :class:`~ib.models.Click` whose token the
attribution cookie carries; the sign-up hands that token (and the promo
code typed) to :func:`referral_attribute_signup` through the
``client.registered`` event.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone

from accounts.models import RegistrationFlow
from accounts.registration import CAMPAIGN_PATTERN, campaign_normalise
from backoffice.events import publish

from .. import selectors
from ..exceptions import IbError
from ..models import Click, Partner, Referral, ReferralLink, Settings

logger = logging.getLogger(__name__)

# Codes: 8 characters from an alphabet without look-alikes (no 0/o, 1/l/i),
# so that a code read aloud or typed from a banner comes out right.
CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
CODE_LENGTH = 8
MAX_ACTIVE_LINKS = 200
SIGNUP_PAGE = "/accounts/signup/"


def _programme_page() -> str:
    return reverse("ib:apply")


def landing_default(kind: str) -> str:
    """Where a link sends visitors unless the partner chose a page: the
    sign-up for client links, the programme page for sub-partner links."""
    return _programme_page() if kind == ReferralLink.PARTNER else SIGNUP_PAGE


def landing_page_clean(value: str, *, kind: str = ReferralLink.CLIENT) -> str:
    """A landing page as stored: a path of a page of this site (query and
    fragment allowed), never another site. Blank: the default for ``kind``.
    Raises :class:`IbError` with the reason otherwise."""
    value = (value or "").strip()
    if not value:
        return landing_default(kind)
    refusal = (
        "A landing page is a page of this site, written as a path that starts with a "
        'single "/", such as /accounts/signup/.'
    )
    if len(value) > ReferralLink._meta.get_field("landing_page").max_length:
        raise IbError("This landing page is too long: 200 characters at most.")
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        raise IbError(refusal)
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise IbError(refusal)
    try:
        match = resolve(parts.path)
    except Resolver404:
        raise IbError(f"There is no page at {parts.path} on this site.") from None
    if match.view_name == "ib:referral":
        raise IbError("A link cannot land on another referral link.")
    return value


def landing_url(link: ReferralLink) -> str:
    """The link's landing page with ``campaign=<code>`` added to its query,
    so that the sign-up shows the code and picks the link's flow."""
    landing = link.landing_page or ""
    if not landing.startswith("/") or landing.startswith("//") or "\\" in landing:
        landing = landing_default(link.kind)  # never another site, whatever the row says
    parts = urlsplit(landing)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "campaign"]
    query.append(("campaign", link.code))
    return urlunsplit(("", "", parts.path, urlencode(query), parts.fragment))


def _flow_codes() -> set[str]:
    codes: set[str] = set()
    for campaigns in RegistrationFlow.objects.values_list("campaigns", flat=True):
        codes.update(c.strip().lower() for c in (campaigns or "").splitlines() if c.strip())
    return codes


def _random_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _new_code(taken_by_flows: set[str]) -> str:
    for _ in range(20):
        code = _random_code()
        if code in taken_by_flows or ReferralLink.objects.filter(code=code).exists():
            continue
        assert CAMPAIGN_PATTERN.fullmatch(code)
        return code
    raise IbError("Could not find a free code for the link; please try again.")


def _flow_check(registration_flow: RegistrationFlow | None) -> RegistrationFlow | None:
    if registration_flow is None:
        return None
    flow = RegistrationFlow.objects.filter(pk=registration_flow.pk, is_active=True).first()
    if flow is None:
        raise IbError("This registration flow is not available; choose another one.")
    return flow


@transaction.atomic
def referral_link_create(
    *,
    partner: Partner,
    name: str,
    kind: str = ReferralLink.CLIENT,
    landing_page: str = "",
    registration_flow: RegistrationFlow | None = None,
    actor=None,
) -> ReferralLink:
    """A new link of an active partner, with a fresh code that no other link
    and no registration flow's campaign uses."""
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if partner.status != Partner.ACTIVE:
        raise IbError("Only active partners can create referral links.")
    name = " ".join((name or "").split())
    if not name:
        raise IbError("Give the link a campaign name, so that you can tell your links apart.")
    if len(name) > ReferralLink._meta.get_field("name").max_length:
        raise IbError("The campaign name is too long: 100 characters at most.")
    if kind not in dict(ReferralLink.KINDS):
        raise IbError("A link is for clients or for sub-partners.")
    if ReferralLink.objects.filter(partner=partner, is_active=True).count() >= MAX_ACTIVE_LINKS:
        raise IbError(
            f"You have {MAX_ACTIVE_LINKS} active links: deactivate some before creating more."
        )
    landing = landing_page_clean(landing_page, kind=kind)
    flow = _flow_check(registration_flow)
    taken = _flow_codes()
    for _ in range(3):
        try:
            with transaction.atomic():
                link = ReferralLink.objects.create(
                    partner=partner,
                    kind=kind,
                    code=_new_code(taken),
                    name=name,
                    landing_page=landing,
                    registration_flow=flow,
                )
            break
        except IntegrityError:  # a concurrent link took the same code
            continue
    else:
        raise IbError("Could not find a free code for the link; please try again.")
    publish(
        "ib.link_created",
        link,
        {"code": link.code, "kind": kind, "name": name},
        client=partner.user,
        actor=actor or partner.user,
    )
    return link


@transaction.atomic
def referral_link_deactivate(*, partner: Partner, link: ReferralLink, actor=None) -> ReferralLink:
    """Stop a link: its visits get a 404 and its code no longer works as a
    promo code. Clients it brought stay attributed."""
    link = ReferralLink.objects.select_for_update().get(pk=link.pk)
    if link.partner_id != partner.pk:
        raise IbError("This is not your link.")
    if not link.is_active:
        return link
    link.is_active = False
    link.save(update_fields=["is_active"])
    publish(
        "ib.link_deactivated",
        link,
        {"code": link.code},
        client=partner.user,
        actor=actor or partner.user,
    )
    return link


# --- visits -------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """What the ``/r/<code>/`` view does: redirect to ``redirect_to``; set
    the cookie to ``cookie_token`` for ``max_age`` seconds when it is given
    (else leave the visitor's cookies as they are)."""

    link: ReferralLink
    redirect_to: str
    cookie_token: str | None
    max_age: int


def _click_valid(token: str, settings: Settings, now: datetime) -> Click | None:
    if not token or len(token) > Click._meta.get_field("token").max_length:
        return None
    return (
        Click.objects.filter(token=token, at__gte=now - timedelta(days=settings.cookie_days))
        .select_related("link__partner")
        .first()
    )


@transaction.atomic
def referral_visit(
    *, code: str, user=None, cookie: str = "", ip: str = "", user_agent: str = ""
) -> Visit | None:
    """A visit through a link: a click counted. ``None``: no such active
    link (of an active partner). A partner following their own link counts
    no click and gets no cookie. First click wins: a visitor who still
    carries a valid cookie keeps it (the visit still counts for the link),
    unless the programme is set to last click."""
    code = campaign_normalise(code)
    link = (
        ReferralLink.objects.filter(code=code, is_active=True, partner__status=Partner.ACTIVE)
        .select_related("partner")
        .first()
        if code
        else None
    )
    if link is None:
        return None
    settings = selectors.programme_settings()
    max_age = settings.cookie_days * 86400
    redirect_to = landing_url(link)
    if user is not None and user.is_authenticated and user.pk == link.partner.user_id:
        return Visit(link=link, redirect_to=redirect_to, cookie_token=None, max_age=max_age)
    now = timezone.now()
    click = Click.objects.create(
        link=link,
        token=secrets.token_urlsafe(24),
        at=now,
        ip=ip or None,
        user_agent=(user_agent or "")[:200],
    )
    ReferralLink.objects.filter(pk=link.pk).update(clicks=F("clicks") + 1)
    keep = settings.attribution == Settings.FIRST_CLICK and _click_valid(cookie, settings, now)
    return Visit(
        link=link,
        redirect_to=redirect_to,
        cookie_token=None if keep else click.token,
        max_age=max_age,
    )


def invitation_link(cookie: str) -> ReferralLink | None:
    """The sub-partner link behind the visitor's attribution cookie (a valid
    click on an active link of an active partner), or None."""
    if not cookie:
        return None
    click = _click_valid(cookie, selectors.programme_settings(), timezone.now())
    if click is None:
        return None
    link = click.link
    if link.kind != ReferralLink.PARTNER or not link.is_active:
        return None
    return link if link.partner.status == Partner.ACTIVE else None


# --- attribution --------------------------------------------------------------------


def _refusal(link: ReferralLink, client, client_partner: Partner | None) -> str:
    """Why ``client`` cannot be attributed to ``link``'s partner ("" if they can)."""
    partner = link.partner
    if partner.user_id == client.pk:
        return "self-referral"
    if partner.status != Partner.ACTIVE:
        return f"partner {partner.pk} is {partner.status}"
    if client_partner is not None and partner.path.startswith(client_partner.path):
        return f"loop: partner {partner.pk} is in the client's own subtree"
    return ""


def _candidates(
    client, click_token: str, promo_code: str, settings: Settings
) -> list[tuple[str, ReferralLink]]:
    """(source, link) pairs to try, in the programme's order."""
    by_cookie: list[tuple[str, ReferralLink]] = []
    by_promo: list[tuple[str, ReferralLink]] = []
    if click_token and len(click_token) <= Click._meta.get_field("token").max_length:
        joined = client.date_joined
        click = (
            Click.objects.filter(
                token=click_token,
                at__gte=joined - timedelta(days=settings.cookie_days),
                at__lte=joined,
            )
            .select_related("link__partner")
            .first()
        )
        if click is not None:
            by_cookie.append((Referral.COOKIE, click.link))
        else:
            logger.info("ib: click token of client %s unknown or expired", client.pk)
    code = campaign_normalise(promo_code)
    if code:
        link = (
            ReferralLink.objects.filter(code=code, is_active=True).select_related("partner").first()
        )
        if link is not None:
            by_promo.append((Referral.PROMO, link))
    if settings.attribution == Settings.LAST_CLICK:
        return by_promo + by_cookie
    return by_cookie + by_promo


@transaction.atomic
def referral_attribute_signup(
    *, client_id: int, click_token: str = "", promo_code: str = ""
) -> Referral | None:
    """Attribute a new client to a partner: the link of their attribution
    cookie (a click within the cookie's lifetime before they signed up),
    else the link whose code they typed as a promo code; under last click a
    typed code comes first. From the sign-up (``since`` = date joined).

    Nothing happens (logged) for a client already attributed (so replays
    change nothing), a self-referral, a partner who is not active, or a
    partner in the client's own subtree (a loop).
    """
    client = get_user_model().objects.select_for_update().filter(pk=client_id).first()
    if client is None or client.is_staff:
        return None
    if Referral.objects.filter(client_id=client.pk, until__isnull=True).exists():
        logger.info("ib: client %s is already attributed", client.pk)
        return None
    settings = selectors.programme_settings()
    client_partner = Partner.objects.filter(user_id=client.pk).first()
    for source, link in _candidates(client, click_token, promo_code, settings):
        refusal = _refusal(link, client, client_partner)
        if refusal:
            logger.info("ib: client %s not attributed to link %s: %s", client.pk, link.pk, refusal)
            continue
        try:
            with transaction.atomic():
                referral = Referral.objects.create(
                    client=client,
                    partner=link.partner,
                    link=link,
                    source=source,
                    since=client.date_joined,
                )
        except IntegrityError:  # attributed meanwhile
            logger.info("ib: client %s was attributed meanwhile", client.pk)
            return None
        publish(
            "ib.client_referred",
            client,
            {"partner": link.partner_id, "link": link.pk, "source": source},
        )
        return referral
    return None
