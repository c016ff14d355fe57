"""The partner's clients at /partner/clients/: masked personal data (contacts
only when the broker allows it), lots and commissions per client, via which
sub-partner, filters, sorting, pages, bad input, and a query count that does
not grow with the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ib.models import Commission, Partner
from ib.selectors import dashboard as selectors
from ib.selectors import programme_settings
from kyc.models import Level
from tests.factories import open_trading_account, set_kyc_level
from tests.ib.dashboard_helpers import add_deals, client_of, commission
from tests.ib.factories import make_chain, make_partner

pytestmark = pytest.mark.django_db

CLIENTS = reverse("partner:clients")


@pytest.fixture
def top_and_sub():
    top, sub = make_chain(2)
    return top, sub


def names(response) -> list[str]:
    return [row.name for row in response.context["rows"]]


def test_clients_are_masked_and_show_their_figures(client, top_and_sub):
    top, sub = top_and_sub
    sub.user.first_name, sub.user.last_name = "Anna", "Bergström"
    sub.user.save()
    maria = client_of(top, first_name="Maria", last_name="Kowalski")
    set_kyc_level(maria, 2)
    john = client_of(sub, first_name="John", last_name="Smith")
    [deal] = add_deals(maria, [{"volume": "2.5"}])
    add_deals(john, [{"volume": "1"}, {"volume": "0.25"}])
    commission(top, amount=1750, deal=deal)
    commission(top, amount=5000, kind=Commission.CPA, client=maria)
    commission(sub, amount=999, client=maria)  # the sub's, not the viewer's
    client.force_login(top.user)
    response = client.get(CLIENTS)
    assert response.status_code == 200
    html = response.content.decode()
    rows = {row.name: row for row in response.context["rows"]}
    assert set(rows) == {"Maria K.", "John S."}
    assert rows["Maria K."].lots == "2.50" and rows["Maria K."].commissions == ["67.50\u00a0USD"]
    assert rows["Maria K."].kyc_level == Level.objects.get(number=2).name
    assert rows["Maria K."].country == "United Kingdom" and rows["Maria K."].via == ""
    assert rows["John S."].lots == "1.25" and rows["John S."].via == "Anna B."
    for secret in ("Kowalski", "Smith", "Bergström", maria.email, john.email, "+44"):
        assert secret not in html
    assert "via Anna B." in html and "Direct" in html


@pytest.mark.parametrize("switch", ["programme", "partner"])
def test_contacts_show_only_when_the_broker_allows(client, top_and_sub, switch):
    top, _ = top_and_sub
    maria = client_of(top, first_name="Maria", last_name="Kowalski")
    client.force_login(top.user)
    assert maria.email not in client.get(CLIENTS).content.decode()
    if switch == "programme":
        settings = programme_settings()
        settings.show_client_contacts = True
        settings.save()
    else:
        Partner.objects.filter(pk=top.pk).update(show_client_contacts=True)
    html = client.get(CLIENTS).content.decode()
    assert maria.email in html
    assert "Kowalski" not in html  # the name stays masked


def test_filters_direct_country_and_trading(client, top_and_sub):
    top, sub = top_and_sub
    gb_trader = client_of(top, first_name="Ann", last_name="A")
    client_of(top, first_name="Bea", last_name="B")
    fr = client_of(sub, first_name="Cleo", last_name="C")
    fr.profile.country = "FR"
    fr.profile.save()
    add_deals(gb_trader, [{"volume": "1"}])
    # A deal before the referral does not make a trader of this network.
    late = client_of(sub, first_name="Dan", last_name="D", since=timezone.now())
    add_deals(late, [{"volume": "3", "close_time": timezone.now() - timedelta(days=2)}])
    client.force_login(top.user)
    assert sorted(names(client.get(CLIENTS))) == ["Ann A.", "Bea B.", "Cleo C.", "Dan D."]
    assert sorted(names(client.get(CLIENTS, {"scope": "direct"}))) == ["Ann A.", "Bea B."]
    assert names(client.get(CLIENTS, {"country": "FR"})) == ["Cleo C."]
    assert names(client.get(CLIENTS, {"traded": "yes"})) == ["Ann A."]
    assert sorted(names(client.get(CLIENTS, {"traded": "no"}))) == ["Bea B.", "Cleo C.", "Dan D."]
    countries = dict(client.get(CLIENTS).context["form"].fields["country"].choices)
    assert set(countries) == {"", "GB", "FR"}


def test_sorting_and_pages(client, top_and_sub, monkeypatch):
    top, sub = top_and_sub
    monkeypatch.setattr("ib.views.clients.CLIENTS_PAGE_SIZE", 2)
    now = timezone.now()
    people = []
    for i, (first, lots) in enumerate([("Ada", "1"), ("Ben", "5"), ("Cy", "0.5"), ("Di", "3")]):
        person = client_of(top, first_name=first, last_name="X", since=now - timedelta(hours=9 - i))
        add_deals(person, [{"volume": lots}])
        people.append(person)
    client.force_login(top.user)
    first = client.get(CLIENTS)
    assert names(first) == ["Di X.", "Cy X."]  # newest first
    assert first.context["total"] == 4 and first.context["pages"] == 2
    assert names(client.get(first.context["next_url"])) == ["Ben X.", "Ada X."]
    assert names(client.get(CLIENTS, {"sort": "lots"})) == ["Ben X.", "Di X."]
    assert names(client.get(CLIENTS, {"sort": "name", "page": "2"})) == ["Cy X.", "Di X."]
    # A page past the end shows the last page.
    assert names(client.get(CLIENTS, {"page": "99"})) == ["Ben X.", "Ada X."]


@pytest.mark.parametrize(
    "params", [{"page": "abc"}, {"sort": "email"}, {"country": "XX"}, {"scope": "everyone"}]
)
def test_bad_input_is_a_clear_error(client, top_and_sub, params):
    top, _ = top_and_sub
    client_of(top)
    client.force_login(top.user)
    response = client.get(CLIENTS, params)
    assert response.status_code == 400
    assert "Correct the choices above" in response.content.decode()


def test_empty_state(client):
    partner = make_partner()
    client.force_login(partner.user)
    html = client.get(CLIENTS).content.decode()
    assert "No clients yet" in html


def test_htmx_swaps_the_list_alone(client, top_and_sub):
    top, _ = top_and_sub
    client_of(top, first_name="Ann", last_name="A")
    client.force_login(top.user)
    response = client.get(CLIENTS, {"scope": "direct"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="clients"' in html and "<main" not in html and "Ann A." in html


def test_the_page_costs_the_same_queries_whatever_its_rows(
    client, top_and_sub, django_assert_num_queries
):
    top, sub = top_and_sub

    def add(n: int) -> None:
        for i in range(n):
            person = client_of(top if i % 2 else sub)
            [deal] = add_deals(person, [{"volume": "1"}])
            commission(top, amount=100, deal=deal)

    add(2)
    client.force_login(top.user)
    client.get(CLIENTS)
    # user, partner, countries, count, the page's ids, its rows, commissions,
    # the programme's settings
    with django_assert_num_queries(8) as first:
        client.get(CLIENTS)
    add(8)
    with django_assert_num_queries(len(first.captured_queries)):
        assert len(client.get(CLIENTS).context["rows"]) == 10


def test_selector_counts_match_the_page(top_and_sub):
    top, sub = top_and_sub
    for _ in range(3):
        client_of(sub)
    filters = selectors.ClientFilter()
    assert selectors.clients_count(top, filters) == 3
    assert selectors.clients_count(sub, filters) == 3
    assert selectors.clients_count(top, selectors.ClientFilter(direct_only=True)) == 0


def test_deals_of_demo_accounts_are_no_lots_and_no_trading(client, top_and_sub):
    top, sub = top_and_sub
    mixed = client_of(top, first_name="Mia", last_name="M")
    demo_only = client_of(sub, first_name="Deb", last_name="D")
    add_deals(mixed, [{"volume": "1.5"}])
    add_deals(mixed, [{"volume": "40"}], account=open_trading_account(mixed, type_name="Demo USD"))
    demo = open_trading_account(demo_only, type_name="Demo USD")
    add_deals(demo_only, [{"volume": "50"}], account=demo)
    client.force_login(top.user)
    rows = {row.name: row.lots for row in client.get(CLIENTS).context["rows"]}
    assert rows == {"Mia M.": "1.50", "Deb D.": "0.00"}
    assert names(client.get(CLIENTS, {"traded": "yes"})) == ["Mia M."]
    assert names(client.get(CLIENTS, {"traded": "no"})) == ["Deb D."]
    assert names(client.get(CLIENTS, {"sort": "lots"})) == ["Mia M.", "Deb D."]
