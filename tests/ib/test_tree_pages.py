"""The sub-partner tree at /partner/tree/: each branch with its sub-partners,
clients, lots and what the viewer earned from it over a period; branches
expand in place with htmx and open as pages without JavaScript; names are
masked; the query count does not grow with the number of branches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ib.models import Commission
from tests.factories import open_trading_account
from tests.ib.dashboard_helpers import add_deals, client_of, commission
from tests.ib.factories import make_partner

pytestmark = pytest.mark.django_db

TREE = reverse("partner:tree")


def children_url(partner) -> str:
    return reverse("partner:tree_children", args=[partner.pk])


def named(partner, first: str, last: str):
    partner.user.first_name, partner.user.last_name = first, last
    partner.user.save()
    return partner


@pytest.fixture
def tree():
    """top with two branches: anna (with carl below) and ben."""
    top = make_partner()
    anna = named(make_partner(parent=top), "Anna", "Bergström")
    ben = named(make_partner(parent=top), "Ben", "Okafor")
    carl = named(make_partner(parent=anna), "Carl", "Dietrich")
    return top, anna, ben, carl


def branches(response) -> dict[str, object]:
    return {b.name: b for b in response.context["branches"]}


def test_each_branch_counts_its_whole_subtree(client, tree):
    top, anna, ben, carl = tree
    now = timezone.now()
    mine = client_of(top)
    of_anna, of_carl, of_ben = client_of(anna), client_of(carl), client_of(ben)
    [d1] = add_deals(of_anna, [{"volume": "1"}])
    [d2] = add_deals(of_carl, [{"volume": "2"}])
    [d3] = add_deals(of_ben, [{"volume": "0.5"}])
    [d4] = add_deals(mine, [{"volume": "4"}])
    commission(top, amount=300, deal=d1)
    commission(top, amount=200, deal=d2)
    commission(top, amount=50, deal=d3)
    commission(top, amount=1000, deal=d4)
    commission(top, amount=7000, kind=Commission.CPA, client=of_carl)
    commission(anna, amount=999, deal=d1)  # Anna's own: not what the viewer earned
    # Old business: outside the 30 days, inside "all time".
    [old] = add_deals(
        client_of(carl, since=now - timedelta(days=200)),
        [{"volume": "10", "close_time": now - timedelta(days=100)}],
    )
    commission(top, amount=10_000, deal=old)
    client.force_login(top.user)
    response = client.get(TREE)
    assert response.status_code == 200
    rows = branches(response)
    assert set(rows) == {"Anna B.", "Ben O."}
    a, b = rows["Anna B."], rows["Ben O."]
    assert (a.sub_partners, a.children, a.clients, a.lots) == ("1", 1, "3", "3.00")
    assert a.commissions == ["75.00\u00a0USD"]
    assert (b.sub_partners, b.children, b.clients, b.lots, b.commissions) == (
        "0",
        0,
        "1",
        "0.50",
        ["0.50\u00a0USD"],
    )
    direct = response.context["direct"]
    assert (direct.clients, direct.lots, direct.commissions) == ("1", "4.00", ["10.00\u00a0USD"])
    all_time = branches(client.get(TREE, {"period": "all"}))["Anna B."]
    assert (all_time.lots, all_time.commissions) == ("13.00", ["175.00\u00a0USD"])
    html = response.content.decode()
    for secret in ("Bergström", "Okafor", "Dietrich", anna.user.email):
        assert secret not in html


def test_a_branch_expands_in_place_with_htmx(client, tree):
    top, anna, _, carl = tree
    client_of(carl)
    client.force_login(top.user)
    html = client.get(TREE).content.decode()
    assert f'hx-get="{children_url(anna)}"' in html and 'hx-trigger="toggle once"' in html
    response = client.get(children_url(anna), headers={"HX-Request": "true"})
    fragment = response.content.decode()
    assert response.status_code == 200
    assert "<main" not in fragment and "Carl D." in fragment
    assert "Anna B.’s direct clients" in fragment


def test_without_javascript_a_branch_opens_as_a_page_with_the_path(client, tree):
    top, anna, _, carl = tree
    client.force_login(top.user)
    response = client.get(children_url(carl))
    html = response.content.decode()
    assert response.status_code == 200 and "<main" in html
    assert [name for name, _ in response.context["ancestors"]] == ["You", "Anna B."]
    assert "Carl D. has no sub-partners." in html
    assert f'href="{TREE}"' in html and f'href="{children_url(anna)}"' in html


def test_the_period_links_keep_the_branch(client, tree):
    top, anna, _, _ = tree
    client.force_login(top.user)
    response = client.get(children_url(anna), {"period": "90d"})
    links = {key: url for key, _, url in response.context["period_links"]}
    assert links["all"] == f"{children_url(anna)}?period=all"
    assert response.context["period"] == "90d"
    assert client.get(TREE, {"period": "bogus"}).context["period"] == "30d"


def test_empty_tree(client):
    partner = make_partner()
    client.force_login(partner.user)
    assert "No sub-partners yet" in client.get(TREE).content.decode()


def test_the_query_count_does_not_grow_with_the_branches(client, tree, django_assert_num_queries):
    top = tree[0]
    client.force_login(top.user)
    client.get(TREE)
    # user, partner, children, sub-partners, clients and lots, commissions
    with django_assert_num_queries(6):
        client.get(TREE)
    for _ in range(5):
        sub = make_partner(parent=top)
        client_of(sub)
        make_partner(parent=sub)
    with django_assert_num_queries(6):
        assert len(client.get(TREE).context["branches"]) == 7


def test_deals_of_demo_accounts_are_no_branch_volume(client, tree):
    top, anna, ben, carl = tree
    now = timezone.now()
    of_carl, mine = client_of(carl, since=now - timedelta(days=200)), client_of(top)
    add_deals(of_carl, [{"volume": "1"}])
    demo = open_trading_account(of_carl, type_name="Demo USD")
    add_deals(
        of_carl,
        [{"volume": "30"}, {"volume": "5", "close_time": now - timedelta(days=90)}],
        account=demo,
    )
    add_deals(mine, [{"volume": "7"}], account=open_trading_account(mine, type_name="Demo USD"))
    client.force_login(top.user)
    for period in ("30d", "all"):
        response = client.get(TREE, {"period": period})
        assert (branches(response)["Anna B."].clients, branches(response)["Anna B."].lots) == (
            "1",
            "1.00",
        )
        assert (response.context["direct"].clients, response.context["direct"].lots) == (
            "1",
            "0.00",
        )
    assert branches(client.get(children_url(anna)))["Carl D."].lots == "1.00"
