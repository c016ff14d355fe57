"""The partner's Links page: creating links (codes, landing pages, flows),
the funnel per link, QR codes, deactivation, another partner's ids."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from accounts.models import RegistrationFlow
from accounts.registration import CAMPAIGN_PATTERN
from ib.exceptions import IbError
from ib.models import Partner, ReferralLink
from ib.selectors.links import funnel_totals, links_with_funnel
from ib.services import client_move
from ib.services.referrals import (
    landing_page_clean,
    referral_link_create,
    referral_link_deactivate,
)
from payments.models import PaymentMethod
from payments.services.deposits import deposit_confirm
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_partner, refer
from tests.payments.providers.helpers import started

pytestmark = pytest.mark.django_db

URL = "/partner/links/"
HOSTILE = [
    "//evil.com",
    "//evil.com/accounts/signup/",
    "https://evil.com",
    "http:/evil.com",
    "javascript:alert(1)",
    "/\\evil.com",
    "\\\\evil.com",
    "/accounts/signup/\n//evil.com",
    "evil.com/accounts/signup/",
    "/no/such/page/",
]


def signed_in(client, partner: Partner):
    client.force_login(partner.user)
    return client


def link_of(partner: Partner, **fields) -> ReferralLink:
    return referral_link_create(partner=partner, name=fields.pop("name", "Blog"), **fields)


# --- the service --------------------------------------------------------------------


def test_codes_are_short_lower_case_unique_promo_codes():
    partner = make_partner()
    codes = {link_of(partner, name=f"Link {i}").code for i in range(30)}
    assert len(codes) == 30
    for code in codes:
        assert re.fullmatch(r"[a-z2-9]{8}", code) and CAMPAIGN_PATTERN.fullmatch(code)
        assert not set(code) & set("01oil")


def test_defaults_by_kind_and_checked_landing_pages():
    partner = make_partner()
    assert link_of(partner).landing_page == "/accounts/signup/"
    assert link_of(partner, kind=ReferralLink.PARTNER).landing_page == "/room/partner/"
    assert link_of(partner, landing_page=" /accounts/login/?next=/room/ ").landing_page == (
        "/accounts/login/?next=/room/"
    )


@pytest.mark.parametrize("landing", HOSTILE)
def test_a_landing_page_elsewhere_is_refused(landing):
    partner = make_partner()
    with pytest.raises(IbError) as refused:
        link_of(partner, landing_page=landing)
    assert "this site" in str(refused.value)
    assert not ReferralLink.objects.exists()


def test_a_link_cannot_land_on_a_referral_link():
    with pytest.raises(IbError, match="another referral link"):
        landing_page_clean("/r/abcdefgh/")


def test_only_active_partners_create_links():
    partner = make_partner()
    Partner.objects.filter(pk=partner.pk).update(status=Partner.PENDING)
    with pytest.raises(IbError, match="active partners"):
        link_of(partner)
    assert not ReferralLink.objects.exists()


def test_a_blank_name_kind_or_inactive_flow_is_refused():
    partner = make_partner()
    with pytest.raises(IbError):
        link_of(partner, name="   ")
    with pytest.raises(IbError):
        link_of(partner, kind="admin")
    flow = RegistrationFlow.objects.create(name="Old", is_active=False)
    with pytest.raises(IbError):
        link_of(partner, registration_flow=flow)
    assert not ReferralLink.objects.exists()


def test_deactivating_another_partners_link_is_refused():
    link = link_of(make_partner())
    with pytest.raises(IbError):
        referral_link_deactivate(partner=make_partner(), link=link)
    link.refresh_from_db()
    assert link.is_active


# --- the funnel ---------------------------------------------------------------------


def completed_deposit(user) -> None:
    card = PaymentMethod.objects.get(name="Card (sandbox)")
    deposit = started(user, card, "100.00")
    deposit_confirm(deposit=deposit, amount=Decimal("100.00"), currency="USD")


def funnel_fixture():
    """Partner with two links: "Blog" brought 3 clients (2 verified, 1 with
    a completed deposit, 1 later moved to another partner), "Video" none."""
    partner = make_partner()
    blog, video = link_of(partner, name="Blog"), link_of(partner, name="Video")
    ReferralLink.objects.filter(pk=blog.pk).update(clicks=40)
    ReferralLink.objects.filter(pk=video.pk).update(clicks=3)
    verified_depositor = TraderFactory(kyc_level=2)
    verified = TraderFactory(kyc_level=1)
    unverified = TraderFactory(kyc_level=False)
    for user in (verified_depositor, verified, unverified):
        referral = refer(user, partner)
        referral.link = blog
        referral.save()
    completed_deposit(verified_depositor)
    # A client who signed up through the link and was moved later still counts.
    staff = StaffFactory(roles=["Compliance"])
    client_move(actor=staff, client=unverified, partner=make_partner())
    # Another partner's clients never count.
    stranger = link_of(make_partner())
    other = refer(TraderFactory(), stranger.partner)
    other.link = stranger
    other.save()
    completed_deposit(other.client)
    return partner, blog, video


def test_the_funnel_per_link():
    partner, blog, video = funnel_fixture()
    funnels = {f.link.pk: f for f in links_with_funnel(partner)}
    assert set(funnels) == {blog.pk, video.pk}
    blog_row = funnels[blog.pk]
    assert (blog_row.clicks, blog_row.signups, blog_row.verified, blog_row.deposited) == (
        40,
        3,
        2,
        1,
    )
    assert blog_row.conversion == "7.5 %"
    video_row = funnels[video.pk]
    assert (video_row.signups, video_row.verified, video_row.deposited) == (0, 0, 0)
    assert funnel_totals(list(funnels.values())) == {
        "clicks": 43,
        "signups": 3,
        "verified": 2,
        "deposited": 1,
    }


def test_the_page_shows_the_funnel_in_a_fixed_number_of_queries(client, django_assert_num_queries):
    partner, blog, _video = funnel_fixture()
    signed_in(client, partner)
    client.get(URL)  # warm the session and the brand
    # user, partner, links, funnel, the form's registration flows
    with django_assert_num_queries(5):
        page = client.get(URL).content.decode()
    assert f"http://testserver/r/{blog.code}/" in page
    assert re.search(r"<dt>Sign-ups</dt><dd>3</dd>", page)
    assert re.search(r"<dt>First deposits</dt><dd>1</dd>", page)
    for i in range(5):
        link_of(partner, name=f"More {i}")
    with django_assert_num_queries(5):
        assert client.get(URL).status_code == 200


# --- the page -----------------------------------------------------------------------


def test_an_empty_page_invites_to_create_the_first_link(client):
    page = signed_in(client, make_partner()).get(URL).content.decode()
    assert "Create your first link" in page
    assert 'name="landing"' in page and "Another page of this site" in page


def test_creating_a_link_from_the_page(client):
    partner = make_partner()
    flow = RegistrationFlow.objects.create(name="Partners' flow", priority=40)
    response = signed_in(client, partner).post(
        URL,
        {
            "name": "Spring newsletter",
            "kind": "client",
            "landing": "custom",
            "landing_custom": "/accounts/signup/?utm_source=mail",
            "registration_flow": flow.pk,
        },
    )
    link = ReferralLink.objects.get(partner=partner)
    assert response.status_code == 302 and response["Location"] == f"{URL}#link-{link.pk}"
    assert (link.name, link.kind, link.landing_page, link.registration_flow) == (
        "Spring newsletter",
        "client",
        "/accounts/signup/?utm_source=mail",
        flow,
    )
    page = client.get(URL).content.decode()
    assert "Spring newsletter" in page and f"http://testserver/r/{link.code}/" in page
    assert "Partners&#x27; flow" in page


def test_a_sub_partner_link_with_the_default_landing(client):
    partner = make_partner()
    signed_in(client, partner).post(URL, {"name": "Team", "kind": "partner", "landing": ""})
    link = ReferralLink.objects.get(partner=partner)
    assert (link.kind, link.landing_page) == ("partner", "/room/partner/")


@pytest.mark.parametrize("landing", HOSTILE[:6])
def test_the_form_refuses_a_landing_page_elsewhere_and_creates_nothing(client, landing):
    response = signed_in(client, make_partner()).post(
        URL, {"name": "Evil", "kind": "client", "landing": "custom", "landing_custom": landing}
    )
    assert response.status_code == 400
    assert "page of this site" in response.content.decode()
    assert not ReferralLink.objects.exists()


def test_the_form_refuses_a_landing_choice_not_offered(client):
    response = signed_in(client, make_partner()).post(
        URL, {"name": "Evil", "kind": "client", "landing": "https://evil.com"}
    )
    assert response.status_code == 400
    assert not ReferralLink.objects.exists()


def test_a_flow_that_is_not_active_is_not_offered(client):
    flow = RegistrationFlow.objects.create(name="Retired", is_active=False)
    partner = make_partner()
    page = signed_in(client, partner).get(URL).content.decode()
    assert "Retired" not in page
    response = client.post(
        URL, {"name": "X", "kind": "client", "landing": "", "registration_flow": flow.pk}
    )
    assert response.status_code == 400 and not ReferralLink.objects.exists()


def test_people_who_are_not_active_partners_go_to_the_programme_page(client):
    client.force_login(TraderFactory())
    assert client.get(URL)["Location"] == "/room/partner/"
    pending = make_partner()
    Partner.objects.filter(pk=pending.pk).update(status=Partner.PENDING)
    client.force_login(pending.user)
    response = client.post(URL, {"name": "X", "kind": "client", "landing": ""})
    assert response["Location"] == "/room/partner/"
    assert not ReferralLink.objects.exists()


def test_the_navigation_has_links_and_materials(client):
    page = signed_in(client, make_partner()).get(URL).content.decode()
    assert 'href="/partner/links/"' in page and 'aria-current="page">Links<' in page
    assert 'href="/partner/materials/"' in page


# --- QR codes and deactivation --------------------------------------------------------


def test_the_qr_code_of_a_link(client):
    partner = make_partner()
    link = link_of(partner)
    response = signed_in(client, partner).get(f"{URL}{link.pk}/qr.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    body = response.content.decode()
    assert body.startswith("<?xml") and "<svg" in body
    download = client.get(f"{URL}{link.pk}/qr.svg", {"download": "1"})
    assert download["Content-Disposition"] == f'attachment; filename="link-{link.code}.svg"'


def test_another_partners_link_is_404(client):
    mine, theirs = link_of(make_partner()), link_of(make_partner())
    signed_in(client, mine.partner)
    assert client.get(f"{URL}{theirs.pk}/qr.svg").status_code == 404
    assert client.get(f"{URL}999999/qr.svg").status_code == 404
    assert client.post(f"{URL}{theirs.pk}/deactivate/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active


def test_deactivating_a_link(client):
    link = link_of(make_partner())
    signed_in(client, link.partner)
    assert client.get(f"{URL}{link.pk}/deactivate/").status_code == 405
    response = client.post(f"{URL}{link.pk}/deactivate/")
    assert response.status_code == 302
    link.refresh_from_db()
    assert not link.is_active
    page = client.get(URL).content.decode()
    assert "Deactivated" in page
    assert client.get(f"/r/{link.code}/").status_code == 404
