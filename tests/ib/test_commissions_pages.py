"""The commission history at /partner/commissions/: each row explained by its
rule (``ib.display.explain``, from the row's own plan version), filters,
keyset pages, one row's page, the streamed CSV, bad input, pinned query
counts; and the explanations' arithmetic for every kind of rule."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from ib.display import explain, lots_text, masked_name, money_text
from ib.models import Commission, Payout
from tests.ib.dashboard_helpers import add_deals, client_of, commission, version_of
from tests.ib.factories import make_chain, make_partner, make_plan

pytestmark = pytest.mark.django_db

HISTORY = reverse("partner:commissions")
CSV = reverse("partner:commissions_csv")


def row(**fields):
    """A commission as explain() reads it (no database)."""
    values = {
        "kind": "deal",
        "level": 1,
        "instrument_group": "",
        "lots": Decimal("2.5"),
        "rebate": 0,
        "share": 0,
        "basis": 0,
        "tier_percent": None,
        "capped": False,
        "amount": 0,
        "currency_id": "USD",
        "period_start": None,
    }
    values.update(fields)
    return SimpleNamespace(**values)


def terms(**fields):
    values = {
        "currency": "USD",
        "tier_model": "fixed_shares",
        "tier_shares": ["70", "20", "10"],
        "rules": {"": {"rebate_per_lot": "10", "commission_share": "0", "spread_share": "0"}},
        "cap_per_deal": None,
        "cap_per_period": None,
        "cap_period": "month",
        "revshare_percent": None,
        "revshare_period": "month",
        "revshare_carry_negative": False,
        "cpa_amount": None,
        "cpa_min_deposit": "0",
        "cpa_min_lots": "0",
        "cpa_within_days": 30,
    }
    values.update(fields)
    return values


# --- The explanations -------------------------------------------------------------------


def test_explains_a_rebate_with_a_tier_share():
    text = explain(row(level=2, rebate=2500, tier_percent=Decimal("20.000"), amount=500), terms())
    assert text == (
        "Rebate 10.00\u00a0USD/lot × 2.50 lots = 25.00; your tier 2 share 20\u00a0% → 5.00\u00a0USD"
    )


def test_explains_the_shares_of_commission_and_spread_and_a_cap():
    rules = {"metals": {"rebate_per_lot": "4", "commission_share": "50", "spread_share": "25"}}
    text = explain(
        row(
            instrument_group="metals",
            rebate=1000,
            share=1230,
            tier_percent=Decimal(70),
            amount=1561,
            capped=True,
        ),
        terms(rules=rules, cap_per_deal="15.61"),
    )
    assert "Rebate 4.00\u00a0USD/lot × 2.50 lots = 10.00" in text
    assert "50\u00a0% of the commission and 25\u00a0% of the spread = 12.30" in text
    assert "together 22.30" in text
    assert "your share 70\u00a0% → 15.61\u00a0USD" in text
    assert text.endswith("capped at 15.61\u00a0USD per deal")


def test_explains_the_rate_difference_per_lot():
    rd = terms(
        tier_model="rate_difference",
        rules={"": {"rebate_per_lot": "8", "commission_share": "0", "spread_share": "0"}},
    )
    text = explain(row(level=2, rebate=2000, basis=1250, amount=750), rd)
    assert text == "Rate difference: your 8.00 − 5.00 below = 3.00/lot × 2.50 lots → 7.50\u00a0USD"
    first = explain(row(level=1, rebate=2000, amount=2000), rd)
    assert first.startswith("Rate difference: Rebate 8.00\u00a0USD/lot × 2.50 lots = 20.00")
    assert first.endswith("nothing below you → 20.00\u00a0USD")
    # A share in the rate: the totals, not per lot.
    mixed = explain(row(level=2, rebate=2000, share=300, basis=1250, amount=1050), rd)
    assert mixed == (
        "Rate difference: your rate 23.00 − 12.50 earned by the rates below → 10.50\u00a0USD"
    )


def test_explains_cpa_and_revenue_share():
    cpa = explain(
        row(kind="cpa", basis=50000, amount=25000),
        terms(cpa_amount="250", cpa_min_deposit="100", cpa_min_lots="1", cpa_within_days=14),
    )
    assert cpa == (
        "CPA 250.00\u00a0USD: first deposit of 500.00\u00a0USD ≥ 100.00\u00a0USD, "
        "then 1.00 lots traded within 14 days"
    )
    rs = terms(revshare_percent="25", revshare_period="month")
    start = date(2025, 3, 1)
    text = explain(row(kind="revshare", basis=120000, amount=30000, period_start=start), rs)
    assert text == (
        "Revenue share 25\u00a0% of net 1,200.00\u00a0USD (month from 1 Mar 2025) → 300.00\u00a0USD"
    )
    carried = explain(
        row(kind="revshare", basis=120000, amount=10000, period_start=start),
        terms(revshare_percent="25", revshare_carry_negative=True),
    )
    assert "= 300.00, less losses carried from earlier periods → 100.00\u00a0USD" in carried
    losing = explain(
        row(kind="revshare", basis=-5000, amount=0, period_start=start),
        terms(revshare_percent="25", revshare_carry_negative=True),
    )
    assert "nothing this period, and the loss carries into the next periods" in losing


def test_explains_in_the_currencys_own_decimals():
    jpy = explain(
        row(rebate=2500, tier_percent=Decimal(100), amount=2500, currency_id="JPY"),
        terms(currency="JPY", rules={"": {"rebate_per_lot": "1000"}}),
    )
    assert (
        jpy
        == "Rebate 1,000\u00a0JPY/lot × 2.50 lots = 2,500; your share 100\u00a0% → 2,500\u00a0JPY"
    )
    converted = explain(
        row(rebate=2710, tier_percent=Decimal(100), amount=2710),
        terms(currency="EUR"),
    )
    assert "Rebate 10.00\u00a0EUR/lot × 2.50 lots = 27.10 (in USD)" in converted


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["deal", "cpa", "revshare"]),
    model=st.sampled_from(["fixed_shares", "rate_difference", "unknown"]),
    rebate=st.integers(0, 10**9),
    share=st.integers(0, 10**9),
    basis=st.integers(-(10**9), 10**9),
    amount=st.integers(0, 10**9),
    lots=st.decimals(min_value=0, max_value=1000, places=4),
    percent=st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=3)),
    capped=st.booleans(),
    currency=st.sampled_from(["USD", "JPY", "BTC"]),
    broken=st.booleans(),
)
def test_every_row_gets_a_sentence_that_names_its_amount(
    kind, model, rebate, share, basis, amount, lots, percent, capped, currency, broken
):
    plan = terms(tier_model=model, currency=currency, revshare_percent="30", cpa_amount="5")
    if broken:  # a version written by an older schema: missing or odd values
        plan = {"rules": {"": {"rebate_per_lot": "abc"}}, "cap_per_deal": "x"}
    commission_row = row(
        kind=kind,
        rebate=rebate,
        share=share,
        basis=basis,
        amount=amount,
        lots=lots,
        tier_percent=percent,
        capped=capped,
        currency_id=currency,
        period_start=date(2025, 1, 6),
    )
    text = explain(commission_row, plan)
    assert text and "None" not in text
    if not (kind == "revshare" and basis <= 0):
        assert money_text(amount, currency) in text


def test_masks_and_formats():
    assert masked_name("Maria", "kowalski") == "Maria K."
    assert masked_name("", "", fallback="Client #7") == "Client #7"
    assert masked_name("  ", "Smith") == "S."
    assert lots_text(Decimal("1")) == "1.00" and lots_text(Decimal("0.015")) == "0.015"
    assert money_text(-123456, "USD") == "−1,234.56\u00a0USD"


# --- The pages --------------------------------------------------------------------------


@pytest.fixture
def setup():
    top, sub = make_chain(2)
    plan = make_plan(rebate="10", tier_shares="70, 20, 10")
    version = version_of(plan)
    maria = client_of(top, first_name="Maria", last_name="Kowalski")
    john = client_of(sub, first_name="John", last_name="Smith")
    return SimpleNamespace(top=top, sub=sub, version=version, maria=maria, john=john)


def test_the_history_explains_each_row(client, setup):
    s = setup
    [deal] = add_deals(s.maria, [{"volume": "2.5", "symbol": "XAUUSD"}])
    commission(
        s.top, amount=1750, deal=deal, version=s.version, rebate=2500,
        tier_percent=Decimal(70),
    )  # fmt: skip
    commission(s.sub, amount=99, client=s.john)  # another partner's row
    client.force_login(s.top.user)
    response = client.get(HISTORY)
    html = response.content.decode()
    assert response.status_code == 200
    [shown] = response.context["rows"]
    assert shown["client"] == "Maria K." and shown["deal"] == f"XAUUSD #{deal.ticket}"
    assert shown["amount"] == "17.50\u00a0USD"
    assert "Rebate 10.00\u00a0USD/lot × 2.50 lots = 25.00; your share 70\u00a0% → 17.50" in html
    assert "Kowalski" not in html and "0.99" not in html


def test_filters(client, setup):
    s = setup
    now = timezone.now()
    [d1] = add_deals(s.maria, [{"volume": "1", "close_time": now - timedelta(days=40)}])
    [d2] = add_deals(s.john, [{"volume": "1"}])
    old = commission(s.top, amount=100, deal=d1)
    via_sub = commission(s.top, amount=200, deal=d2, level=2)
    cpa = commission(s.top, amount=300, kind=Commission.CPA, client=s.maria)
    client.force_login(s.top.user)

    def ids(params) -> list[int]:
        response = client.get(HISTORY, params)
        assert response.status_code == 200, response.content
        return sorted(r["id"] for r in response.context["rows"])

    assert ids({}) == sorted([old.pk, via_sub.pk, cpa.pk])
    assert ids({"kind": "cpa"}) == [cpa.pk]
    since = (now - timedelta(days=10)).date().isoformat()
    assert ids({"date_from": since}) == sorted([via_sub.pk, cpa.pk])
    assert ids({"date_to": (now - timedelta(days=30)).date().isoformat()}) == [old.pk]
    assert ids({"client": s.maria.pk}) == sorted([old.pk, cpa.pk])
    assert ids({"sub_partner": s.sub.pk}) == [via_sub.pk]
    assert ids({"paid": "paid"}) == []
    assert ids({"paid": "unpaid"}) == sorted([old.pk, via_sub.pk, cpa.pk])
    page = client.get(HISTORY, {"client": s.maria.pk}).content.decode()
    assert "Commissions from <strong>Maria K.</strong>" in page


def test_paid_rows_are_marked(client, setup):
    s = setup
    from payments.models import JournalTransaction

    journal = JournalTransaction.objects.create(
        kind="ib_payout", idempotency_key="t:1", request_hash="0" * 64
    )
    payout = Payout.objects.create(
        partner=s.top, kind=Payout.MANUAL, currency_id="USD", amount=100, journal=journal
    )
    paid = commission(s.top, amount=100, client=s.maria, payout=payout)
    commission(s.top, amount=50, client=s.maria)
    client.force_login(s.top.user)
    rows = client.get(HISTORY, {"paid": "paid"}).context["rows"]
    assert [(r["id"], r["paid"]) for r in rows] == [(paid.pk, True)]


def test_keyset_pages(client, setup, monkeypatch):
    s = setup
    monkeypatch.setattr("ib.selectors.commissions.PAGE_SIZE", 2)
    now = timezone.now()
    made = [
        commission(s.top, amount=100 + i, client=s.maria, earned_at=now - timedelta(hours=i))
        for i in range(5)
    ]
    tie = commission(s.top, amount=999, client=s.maria, earned_at=made[2].earned_at)
    client.force_login(s.top.user)
    seen = []
    url = HISTORY
    while url:
        response = client.get(url)
        seen += [r["id"] for r in response.context["rows"]]
        url = response.context["older_url"]
    assert seen == [made[0].pk, made[1].pk, tie.pk, made[2].pk, made[3].pk, made[4].pk]


def test_the_csv_has_every_filtered_row_with_its_explanation(client, setup, monkeypatch):
    s = setup
    monkeypatch.setattr("ib.selectors.commissions.EXPORT_CHUNK", 2)
    [deal] = add_deals(s.maria, [{"volume": "2.5"}])
    commission(s.top, amount=1750, deal=deal, rebate=2500, tier_percent=Decimal(70))
    for i in range(4):
        commission(s.top, amount=10 + i, kind=Commission.CPA if i == 0 else "deal", client=s.john)
    commission(s.sub, amount=5, client=s.john)
    client.force_login(s.top.user)
    response = client.get(CSV)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["earned_at", "kind", "client"] and rows[0][-1] == "explanation"
    assert len(rows) == 1 + 5
    first = next(r for r in rows[1:] if r[7] == "2.5")
    assert first[2] == "Maria K." and first[8] == "17.50" and first[9] == "USD"
    assert "your share 70" in first[11]
    only_cpa = client.get(CSV, {"kind": "cpa"})
    cpa_rows = list(csv.reader(io.StringIO(b"".join(only_cpa.streaming_content).decode())))
    assert [r[1] for r in cpa_rows[1:]] == ["cpa"]
    assert "Kowalski" not in "".join(",".join(r) for r in rows)


def test_a_commission_page_shows_its_figures(client, setup):
    s = setup
    [deal] = add_deals(s.maria, [{"volume": "2.5"}])
    mine = commission(
        s.top, amount=1750, deal=deal, version=s.version, rebate=2500, tier_percent=Decimal(70)
    )
    client.force_login(s.top.user)
    response = client.get(reverse("partner:commission", args=[mine.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "17.50\u00a0USD" in html and "your share 70" in html
    assert s.version.plan.name in html and "Awaiting payout" in html


@pytest.mark.parametrize(
    "params",
    [
        {"date_from": "yesterday"},
        {"date_from": "2025-05-02", "date_to": "2025-05-01"},
        {"kind": "bonus"},
        {"client": "abc"},
        {"sub_partner": "x1"},
        {"before": "garbage"},
    ],
)
def test_bad_input_is_a_clear_error(client, setup, params):
    commission(setup.top, amount=100, client=setup.maria)
    client.force_login(setup.top.user)
    response = client.get(HISTORY, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="error"' in html or "form-errors" in html
    assert client.get(CSV, params).status_code == 400


def test_htmx_swaps_the_history_alone(client, setup):
    commission(setup.top, amount=100, client=setup.maria)
    client.force_login(setup.top.user)
    response = client.get(HISTORY, {"kind": "deal"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="commissions"' in html and "<main" not in html
    assert response["HX-Push-Url"] == f"{HISTORY}?kind=deal"


def test_empty_state(client):
    partner = make_partner()
    client.force_login(partner.user)
    html = client.get(HISTORY).content.decode()
    assert "No commissions yet" in html and "Download CSV" not in html


def test_the_page_costs_the_same_queries_whatever_its_rows(
    client, setup, django_assert_num_queries
):
    s = setup

    def add(n: int) -> None:
        for person in (s.maria, s.john):
            deals = add_deals(person, [{"volume": "1"}] * n)
            for d in deals:
                commission(s.top, amount=100, deal=d, version=s.version)

    add(1)
    client.force_login(s.top.user)
    client.get(HISTORY)
    # user, partner, sub-partners (filter), page, versions, clients, deals
    with django_assert_num_queries(7):
        client.get(HISTORY)
    add(10)
    with django_assert_num_queries(7):
        assert len(client.get(HISTORY).context["rows"]) == 22
