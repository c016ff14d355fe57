"""The room's partner programme page: apply, follow the application, apply
again after a rejection, invitations by sub-partner links, staff."""

from __future__ import annotations

import pytest

from backoffice.models import Event
from ib.models import Partner, ReferralLink
from ib.services import partner_approve, partner_reject
from ib.services.referrals import referral_link_create
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_partner, refer

pytestmark = pytest.mark.django_db

URL = "/room/partner/"
APPLICATION = {
    "company": "Alpha Signals Ltd",
    "website": "alpha-signals.example",
    "note": "A trading newsletter with 4,000 readers in Spain.",
}


def approver():
    return StaffFactory(roles=["Compliance"])


def test_a_trader_reads_about_the_programme_and_applies(client):
    trader = TraderFactory()
    client.force_login(trader)
    page = client.get(URL).content.decode()
    assert "Earn by introducing traders" in page and "Apply to become a partner" in page
    assert 'aria-current="page">Partner programme<' in page
    response = client.post(URL, APPLICATION)
    assert response.status_code == 302 and response["Location"] == URL
    partner = Partner.objects.get(user=trader)
    assert partner.status == Partner.PENDING
    assert (partner.company, partner.website, partner.application_note) == (
        "Alpha Signals Ltd",
        "https://alpha-signals.example",
        APPLICATION["note"],
    )
    assert partner.parent_partner is None
    assert Event.objects.filter(name="ib.partner_applied", client=trader).count() == 1
    page = client.get(URL).content.decode()
    assert "Your application is under review" in page and "Alpha Signals Ltd" in page


def test_bad_input_is_refused_and_nothing_is_recorded(client):
    client.force_login(TraderFactory())
    response = client.post(URL, {**APPLICATION, "note": "hi", "website": "javascript:alert(1)"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Tell us a little more" in page and "Enter a valid URL" in page
    assert not Partner.objects.exists()


def test_a_pending_applicant_cannot_apply_twice(client):
    trader = TraderFactory()
    client.force_login(trader)
    client.post(URL, APPLICATION)
    response = client.post(URL, {**APPLICATION, "company": "Changed"})
    assert response.status_code == 200
    assert Partner.objects.get(user=trader).company == "Alpha Signals Ltd"
    assert Event.objects.filter(name="ib.partner_applied").count() == 1


def test_a_rejected_applicant_reads_why_and_may_apply_again(client):
    trader = TraderFactory()
    client.force_login(trader)
    client.post(URL, APPLICATION)
    partner = Partner.objects.get(user=trader)
    partner_reject(actor=approver(), partner=partner, reason="We need your <b>website</b> first.")
    page = client.get(URL).content.decode()
    assert "Your application was not accepted" in page
    assert "We need your &lt;b&gt;website&lt;/b&gt; first." in page
    assert "Apply again" in page
    client.post(URL, {**APPLICATION, "company": "Alpha 2"})
    partner.refresh_from_db()
    assert (partner.status, partner.company) == (Partner.PENDING, "Alpha 2")
    page = client.get(URL).content.decode()
    assert "under review" in page and "not accepted" not in page


def test_an_active_partner_gets_the_way_to_the_dashboard(client):
    partner = make_partner()
    client.force_login(partner.user)
    page = client.get(URL).content.decode()
    assert "You are a partner" in page and "Open the partner dashboard" in page
    assert '<form method="post" class="form-grid"' not in page
    client.post(URL, APPLICATION)
    assert Partner.objects.count() == 1


def test_an_approved_application_opens_the_dashboard(client):
    trader = TraderFactory()
    client.force_login(trader)
    client.post(URL, APPLICATION)
    partner_approve(actor=approver(), partner=Partner.objects.get(user=trader))
    assert "You are a partner" in client.get(URL).content.decode()
    assert client.get("/partner/links/").status_code == 200


def test_invited_through_a_sub_partner_link_the_inviter_is_the_parent(client):
    inviter = make_partner()
    invite = referral_link_create(partner=inviter, name="Team", kind=ReferralLink.PARTNER)
    trader = TraderFactory()
    client.force_login(trader)
    client.get(f"/r/{invite.code}/")
    page = client.get(URL).content.decode()
    assert "You were invited by one of our partners" in page
    client.post(URL, APPLICATION)
    partner = Partner.objects.get(user=trader)
    assert partner.parent_partner == inviter
    assert partner.path.startswith(Partner.objects.get(pk=inviter.pk).path)


def test_a_client_link_does_not_make_its_partner_the_parent(client):
    owner = make_partner()
    link = referral_link_create(partner=owner, name="Clients")
    trader = TraderFactory()
    client.force_login(trader)
    client.get(f"/r/{link.code}/")
    assert "You were invited" not in client.get(URL).content.decode()
    client.post(URL, APPLICATION)
    assert Partner.objects.get(user=trader).parent_partner is None


def test_a_referred_client_goes_under_their_partner(client):
    owner = make_partner()
    trader = TraderFactory()
    refer(trader, owner)
    client.force_login(trader)
    client.post(URL, APPLICATION)
    assert Partner.objects.get(user=trader).parent_partner == owner


def test_staff_are_told_they_cannot_be_partners(client):
    staff = StaffFactory()
    client.force_login(staff)
    page = client.get(URL).content.decode()
    assert "Staff accounts cannot be partners" in page
    client.post(URL, APPLICATION)
    assert not Partner.objects.exists()


def test_signed_out_visitors_sign_in_first(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_page_query_count(client, django_assert_num_queries):
    trader = TraderFactory()
    client.force_login(trader)
    client.get(URL)
    # user, partner record (none), and the room's navigation needs nothing more
    with django_assert_num_queries(2):
        assert client.get(URL).status_code == 200
    client.post(URL, APPLICATION)
    client.get(URL)
    # user, partner, its application events
    with django_assert_num_queries(3):
        assert client.get(URL).status_code == 200
