"""A partner sees only their own downline: another partner's sub-partner,
client or commission in any dashboard URL is a 404 (never a 403 that would
confirm it exists); who is not an active partner does not get in; clients'
and sub-partners' personal data is masked on every page."""

from __future__ import annotations

import pytest
from django.urls import NoReverseMatch, reverse

from ib.models import Commission, Partner
from ib.services import partner_apply
from tests.factories import TraderFactory
from tests.ib.dashboard_helpers import add_deals, client_of, commission
from tests.ib.factories import make_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_networks():
    """Mine: me → my_sub (with clients); theirs: them → their_sub."""
    me, my_sub = make_chain(2)
    them, their_sub = make_chain(2)
    mine = client_of(my_sub, first_name="Maria", last_name="Kowalski")
    theirs = client_of(their_sub, first_name="Otto", last_name="Zimmermann")
    [my_deal] = add_deals(mine, [{"volume": "1"}])
    [their_deal] = add_deals(theirs, [{"volume": "1"}])
    my_row = commission(me, amount=100, deal=my_deal)
    their_row = commission(them, amount=200, deal=their_deal)
    return {
        "me": me,
        "my_sub": my_sub,
        "mine": mine,
        "my_row": my_row,
        "them": them,
        "their_sub": their_sub,
        "theirs": theirs,
        "their_row": their_row,
    }


def test_another_partners_ids_are_not_found(client, two_networks):
    n = two_networks
    client.force_login(n["me"].user)
    not_found = [
        reverse("partner:tree_children", args=[n["their_sub"].pk]),
        reverse("partner:tree_children", args=[n["them"].pk]),
        reverse("partner:tree_children", args=[999_999]),
        reverse("partner:tree_children", args=[10**30]),  # beyond a bigint: still a 404
        reverse("partner:commission", args=[10**30]),
        f"{reverse('partner:commissions')}?client={10**17}",
        reverse("partner:commission", args=[n["their_row"].pk]),
        f"{reverse('partner:commissions')}?sub_partner={n['their_sub'].pk}",
        f"{reverse('partner:commissions')}?sub_partner={n['me'].pk}",  # not a sub-partner
        f"{reverse('partner:commissions')}?client={n['theirs'].pk}",
        f"{reverse('partner:commissions_csv')}?client={n['theirs'].pk}",
        f"{reverse('partner:commissions_csv')}?sub_partner={n['their_sub'].pk}",
    ]
    for url in not_found:
        assert client.get(url).status_code == 404, url
    # The same kinds of ids from my own network work.
    found = [
        reverse("partner:tree_children", args=[n["my_sub"].pk]),
        reverse("partner:commission", args=[n["my_row"].pk]),
        f"{reverse('partner:commissions')}?sub_partner={n['my_sub'].pk}",
        f"{reverse('partner:commissions')}?client={n['mine'].pk}",
    ]
    for url in found:
        assert client.get(url).status_code == 200, url


def test_a_sub_partner_cannot_look_up_the_tree(client, two_networks):
    n = two_networks
    client.force_login(n["my_sub"].user)
    assert client.get(reverse("partner:tree_children", args=[n["me"].pk])).status_code == 404
    url = reverse("partner:commission", args=[n["my_row"].pk])  # my parent's row
    assert client.get(url).status_code == 404


def test_a_former_client_stays_visible_in_the_commissions_filter(client, two_networks):
    """Moved away, the client's past commissions are still the partner's."""
    from ib.models import Referral

    n = two_networks
    Referral.objects.filter(client=n["mine"]).update(until=n["my_row"].earned_at)
    client.force_login(n["me"].user)
    response = client.get(reverse("partner:commissions"), {"client": n["mine"].pk})
    assert response.status_code == 200
    assert [r["id"] for r in response.context["rows"]] == [n["my_row"].pk]


def _apply_url() -> str | None:
    try:
        return reverse("ib:apply")
    except NoReverseMatch:
        return None


DASHBOARD_URLS = [
    "partner:overview",
    "partner:clients",
    "partner:tree",
    "partner:commissions",
    "partner:commissions_csv",
]


@pytest.mark.parametrize("name", DASHBOARD_URLS)
def test_a_trader_who_is_not_a_partner_goes_to_the_programme_page(client, name):
    client.force_login(TraderFactory())
    response = client.get(reverse(name))
    assert response.status_code == 302
    if _apply_url():
        assert response["Location"] == _apply_url()


@pytest.mark.parametrize("status", [Partner.PENDING, Partner.SUSPENDED, Partner.REJECTED])
def test_a_partner_who_is_not_active_does_not_get_in(client, status):
    trader = TraderFactory()
    partner = partner_apply(user=trader, company="Acme")
    Partner.objects.filter(pk=partner.pk).update(status=status)
    client.force_login(trader)
    for name in DASHBOARD_URLS:
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert not response["Location"].startswith("/partner/")
        if _apply_url():
            assert response["Location"] == _apply_url()
    response = client.get(reverse("partner:commission", args=[1]))
    assert response.status_code == 302


def test_signed_out_visitors_are_asked_to_sign_in(client):
    response = client.get(reverse("partner:overview"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_no_page_shows_a_clients_or_sub_partners_last_name_or_email(client, two_networks):
    n = two_networks
    sub_user = n["my_sub"].user
    sub_user.first_name, sub_user.last_name = "Anna", "Bergström"
    sub_user.save()
    commission(n["me"], amount=300, kind=Commission.CPA, client=n["mine"])
    client.force_login(n["me"].user)
    pages = [
        reverse("partner:overview"),
        reverse("partner:clients"),
        reverse("partner:tree"),
        reverse("partner:tree_children", args=[n["my_sub"].pk]),
        reverse("partner:commissions"),
        reverse("partner:commission", args=[n["my_row"].pk]),
        reverse("partner:commissions_csv"),
    ]
    secrets = [
        "Kowalski",
        "Bergström",
        n["mine"].email,
        sub_user.email,
        str(n["mine"].profile.phone),
        "Zimmermann",
        n["theirs"].email,
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = (
            b"".join(response.streaming_content) if response.streaming else response.content
        ).decode()
        for secret in secrets:
            assert secret not in body, (url, secret)
    clients_html = client.get(reverse("partner:clients")).content.decode()
    assert "Maria K." in clients_html and "via Anna B." in clients_html
