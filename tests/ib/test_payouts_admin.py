"""Payouts and commissions in the admin: Finance pays a partner by hand
(below the minimum too), holds and releases payouts; others cannot; the
lists are read-only and their query counts pinned."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.roles import FINANCE, SALES, SUPPORT
from ib.models import Commission, Partner, Payout
from ib.services.payouts import payout_create
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.ib.test_payouts import earn, partner_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def finance_http():
    return signed_in_with_code(StaffFactory(roles=[FINANCE]))


def test_finance_pays_a_partner_below_their_minimum(finance_http):
    partner = partner_with(payout_minimum=Decimal("50"))
    earn(partner, 1250)
    response = finance_http.post(reverse("admin:ib_payout_pick"), {"email": partner.user.email})
    pay_url = reverse("admin:ib_payout_pay", args=[partner.pk])
    assert response.status_code == 302 and response["Location"] == pay_url
    page = finance_http.get(pay_url).content.decode()
    assert "12.50" in page and "below the minimum" in page

    response = finance_http.post(pay_url)
    payout = Payout.objects.get()
    assert response["Location"] == reverse("admin:ib_payout_change", args=[payout.pk])
    assert (payout.kind, payout.amount) == (Payout.MANUAL, 1250)
    detail = finance_http.get(response["Location"]).content.decode()
    assert f"#{payout.journal_id}" in detail and "All the commissions it covers" in detail

    response = finance_http.post(pay_url, follow=True)  # a second click
    assert "no unpaid commissions" in response.content.decode()
    assert Payout.objects.count() == 1


def test_an_unknown_email_is_a_form_error(finance_http):
    response = finance_http.post(reverse("admin:ib_payout_pick"), {"email": "no@example.com"})
    assert (
        response.status_code == 200 and "No partner has this e-mail." in response.content.decode()
    )


def test_the_add_button_leads_to_paying_a_partner(finance_http):
    response = finance_http.get(reverse("admin:ib_payout_add"))
    assert response["Location"] == reverse("admin:ib_payout_pick")


def test_finance_holds_and_releases_payouts(finance_http):
    partner = partner_with()
    earn(partner, 9000)
    hold_url = reverse("admin:ib_payout_hold", args=[partner.pk])
    response = finance_http.post(hold_url, {"reason": ""})
    assert response.status_code == 200 and not Partner.objects.get(pk=partner.pk).payouts_held
    finance_http.post(hold_url, {"reason": "chargebacks on referred clients"})
    partner.refresh_from_db()
    assert partner.payouts_held and partner.hold_reason == "chargebacks on referred clients"
    pay_url = reverse("admin:ib_payout_pay", args=[partner.pk])
    assert "chargebacks on referred clients" in finance_http.get(pay_url).content.decode()
    response = finance_http.post(pay_url, follow=True)
    assert "on hold" in response.content.decode() and not Payout.objects.exists()

    assert (
        finance_http.get(reverse("admin:ib_payout_release", args=[partner.pk])).status_code == 405
    )
    finance_http.post(reverse("admin:ib_payout_release", args=[partner.pk]), {"reason": "ok"})
    assert not Partner.objects.get(pk=partner.pk).payouts_held


def test_staff_without_the_permission_cannot_pay_or_hold():
    partner = partner_with()
    earn(partner, 9000)
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    for name in ("ib_payout_pay", "ib_payout_hold", "ib_payout_release"):
        assert http.post(reverse(f"admin:{name}", args=[partner.pk])).status_code == 403
    assert http.get(reverse("admin:ib_payout_pick")).status_code == 403
    assert not Payout.objects.exists() and not Partner.objects.get(pk=partner.pk).payouts_held


def test_a_sales_manager_sees_only_their_own_clients_commissions():
    sales = StaffFactory(roles=[SALES])
    mine, theirs = partner_with(), partner_with()
    profile = mine.user.profile
    profile.manager = sales
    profile.save(update_fields=["manager"])
    own_row, other_row = earn(mine, 100), earn(theirs, 200)
    http = signed_in_with_code(sales)
    response = http.get(reverse("admin:ib_commission_changelist"))
    assert response.status_code == 200
    shown = {row.pk for row in response.context["cl"].result_list}
    assert shown == {own_row.pk}
    assert http.get(reverse("admin:ib_commission_change", args=[other_row.pk])).status_code in (
        302,
        404,
    )


def test_lists_are_read_only_and_query_counts_constant(finance_http, django_assert_max_num_queries):
    for _ in range(3):
        partner = partner_with()
        for _ in range(4):
            earn(partner, 500, client=TraderFactory())
        earn(partner, 700, kind=Commission.CPA, client=TraderFactory())
        payout_create(partner=partner, actor=None, kind=Payout.MANUAL)
        earn(partner, 300)
    changelist = reverse("admin:ib_commission_changelist")
    # Whatever the number of rows: session, user, permissions, the page, its filters.
    with django_assert_max_num_queries(9):
        response = finance_http.get(changelist, {"paid": "no", "kind": "deal"})
    assert len(response.context["cl"].result_list) == 3
    with django_assert_max_num_queries(9):
        response = finance_http.get(changelist)
    assert len(response.context["cl"].result_list) == 18
    payout = Payout.objects.first()
    filtered = finance_http.get(changelist, {"payout": payout.pk})
    assert {r.payout_id for r in filtered.context["cl"].result_list} == {payout.pk}
    with django_assert_max_num_queries(9):
        assert finance_http.get(reverse("admin:ib_payout_changelist")).status_code == 200
    with django_assert_max_num_queries(11):
        page = finance_http.get(reverse("admin:ib_payout_change", args=[payout.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    row = Commission.objects.first()
    assert (
        finance_http.post(
            reverse("admin:ib_commission_change", args=[row.pk]), {"amount": 1}
        ).status_code
        == 403
    )
