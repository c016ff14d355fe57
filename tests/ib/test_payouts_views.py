"""The partner's payout pages: the balance and the request button (and why
it is disabled), the history, a statement listing exactly what a payout
covers with masked client names, its CSV; another partner's payout is a 404."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from ib.display import currency_exponent
from ib.models import Commission, Payout
from ib.services import partner_apply
from ib.services.payouts import payout_create, payouts_hold
from payments.models import LedgerAccount
from tests.factories import TraderFactory
from tests.ib.test_payouts import earn, partner_with

from .money_helpers import set_rate

pytestmark = pytest.mark.django_db

PAGE = reverse("partner:payouts")
REQUEST = reverse("partner:payout_request")


@pytest.fixture
def partner():
    return partner_with(payout_minimum=Decimal("50"))


@pytest.fixture
def signed_in(client, partner):
    client.force_login(partner.user)
    return client


def text(response) -> str:
    return response.content.decode()


def test_a_new_partner_sees_empty_states_and_a_disabled_button(signed_in):
    response = signed_in.get(PAGE)
    assert response.status_code == 200
    page = text(response)
    assert "Nothing awaits payout" in page and "No payouts yet" in page
    assert 'disabled aria-describedby="payout-blocker"' in page
    assert 'id="payout-blocker">Nothing awaits payout.' in page
    assert "$50.00" in page  # the minimum
    assert 'aria-current="page"' in page and ">Payouts<" in page


def test_a_balance_above_the_minimum_can_be_requested(signed_in, partner):
    earn(partner, 3000)
    earn(partner, 2500)
    page = text(signed_in.get(PAGE))
    assert "$55.00" in page and "2 commissions" in page
    assert 'disabled aria-describedby="payout-blocker"' not in page

    response = signed_in.post(REQUEST)
    payout = Payout.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("partner:payout", args=[payout.pk])
    assert (payout.kind, payout.amount, payout.actor_id) == (
        Payout.REQUESTED,
        5500,
        partner.user_id,
    )
    wallet = LedgerAccount.objects.get(owner_id=partner.user_id, currency_id="USD")
    assert wallet.balance == 5500
    history = text(signed_in.get(PAGE))
    assert reverse("partner:payout", args=[payout.pk]) in history and "On request" in history


def test_below_the_minimum_the_button_says_why_and_a_post_is_refused(signed_in, partner):
    earn(partner, 4999)
    page = text(signed_in.get(PAGE))
    assert "Your balance is below your minimum payout." in page
    assert 'disabled aria-describedby="payout-blocker"' in page
    response = signed_in.post(REQUEST, follow=True)
    assert "is below the minimum payout of 50.00 USD" in text(response)
    assert not Payout.objects.exists()


def test_held_payouts_show_the_reason_and_refuse_requests(signed_in, partner):
    earn(partner, 9000)
    payouts_hold(actor=None, partner=partner, reason="bank details to confirm")
    page = text(signed_in.get(PAGE))
    assert "Payouts are on hold: bank details to confirm" in page
    assert 'disabled aria-describedby="payout-blocker"' in page
    response = signed_in.post(REQUEST, follow=True)
    assert "on hold: bank details to confirm" in text(response)
    assert not Payout.objects.exists()


def test_other_currencies_show_a_converted_estimate(signed_in, partner):
    set_rate("EUR", "USD", "1.1")
    earn(partner, 10000, "EUR")
    page = text(signed_in.get(PAGE))
    assert "About <strong>$110.00</strong> in USD" in page


def test_the_request_is_post_only(signed_in):
    assert signed_in.get(REQUEST).status_code == 405


def test_a_non_partner_is_sent_to_the_programme_page(client):
    trader = TraderFactory()
    partner_apply(user=trader)  # pending: not yet a partner
    client.force_login(trader)
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"] == reverse("ib:apply")
    assert client.post(REQUEST).status_code == 302
    assert not Payout.objects.exists()


# --- the statement -----------------------------------------------------------------------


def paid_partner(partner):
    client = TraderFactory(first_name="Maria", last_name="Kowalska")
    covered = [earn(partner, 4000, client=client), earn(partner, 3000, kind=Commission.CPA)]
    payout = payout_create(partner=partner, actor=None, kind=Payout.MANUAL)
    later = earn(partner, 1234)  # earned after the payout: not on its statement
    return payout, covered, later, client


def test_the_statement_lists_exactly_the_rows_covered(signed_in, partner):
    other = partner_with()
    earn(other, 9999)
    payout_create(partner=other, actor=None, kind=Payout.MANUAL)
    payout, covered, later, client = paid_partner(partner)

    response = signed_in.get(reverse("partner:payout", args=[payout.pk]))
    assert response.status_code == 200
    lines = [line.pk for line in (row["item"] for row in response.context["lines"])]
    assert lines == [c.pk for c in covered]
    page = text(response)
    assert "Maria K." in page
    assert "Kowalska" not in page and client.email not in page
    assert "$70.00" in page and "99.99" not in page and "12.34" not in page
    assert f"Transaction #{payout.journal_id}" in page
    assert f"Deal #{covered[0].deal_id}" in page and "First deposit" in page


def test_the_statement_csv_has_the_covered_rows_and_the_total(signed_in, partner):
    payout, covered, _later, client = paid_partner(partner)
    response = signed_in.get(reverse("partner:payout_csv", args=[payout.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="payout-{payout.pk}.csv"'
    content = b"".join(response.streaming_content).decode()
    assert "Kowalska" not in content and client.email not in content
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0][:6] == ["date (UTC)", "kind", "client", "source", "amount", "currency"]
    body = [row for row in rows[1:] if row and row[0] != "total paid"]
    assert [(r[1], r[2], r[4], r[5], r[6]) for r in body] == [
        ("trading", "Maria K.", "40.00", "USD", "1"),
        ("CPA", "—", "30.00", "USD", "1"),
    ]
    assert rows[-1][:6] == ["total paid", "", "", "2 commissions", "70.00", "USD"]


def test_another_partners_payout_is_a_404(signed_in, partner):
    other = partner_with()
    earn(other, 5000)
    theirs = payout_create(partner=other, actor=None, kind=Payout.MANUAL)
    for name in ("partner:payout", "partner:payout_csv"):
        assert signed_in.get(reverse(name, args=[theirs.pk])).status_code == 404
        assert signed_in.get(reverse(name, args=[theirs.pk + 999])).status_code == 404


def test_query_counts_are_pinned(signed_in, partner, django_assert_num_queries):
    set_rate("EUR", "USD", "1.1")
    for _ in range(3):
        for _ in range(5):
            earn(partner, 2000, client=TraderFactory())
            earn(partner, 2000, "EUR")
        payout_create(partner=partner, actor=None, kind=Payout.MANUAL)
    earn(partner, 100)
    earn(partner, 100, "EUR")
    currency_exponent("USD")  # the process-wide cache of decimal places, warm
    # Session user, partner, payout currency, unpaid sums, other currencies,
    # the rate, brand, payouts count, the page of payouts.
    with django_assert_num_queries(9):
        assert signed_in.get(PAGE).status_code == 200
    payout = Payout.objects.first()
    # Session user, partner, the payout, rows count, the page of rows, their versions.
    with django_assert_num_queries(6):
        assert signed_in.get(reverse("partner:payout", args=[payout.pk])).status_code == 200


def test_the_partners_wallet_history_filters_partner_commissions(signed_in, partner):
    # The wallet history's type filter lists the kinds other apps add
    # ("Partner commissions"), and finds the payout's posting with it.
    earn(partner, 9000)
    payout_create(partner=partner, actor=None, kind=Payout.MANUAL)
    wallet = LedgerAccount.objects.get(owner=partner.user, currency="USD")
    response = signed_in.get(f"/room/wallets/{wallet.pk}/", {"type": "ib_payout"})
    page = text(response)
    assert response.status_code == 200
    assert '<option value="ib_payout" selected>Partner commissions</option>' in page
    assert "90.00" in page
