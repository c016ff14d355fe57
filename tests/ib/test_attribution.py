"""Referral link visits (/r/<code>/), the attribution cookie and the
attribution of sign-ups: cookie, expiry, first and last click, typed promo
codes, self-referral and loops, replays, the link's registration flow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import RegistrationFlow, User
from accounts.registration import flow_for
from accounts.services import client_register
from backoffice.events import subscribers_for
from backoffice.models import Event
from ib.exceptions import IbError
from ib.models import Click, Partner, Referral, ReferralLink, Settings
from ib.services import client_move, partner_suspend
from ib.services.referrals import referral_attribute_signup, referral_link_create
from tests.factories import StaffFactory, TraderFactory, signup_data
from tests.ib.factories import make_chain, make_partner

pytestmark = pytest.mark.django_db

COOKIE = settings.IB_COOKIE_NAME
EMAIL = "new.trader@example.com"


def link_of(partner: Partner, **fields) -> ReferralLink:
    return referral_link_create(partner=partner, name=fields.pop("name", "Blog"), **fields)


def programme(**fields) -> Settings:
    row, _ = Settings.objects.get_or_create(pk=1)
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def sign_up(client, capture, **overrides) -> User:
    with capture(execute=True):
        response = client.post("/accounts/signup/", signup_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:1500]
    return User.objects.get(email=EMAIL)


# --- visits -------------------------------------------------------------------------


def test_a_visit_counts_a_click_sets_the_cookie_and_lands_with_the_code(client):
    link = link_of(make_partner())
    response = client.get(
        f"/r/{link.code}/", REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="Firefox/130"
    )
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/signup/?campaign={link.code}"
    morsel = response.cookies[COOKIE]
    click = Click.objects.get(link=link)
    assert morsel.value == click.token and len(click.token) >= 32
    assert morsel["max-age"] == 30 * 86400
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and not morsel["secure"]
    assert (click.ip, click.user_agent) == ("198.51.100.7", "Firefox/130")
    link.refresh_from_db()
    assert link.clicks == 1
    assert "no-cache" in response["Cache-Control"]


def test_the_cookie_is_secure_over_https_and_lives_as_long_as_configured(client):
    programme(cookie_days=7)
    link = link_of(make_partner())
    response = client.get(f"/r/{link.code}/", secure=True)
    assert response.cookies[COOKIE]["secure"]
    assert response.cookies[COOKIE]["max-age"] == 7 * 86400


def test_a_sub_partner_link_lands_on_the_programme_page_and_keeps_its_query(client):
    partner = make_partner()
    invite = link_of(partner, kind=ReferralLink.PARTNER)
    assert client.get(f"/r/{invite.code}/")["Location"] == f"/room/partner/?campaign={invite.code}"
    promo = link_of(partner, landing_page="/accounts/signup/?lang=de#form")
    assert (
        client.get(f"/r/{promo.code.upper()}/")["Location"]
        == f"/accounts/signup/?lang=de&campaign={promo.code}#form"
    )


def test_unknown_inactive_and_suspended_links_are_404_and_count_nothing(client):
    partner = make_partner()
    link = link_of(partner)
    assert client.get("/r/nosuchcode/").status_code == 404
    assert client.get("/r/<script>/").status_code == 404
    link.is_active = False
    link.save()
    assert client.get(f"/r/{link.code}/").status_code == 404
    other = link_of(make_partner())
    Partner.objects.filter(pk=other.partner_id).update(status=Partner.SUSPENDED)
    assert client.get(f"/r/{other.code}/").status_code == 404
    assert not Click.objects.exists()
    assert COOKIE not in client.cookies


def test_a_partner_following_their_own_link_counts_no_click_and_gets_no_cookie(client):
    partner = make_partner()
    link = link_of(partner)
    client.force_login(partner.user)
    response = client.get(f"/r/{link.code}/")
    assert response.status_code == 302
    assert COOKIE not in response.cookies
    assert not Click.objects.exists()
    link.refresh_from_db()
    assert link.clicks == 0


def test_first_click_wins_the_second_visit_counts_but_keeps_the_cookie(client):
    first, second = link_of(make_partner()), link_of(make_partner())
    token = client.get(f"/r/{first.code}/").cookies[COOKIE].value
    response = client.get(f"/r/{second.code}/")
    assert COOKIE not in response.cookies
    assert client.cookies[COOKIE].value == token
    second.refresh_from_db()
    assert second.clicks == 1  # the visit counts for the link's funnel


def test_an_expired_or_forged_cookie_is_replaced(client):
    first, second = link_of(make_partner()), link_of(make_partner())
    client.get(f"/r/{first.code}/")
    Click.objects.filter(link=first).update(at=timezone.now() - timedelta(days=31))
    token = client.get(f"/r/{second.code}/").cookies[COOKIE].value
    assert Click.objects.get(token=token).link == second
    client.cookies[COOKIE] = "forged-token-forged-token-123456"
    assert (
        client.get(f"/r/{first.code}/").cookies[COOKIE].value != "forged-token-forged-token-123456"
    )


def test_last_click_setting_replaces_the_cookie(client):
    programme(attribution=Settings.LAST_CLICK)
    first, second = link_of(make_partner()), link_of(make_partner())
    client.get(f"/r/{first.code}/")
    token = client.get(f"/r/{second.code}/").cookies[COOKIE].value
    assert Click.objects.get(token=token).link == second


# --- attribution at sign-up ---------------------------------------------------------


def test_a_sign_up_after_a_visit_is_the_partners_client(client, django_capture_on_commit_callbacks):
    partner = make_partner()
    link = link_of(partner)
    client.get(f"/r/{link.code}/")
    user = sign_up(client, django_capture_on_commit_callbacks)
    referral = Referral.objects.get(client=user)
    assert (referral.partner, referral.link, referral.source) == (partner, link, Referral.COOKIE)
    assert referral.since == user.date_joined and referral.until is None
    event = Event.objects.get(name="client.registered", client=user)
    assert event.payload["referral"] == client.cookies[COOKIE].value
    assert Event.objects.filter(name="ib.client_referred", client=user).exists()


def test_a_click_older_than_the_cookie_lifetime_does_not_attribute(
    client, django_capture_on_commit_callbacks
):
    programme(cookie_days=10)
    link = link_of(make_partner())
    client.get(f"/r/{link.code}/")
    # The browser still sends the cookie (say, its clock is wrong): the
    # click's own time decides.
    Click.objects.filter(link=link).update(at=timezone.now() - timedelta(days=10, minutes=1))
    user = sign_up(client, django_capture_on_commit_callbacks)
    assert not Referral.objects.filter(client=user).exists()


def test_a_typed_promo_code_attributes_without_a_cookie(client, django_capture_on_commit_callbacks):
    partner = make_partner()
    link = link_of(partner)
    user = sign_up(client, django_capture_on_commit_callbacks, promo_code=link.code.upper())
    referral = Referral.objects.get(client=user)
    assert (referral.partner, referral.source) == (partner, Referral.PROMO)


def test_an_unknown_or_inactive_promo_code_attributes_nothing(
    client, django_capture_on_commit_callbacks
):
    link = link_of(make_partner())
    link.is_active = False
    link.save()
    user = sign_up(client, django_capture_on_commit_callbacks, promo_code=link.code)
    assert not Referral.objects.filter(client=user).exists()


def test_first_click_beats_a_typed_code_last_click_does_not(
    client, django_capture_on_commit_callbacks
):
    cookie_partner, promo_partner = make_partner(), make_partner()
    cookie_link, promo_link = link_of(cookie_partner), link_of(promo_partner)
    client.get(f"/r/{cookie_link.code}/")
    user = sign_up(client, django_capture_on_commit_callbacks, promo_code=promo_link.code)
    assert Referral.objects.get(client=user).partner == cookie_partner

    programme(attribution=Settings.LAST_CLICK)
    second = TraderFactory()
    click = Click.objects.get(link=cookie_link)
    referral = referral_attribute_signup(
        client_id=second.pk, click_token=click.token, promo_code=promo_link.code
    )
    assert (referral.partner, referral.source) == (promo_partner, Referral.PROMO)


def test_self_referral_is_refused():
    partner = make_partner()
    link = link_of(partner)
    assert referral_attribute_signup(client_id=partner.user_id, promo_code=link.code) is None
    click = Click.objects.create(link=link, token="t" * 32, at=timezone.now())
    User.objects.filter(pk=partner.user_id).update(date_joined=timezone.now())
    assert referral_attribute_signup(client_id=partner.user_id, click_token=click.token) is None
    assert not Referral.objects.exists()


def test_a_partner_below_the_client_is_refused_a_loop():
    top, below = make_chain(2)
    link = link_of(Partner.objects.get(pk=below.pk))
    assert referral_attribute_signup(client_id=top.user_id, promo_code=link.code) is None
    assert not Referral.objects.exists()
    # A partner elsewhere in the tree is fine.
    other = link_of(make_partner())
    assert referral_attribute_signup(client_id=top.user_id, promo_code=other.code) is not None


def test_a_partner_who_is_not_active_gets_nothing_the_next_candidate_may():
    suspended, active = make_partner(), make_partner()
    cookie_link, promo_link = link_of(suspended), link_of(active)
    client_user = TraderFactory()
    click = Click.objects.create(link=cookie_link, token="c" * 32, at=client_user.date_joined)
    partner_suspend(actor=None, partner=suspended, reason="checks")
    referral = referral_attribute_signup(
        client_id=client_user.pk, click_token=click.token, promo_code=promo_link.code
    )
    assert referral.partner == active
    other_user = TraderFactory()
    assert referral_attribute_signup(client_id=other_user.pk, promo_code=cookie_link.code) is None


def test_a_replayed_event_changes_nothing(client, django_capture_on_commit_callbacks):
    first, second = link_of(make_partner()), link_of(make_partner())
    client.get(f"/r/{first.code}/")
    user = sign_up(client, django_capture_on_commit_callbacks)
    event = Event.objects.get(name="client.registered", client=user)
    handler = subscribers_for("client.registered")["ib.attribute_signup"]
    handler(event)
    event.payload = {**event.payload, "referral": "", "campaign": second.code}
    handler(event)
    assert referral_attribute_signup(client_id=user.pk, promo_code=second.code) is None
    assert list(Referral.objects.filter(client=user).values_list("link", flat=True)) == [first.pk]


def test_staff_are_never_attributed():
    link = link_of(make_partner())
    staff = StaffFactory()
    assert referral_attribute_signup(client_id=staff.pk, promo_code=link.code) is None


def test_the_sign_up_passes_on_only_a_well_formed_token():
    for cookie, expected in [
        ("<script>alert(1)</script>", ""),
        ("x" * 65, ""),
        ("short", ""),
        ("Ab_-" * 8, "Ab_-" * 8),
    ]:
        user = TraderFactory()
        client_register(user=user, referral=cookie)
        event = Event.objects.filter(name="client.registered", client=user).latest("id")
        assert event.payload["referral"] == expected


def test_moving_a_partners_own_account_under_their_sub_partner_is_refused():
    from django.contrib.auth.models import Group

    staff = StaffFactory()
    staff.groups.add(Group.objects.get(name="Compliance"))
    top, below = make_chain(2)
    with pytest.raises(IbError):
        client_move(actor=staff, client=top.user, partner=below)
    assert not Referral.objects.filter(client=top.user).exists()
    # Under their own parent's side of the tree, or anyone outside it: fine.
    elsewhere = make_partner()
    assert client_move(actor=staff, client=top.user, partner=elsewhere).partner == elsewhere
    assert client_move(actor=staff, client=below.user, partner=top).partner == top


# --- the link's registration flow ---------------------------------------------------


def test_the_links_registration_flow_is_chosen_at_sign_up(client):
    flow = RegistrationFlow.objects.create(name="Partners' flow", priority=50)
    default = RegistrationFlow.objects.get(is_default=True)
    link = link_of(make_partner(), registration_flow=flow)
    assert flow_for(country="GB", campaign=link.code) == flow
    page = client.get("/accounts/signup/", {"campaign": link.code}).content.decode()
    assert f'name="flow" value="{flow.pk}"' in page
    assert f'value="{link.code}"' in page  # the promo code shows the link's code
    # A link without a flow, an inactive link or flow: the usual choice.
    plain = link_of(make_partner())
    assert flow_for(country="GB", campaign=plain.code) == default
    ReferralLink.objects.filter(pk=link.pk).update(is_active=False)
    assert flow_for(country="GB", campaign=link.code) == default
    ReferralLink.objects.filter(pk=link.pk).update(is_active=True)
    RegistrationFlow.objects.filter(pk=flow.pk).update(is_active=False)
    assert flow_for(country="GB", campaign=link.code) == default


def test_a_link_flow_for_other_countries_is_not_forced_on_a_visitor():
    flow = RegistrationFlow.objects.create(name="German partners", countries=["DE"], priority=50)
    link = link_of(make_partner(), registration_flow=flow)
    assert flow_for(country="DE", campaign=link.code) == flow
    assert flow_for(country="GB", campaign=link.code) != flow


def test_a_new_code_never_collides_with_a_flows_campaign(monkeypatch):
    RegistrationFlow.objects.create(name="Summer", campaigns="aaaaaaaa\nbeach", priority=20)
    partner = make_partner()
    taken = link_of(partner)
    codes = iter(["aaaaaaaa", taken.code, "bbbbbbbb"])
    monkeypatch.setattr("ib.services.referrals._random_code", lambda: next(codes))
    assert link_of(partner).code == "bbbbbbbb"


def test_a_visit_costs_a_fixed_number_of_queries(client, django_assert_num_queries):
    link = link_of(make_partner())
    programme()
    # the link, the settings, the click, the counter (+ the transaction's savepoint)
    with django_assert_num_queries(6):
        assert client.get(f"/r/{link.code}/").status_code == 302
    # Carrying a cookie adds its check.
    with django_assert_num_queries(7):
        assert client.get(f"/r/{link.code}/").status_code == 302
