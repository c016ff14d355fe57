"""Deposits: the quote (fee, conversion), the refusals with their messages,
confirming/failing/flagging rules, the room's pages (another trader's deposit
is a 404; a method the client may not use is refused), the admin (Finance
matches a wire and resolves a flag; providers' secrets are never shown back;
the export), and pinned query counts."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.roles import FINANCE, SUPPORT
from backoffice import policies
from backoffice.models import Event
from backoffice.policies import Decision
from backoffice.secrets import decrypt
from payments.models import (
    Currency,
    Deposit,
    JournalTransaction,
    PaymentMethod,
    PaymentProvider,
    Rate,
    RateSource,
    WebhookEvent,
)
from payments.selectors import ledger_check
from payments.services import wallet_open
from payments.services.deposits import (
    REFERENCE_ALPHABET,
    DepositError,
    deposit_confirm,
    deposit_create,
    deposit_fail,
    deposit_match_wire,
    deposit_quote,
    deposit_resolve_flagged,
    new_reference,
)
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory

from .providers.helpers import deposit_for, method_for, started, wallet_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def card() -> PaymentMethod:
    return PaymentMethod.objects.get(name="Card (sandbox)")  # 2.5 % + 0.30 USD, min 10


@pytest.fixture
def wire() -> PaymentMethod:
    return PaymentMethod.objects.get(name="Bank wire")  # no fee, min 50


@pytest.fixture
def usd() -> Currency:
    return Currency.objects.get(code="USD")


def quote(user, method, amount: str, currency="USD"):
    return deposit_quote(
        user=user,
        method=method,
        wallet_currency=Currency.objects.get(code=currency),
        amount=Decimal(amount),
    )


def set_rate(base: str, quote_: str, rate: str) -> None:
    Rate.objects.update_or_create(
        source=RateSource.objects.get(identifier="manual"),
        base_id=base,
        quote_id=quote_,
        defaults={"rate": Decimal(rate), "as_of": timezone.now()},
    )


# --- the quote --------------------------------------------------------------------------


def test_fee_is_percent_plus_fixed_and_the_wallet_gets_the_rest(trader, card):
    q = quote(trader, card, "100.00")
    assert (q.amount, q.fee, q.credit_amount, q.rate) == (10000, 280, 9720, None)


def test_the_fee_rounds_half_up_to_the_minor_unit(trader, card):
    # 2.5 % of 10.60 = 0.265, + 0.30 = 0.565 → 0.57 (half even would say 0.56)
    assert quote(trader, card, "10.60").fee == 57
    assert quote(trader, card, "10.40").fee == 56  # 0.26 + 0.30


def test_a_method_settling_in_another_currency_converts_at_the_rate_shown(trader):
    eur_card = method_for(
        PaymentProvider.objects.get(identifier="sandbox"),
        ("USD",),
        name="EUR card",
        provider_currency_id="EUR",
        fee_percent=Decimal("1"),
    )
    set_rate("EUR", "USD", "1.0850")
    q = quote(trader, eur_card, "100.00")
    assert (q.currency.code, q.wallet_currency.code) == ("EUR", "USD")
    assert (q.amount, q.fee) == (10000, 100)
    assert q.rate == Decimal("1.085")
    assert q.credit_amount == 10741  # 99.00 × 1.085 = 107.415, rounded down

    deposit = started(trader, eur_card, "100.00")
    assert (deposit.currency_id, deposit.credit_amount, deposit.rate) == (
        "EUR",
        10741,
        Decimal("1.085"),
    )
    deposit_confirm(deposit=deposit, amount=Decimal("100.00"), currency="EUR")
    lines = sorted(
        (e.account.code or "wallet", e.currency_id, e.amount)
        for e in JournalTransaction.objects.get(kind="deposit").entries.select_related("account")
    )
    assert lines == [
        ("conversion", "EUR", 9900),
        ("conversion", "USD", -10741),
        ("fees", "EUR", 100),
        ("psp:sandbox", "EUR", -10000),
        ("wallet", "USD", 10741),
    ]
    assert ledger_check().ok


def test_no_rate_is_a_clear_refusal(trader):
    gbp_card = method_for(
        PaymentProvider.objects.get(identifier="sandbox"),
        ("JPY",),
        name="GBP card",
        provider_currency_id="GBP",
    )
    Rate.objects.all().delete()
    with pytest.raises(DepositError) as refused:
        quote(trader, gbp_card, "100.00", currency="JPY")
    assert "GBP" in str(refused.value) and "JPY" in str(refused.value)


# --- refusals, with their messages -------------------------------------------------------


def refused(user, method, amount, currency="USD") -> str:
    wallet = wallet_open(user=user, currency=currency)
    with pytest.raises(DepositError) as exc:
        deposit_create(user=user, wallet=wallet, method=method, amount=Decimal(amount))
    assert not Deposit.objects.exists()
    return str(exc.value)


def test_below_the_minimum(trader, card):
    assert refused(trader, card, "9.99") == "The minimum deposit by Card (sandbox) is 10.00 USD."


def test_above_the_maximum(trader, card):
    card.max_amount = Decimal("5000")
    card.save()
    assert (
        refused(trader, card, "5000.01") == "The maximum deposit by Card (sandbox) is 5,000.00 USD."
    )


def test_a_country_the_method_does_not_serve(trader, card):
    card.countries = ["FR", "DE"]
    card.save()
    assert refused(trader, card, "100") == "Card (sandbox) is not available in your country."
    trader.profile.country = ""
    trader.profile.save()
    assert "Add your country of residence" in refused(trader, card, "100")
    trader.profile.country = "DE"
    trader.profile.save()
    assert deposit_for(trader, card, "100").status == Deposit.CREATED


def test_a_disabled_method_or_provider(trader, card):
    card.enabled = False
    card.save()
    assert refused(trader, card, "100") == (
        "Card (sandbox) is not available at the moment. Choose another method."
    )
    card.enabled = True
    card.save()
    PaymentProvider.objects.filter(identifier="sandbox").update(enabled=False)
    card.provider.refresh_from_db()
    assert "not available at the moment" in refused(trader, card, "100")


def test_a_withdrawal_only_method(trader, card):
    card.direction = PaymentMethod.WITHDRAWAL
    card.save()
    assert (
        refused(trader, card, "100")
        == "Card (sandbox) cannot be used for deposits. Choose another method."
    )


def test_a_currency_the_method_does_not_serve(trader):
    crypto = PaymentMethod.objects.get(name="Crypto (sandbox)")
    assert (
        refused(trader, crypto, "100")
        == "Crypto (sandbox) does not take deposits into a USD wallet."
    )


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "Enter an amount greater than zero."),
        ("-5", "Enter an amount greater than zero."),
        ("10.001", "USD amounts have at most 2 decimal places."),
        ("10.30", None),
    ],
)
def test_amount_checks(trader, card, amount, message):
    if message is None:
        assert deposit_for(trader, card, amount).amount == 1030
    else:
        assert refused(trader, card, amount) == message


def test_the_fee_must_leave_something_to_credit(trader, card):
    card.min_amount = Decimal("0")
    card.save()
    assert refused(trader, card, "0.30") == "The amount does not cover the fee of 0.31 USD."


def test_someone_elses_wallet(trader, card):
    other_wallet = wallet_open(user=TraderFactory(), currency="USD")
    with pytest.raises(DepositError, match="your own wallets"):
        deposit_create(user=trader, wallet=other_wallet, method=card, amount=Decimal("100"))


def test_a_policy_refusal_is_passed_on(trader, card):
    def no_deposits(user, **context):
        assert context == {"amount": Decimal("100.00"), "currency": "USD"}
        return Decision(
            False, "Deposits are paused for your account.", unlock="Verify your identity"
        )

    policies.register(policies.DEPOSIT, "test-block", no_deposits)
    try:
        wallet = wallet_open(user=trader, currency="USD")
        with pytest.raises(DepositError) as exc:
            deposit_create(user=trader, wallet=wallet, method=card, amount=Decimal("100.00"))
    finally:
        policies.unregister(policies.DEPOSIT, "test-block")
    assert str(exc.value) == "Deposits are paused for your account."
    assert exc.value.unlock == "Verify your identity"


def test_a_deposit_is_created_with_an_unambiguous_reference_and_an_event(trader, card):
    deposit = deposit_for(trader, card, "100.00")
    assert re.fullmatch(r"DEP-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{8}", deposit.reference)
    assert not set("01OI") & set(REFERENCE_ALPHABET)
    assert len({new_reference() for _ in range(500)}) == 500
    assert (deposit.amount, deposit.fee, deposit.credit_amount) == (10000, 280, 9720)
    event = Event.objects.get(name="deposit.created")
    assert event.client == trader
    assert event.payload["amount"] == "100.00" and event.payload["fee"] == "2.80"


# --- confirming, failing, flagging -------------------------------------------------------


def test_confirm_is_once_fail_never_undoes_it(trader, card):
    deposit = started(trader, card, "100.00")
    first = deposit_confirm(deposit=deposit, amount=Decimal("100.00"), currency="USD")
    again = deposit_confirm(deposit=deposit, amount=Decimal("100.00"), currency="usd")
    assert (first.result, again.result) == ("applied", "ignored")
    assert deposit_fail(deposit=deposit, reason="late decline").result == "ignored"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9720
    assert Event.objects.filter(name="deposit.completed").count() == 1
    assert not Event.objects.filter(name="deposit.failed").exists()


def test_finance_matches_a_wire_through_the_service(trader, wire):
    deposit = started(trader, wire, "500.00")
    finance = StaffFactory(roles=[FINANCE])
    change = deposit_match_wire(
        actor=finance,
        deposit=deposit,
        amount=Decimal("500.00"),
        currency="USD",
        bank_reference="BANK-TX-1",
    )
    assert change.deposit.status == Deposit.COMPLETED
    assert change.deposit.provider_reference == "BANK-TX-1"
    assert change.deposit.journal.actor == finance
    assert wallet_balance(deposit) == 50000
    # The same bank payment cannot pay a second deposit.
    other = started(trader, wire, "500.00")
    with pytest.raises(DepositError, match="already matched to " + deposit.reference):
        deposit_match_wire(
            actor=finance, deposit=other, amount=Decimal("500"), currency="USD",
            bank_reference="BANK-TX-1",
        )  # fmt: skip


def test_only_finance_may_match_or_resolve(trader, wire):
    deposit = started(trader, wire, "500.00")
    support = StaffFactory(roles=[SUPPORT])
    with pytest.raises(PermissionDenied):
        deposit_match_wire(
            actor=support, deposit=deposit, amount=Decimal("500"), currency="USD",
            bank_reference="X",
        )  # fmt: skip
    with pytest.raises(PermissionDenied):
        deposit_resolve_flagged(actor=trader, deposit=deposit, credit=True, note="why not")
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING


def test_a_card_deposit_is_not_matched_by_hand(trader, card):
    deposit = started(trader, card, "100.00")
    with pytest.raises(DepositError, match="Only bank wire"):
        deposit_match_wire(
            actor=StaffFactory(roles=[FINANCE]), deposit=deposit, amount=Decimal("100"),
            currency="USD", bank_reference="X",
        )  # fmt: skip


@pytest.mark.parametrize("credit", [True, False])
def test_a_flagged_deposit_is_resolved_by_finance(trader, wire, credit):
    deposit = started(trader, wire, "500.00")
    finance = StaffFactory(roles=[FINANCE])
    flagged = deposit_match_wire(
        actor=finance, deposit=deposit, amount=Decimal("480.00"), currency="USD",
        bank_reference="BANK-TX-2",
    )  # fmt: skip
    assert flagged.result == "flagged" and wallet_balance(deposit) == 0
    with pytest.raises(DepositError, match="Write down why"):
        deposit_resolve_flagged(actor=finance, deposit=deposit, credit=credit, note=" ")
    deposit_resolve_flagged(actor=finance, deposit=deposit, credit=credit, note="Bank charges")
    deposit.refresh_from_db()
    assert deposit.status == (Deposit.COMPLETED if credit else Deposit.FAILED)
    assert wallet_balance(deposit) == (50000 if credit else 0)
    assert "Bank charges" in deposit.flag_reason
    with pytest.raises(DepositError, match="not flagged"):
        deposit_resolve_flagged(actor=finance, deposit=deposit, credit=True, note="again")
    assert ledger_check().ok


# --- the room's pages ---------------------------------------------------------------------


def test_the_deposit_page_lists_the_methods_for_the_currency_in_order(client, trader, card, wire):
    crypto_only = method_for(card.provider, ("BTC",), name="Crypto only")
    fr_only = method_for(card.provider, ("USD",), name="French card")
    fr_only.countries = ["FR"]
    fr_only.save()
    method_for(card.provider, ("USD",), name="Off", enabled=False)
    client.force_login(trader)
    page = client.get("/room/wallets/deposit/?currency=USD").content.decode()
    names = re.findall(r'class="method-name">([^<]+)<', page)
    assert names == ["Bank wire", "Card (sandbox)"]
    assert "img/payments/bank.svg" in page and "img/payments/card.svg" in page
    assert crypto_only.name not in page
    btc = client.get("/room/wallets/deposit/?currency=BTC").content.decode()
    assert re.findall(r'class="method-name">([^<]+)<', btc) == ["Crypto (sandbox)", "Crypto only"]


def test_the_preview_shows_the_fee_and_the_credit(client, trader, card):
    client.force_login(trader)
    response = client.get(
        "/room/wallets/deposit/preview/",
        {"currency": "USD", "method": card.pk, "amount": "100"},
        headers={"HX-Request": "true"},
    )
    text = response.content.decode()
    assert "$2.80" in text and "$97.20" in text and "$100.00" in text
    assert f'name="previewed" value="{card.pk}|100|USD"' in text
    low = client.get(
        "/room/wallets/deposit/preview/", {"currency": "USD", "method": card.pk, "amount": "5"}
    )
    assert "The minimum deposit by Card (sandbox) is 10.00 USD." in low.content.decode()
    assert not Deposit.objects.exists()


def test_confirming_without_the_preview_shows_a_review_first(client, trader, card):
    client.force_login(trader)
    data = {"currency": "USD", "method": card.pk, "amount": "100.00"}
    review = client.post("/room/wallets/deposit/", data)
    assert review.status_code == 200
    assert (
        "Check the fee" in review.content.decode() and "Confirm and pay" in review.content.decode()
    )
    assert not Deposit.objects.exists()
    # The preview was for another amount: review again, nothing created.
    stale = client.post("/room/wallets/deposit/", {**data, "previewed": f"{card.pk}|50|USD"})
    assert stale.status_code == 200 and not Deposit.objects.exists()
    done = client.post("/room/wallets/deposit/", {**data, "previewed": f"{card.pk}|100|USD"})
    assert done.status_code == 302 and done["Location"].startswith("/sandbox-psp/checkout/")
    assert Deposit.objects.get().status == Deposit.PENDING


def test_a_wire_shows_the_bank_details_and_the_reference(client, trader, wire):
    client.force_login(trader)
    data = {
        "currency": "EUR",
        "method": wire.pk,
        "amount": "750",
        "previewed": f"{wire.pk}|750|EUR",
    }
    response = client.post("/room/wallets/deposit/", data, follow=True)
    deposit = Deposit.objects.get()
    assert response.redirect_chain[-1][0] == f"/room/wallets/deposit/{deposit.reference}/"
    text = response.content.decode()
    assert "GB33BUKB20201555555555" in text and "Example Broker Ltd" in text
    assert deposit.reference in text and "750.00 EUR" in text
    assert 'hx-trigger="every 3s"' in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": "5"}, "The minimum deposit by Card (sandbox) is 10.00 USD."),
        ({"amount": "abc"}, "Enter the amount as a number"),
        ({"amount": ""}, "Enter the amount you want to deposit."),
        ({"method": ""}, "Choose a payment method."),
        ({"method": "999999"}, "Choose a payment method from the list."),
    ],
)
def test_bad_input_is_refused_with_a_message(client, trader, card, data, message):
    client.force_login(trader)
    base = {"currency": "USD", "method": card.pk, "amount": "100"}
    response = client.post("/room/wallets/deposit/", {**base, **data, "previewed": "x"})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Deposit.objects.exists()


def test_a_method_the_client_may_not_use_is_refused_by_id(client, trader, card):
    other = method_for(card.provider, ("USD",), name="Staff-only card")
    other.countries = ["FR"]
    other.save()
    client.force_login(trader)
    data = {
        "currency": "USD",
        "method": other.pk,
        "amount": "100",
        "previewed": f"{other.pk}|100|USD",
    }
    response = client.post("/room/wallets/deposit/", data)
    assert response.status_code == 400
    assert "Choose a payment method from the list." in response.content.decode()
    assert not Deposit.objects.exists()


def test_another_traders_deposit_is_404(client, trader, card):
    deposit = started(TraderFactory(), card, "100.00")
    client.force_login(trader)
    assert client.get(f"/room/wallets/deposit/{deposit.reference}/").status_code == 404
    assert client.get(f"/room/wallets/deposit/{deposit.reference.lower()}/").status_code == 404
    assert deposit.reference not in client.get("/room/wallets/deposit/").content.decode()


def test_the_status_page_polls_while_pending_and_stops_when_done(client, trader, card):
    deposit = started(trader, card, "100.00")
    client.force_login(trader)
    url = f"/room/wallets/deposit/{deposit.reference}/"
    part = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert part.strip().startswith('<div id="deposit-status"') and "every 3s" in part
    assert "Waiting for the payment" in part
    deposit_confirm(deposit=deposit, amount=Decimal("100.00"), currency="USD")
    done = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "every 3s" not in done and "Your wallet is credited" in done and "$97.20" in done


def test_the_recent_list_shows_the_clients_deposits_with_status(client, trader, card):
    deposit = started(trader, card, "100.00")
    client.force_login(trader)
    page = client.get("/room/wallets/deposit/").content.decode()
    assert deposit.reference in page and "Waiting for payment" in page


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/room/wallets/deposit/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_query_counts_are_pinned(client, trader, card, wire, django_assert_num_queries):
    for _ in range(3):
        started(trader, card, "100.00")
    started(trader, wire, "100.00")
    client.force_login(trader)
    client.get("/room/wallets/")  # the brand, then memoised by the process (not per request)
    # (sessions live in the cache) user, profile, methods, their currencies, recent deposits
    with django_assert_num_queries(5):
        assert client.get("/room/wallets/deposit/").status_code == 200
    with django_assert_num_queries(5):
        client.post("/room/wallets/deposit/", {"currency": "USD", "method": card.pk, "amount": "5"})
    # user, profile, methods, their currencies
    with django_assert_num_queries(4):
        client.get(
            "/room/wallets/deposit/preview/",
            {"currency": "USD", "method": card.pk, "amount": "100"},
        )
    deposit = Deposit.objects.filter(method=wire).get()
    # user, the deposit with its method, provider, currencies and wallet
    with django_assert_num_queries(2):
        assert client.get(f"/room/wallets/deposit/{deposit.reference}/").status_code == 200


# --- the admin ----------------------------------------------------------------------------


@pytest.fixture
def finance():
    return StaffFactory(roles=[FINANCE])


def test_finance_matches_a_wire_in_the_admin(trader, wire, finance):
    deposit = started(trader, wire, "500.00")
    http = signed_in_with_code(finance)
    page = http.get(f"/admin/payments/deposit/{deposit.pk}/change/").content.decode()
    assert 'id="match-wire"' in page and "500.00 USD" in page
    form = http.get(f"/admin/payments/deposit/{deposit.pk}/match-wire/").content.decode()
    assert 'value="500.00"' in form
    response = http.post(
        f"/admin/payments/deposit/{deposit.pk}/match-wire/",
        {"amount": "500.00", "currency": "usd", "bank_reference": "  CAMT-123  "},
        follow=True,
    )
    assert f"{deposit.reference} matched: 500.00 USD credited" in response.content.decode()
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and deposit.provider_reference == "CAMT-123"
    assert wallet_balance(deposit) == 50000 and deposit.journal.actor == finance
    # Done: no more button, and the URL refuses.
    assert (
        'id="match-wire"'
        not in http.get(f"/admin/payments/deposit/{deposit.pk}/change/").content.decode()
    )
    again = http.post(
        f"/admin/payments/deposit/{deposit.pk}/match-wire/",
        {"amount": "500.00", "currency": "USD", "bank_reference": "CAMT-124"},
    )
    assert "is completed; nothing to match" in again.content.decode()
    assert wallet_balance(deposit) == 50000
    assert ledger_check().ok


def test_a_mismatched_wire_is_flagged_then_resolved_in_the_admin(trader, wire, finance):
    deposit = started(trader, wire, "500.00")
    http = signed_in_with_code(finance)
    response = http.post(
        f"/admin/payments/deposit/{deposit.pk}/match-wire/",
        {"amount": "495.00", "currency": "USD", "bank_reference": "CAMT-9"},
        follow=True,
    )
    assert "flagged, nothing credited" in response.content.decode()
    assert 'id="resolve-flagged"' in response.content.decode()
    refused = http.post(f"/admin/payments/deposit/{deposit.pk}/resolve/", {"decision": "credit"})
    assert "This field is required" in refused.content.decode()
    http.post(
        f"/admin/payments/deposit/{deposit.pk}/resolve/",
        {"decision": "credit", "note": "Client's bank took 5 USD; adjusted separately"},
    )
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 50000


def test_support_sees_deposits_but_cannot_match(trader, wire):
    deposit = started(trader, wire, "500.00")
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    page = http.get(f"/admin/payments/deposit/{deposit.pk}/change/")
    assert page.status_code == 200 and 'id="match-wire"' not in page.content.decode()
    response = http.post(
        f"/admin/payments/deposit/{deposit.pk}/match-wire/",
        {"amount": "500.00", "currency": "USD", "bank_reference": "X"},
    )
    assert response.status_code == 403
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING


def test_the_deposit_list_filters_searches_and_counts_queries(
    trader, card, wire, finance, django_assert_max_num_queries
):
    for _ in range(5):
        started(trader, card, "100.00")
    wired = started(trader, wire, "100.00")
    http = signed_in_with_code(finance)
    with django_assert_max_num_queries(12):
        page = http.get("/admin/payments/deposit/")
    assert page.status_code == 200 and page.content.decode().count("DEP-") >= 6
    found = http.get("/admin/payments/deposit/", {"q": wired.reference}).content.decode()
    assert wired.reference in found and found.count('class="field-reference"') == 1
    completed = http.get("/admin/payments/deposit/", {"status__exact": "completed"})
    assert completed.content.decode().count('class="field-reference"') == 0
    pending = http.get("/admin/payments/deposit/", {"status__exact": "pending"})
    assert pending.content.decode().count('class="field-reference"') == 6
    by_method = http.get("/admin/payments/deposit/", {"method__id__exact": wire.pk})
    assert by_method.content.decode().count('class="field-reference"') == 1
    assert (
        'name="status"'
        not in http.get(f"/admin/payments/deposit/{wired.pk}/change/").content.decode()
    )


def test_the_export_has_amounts_as_decimals(trader, card, finance):
    deposit = started(trader, card, "100.00")
    http = signed_in_with_code(finance)
    from payments.admin.deposits import DepositResource

    columns = {f"depositresource_{name}": "on" for name in DepositResource.Meta.fields}
    response = http.post(
        "/admin/payments/deposit/export/", {"format": "0", "resource": "0", **columns}
    )
    assert response.status_code == 200, response.content[:500]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    (row,) = rows
    assert row["reference"] == deposit.reference
    assert (row["amount"], row["fee"], row["credit_amount"]) == ("100.00", "2.80", "97.20")
    assert row["client"] == trader.email and row["status"] == "pending"


def test_support_cannot_export_deposits(trader, card):
    started(trader, card, "100.00")
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    assert http.get("/admin/payments/deposit/").status_code == 200
    assert http.get("/admin/payments/deposit/export/").status_code == 403


def test_provider_secrets_are_encrypted_and_never_shown_back(finance):
    http = signed_in_with_code(StaffFactory(roles=["Administrator"]))
    data = {
        "identifier": "stripe-live",
        "name": "Stripe",
        "kind": "stripe",
        "enabled": "on",
        "settings": "{}",
        "webhook_ip_allowlist": "3.18.12.63\n3.130.192.0/24",
        "secret_api_key": "sk_live_VERYSECRET",
        "secret_webhook_secret": "whsec_ALSOSECRET",
    }
    response = http.post("/admin/payments/paymentprovider/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = PaymentProvider.objects.get(identifier="stripe-live")
    assert "VERYSECRET" not in provider.secrets
    assert decrypt(provider.secrets) == {
        "api_key": "sk_live_VERYSECRET",
        "webhook_secret": "whsec_ALSOSECRET",
    }
    page = http.get(f"/admin/payments/paymentprovider/{provider.pk}/change/").content.decode()
    assert "VERYSECRET" not in page and "ALSOSECRET" not in page
    assert "api_key, webhook_secret" in page and "/webhooks/stripe-live/" in page
    # Blank keeps; a new value replaces; a ticked box removes.
    edit = {**data, "secret_api_key": "", "secret_webhook_secret": "whsec_NEW"}
    edit.pop("identifier")
    assert (
        http.post(f"/admin/payments/paymentprovider/{provider.pk}/change/", edit).status_code == 302
    )
    provider.refresh_from_db()
    assert decrypt(provider.secrets) == {
        "api_key": "sk_live_VERYSECRET",
        "webhook_secret": "whsec_NEW",
    }
    edit = {**edit, "secret_webhook_secret": "", "clear_secrets": ["api_key"]}
    http.post(f"/admin/payments/paymentprovider/{provider.pk}/change/", edit)
    provider.refresh_from_db()
    assert decrypt(provider.secrets) == {"webhook_secret": "whsec_NEW"}
    assert Event.objects.filter(name="payment_provider.secrets_changed").count() == 3


def test_provider_allow_list_and_settings_are_validated(finance):
    http = signed_in_with_code(StaffFactory(roles=["Administrator"]))
    data = {
        "identifier": "btc",
        "name": "BTCPay",
        "kind": "btcpay",
        "settings": '{"url": "https://btcpay.example"}',
        "webhook_ip_allowlist": "10.0.0.0/8\nnot-an-address",
    }
    page = http.post("/admin/payments/paymentprovider/add/", data).content.decode()
    assert "Line 2: &#x27;not-an-address&#x27; is not an IP address or network" in page
    assert "btcpay needs these settings: store_id." in page
    assert not PaymentProvider.objects.filter(identifier="btc").exists()


def test_webhook_events_are_read_only_in_the_admin(trader, card, finance):
    deposit = started(trader, card, "100.00")
    event = WebhookEvent.objects.create(
        provider=deposit.provider,
        event_id="evt_1",
        deposit=deposit,
        payload={"a": 1},
        result="ignored",
    )
    http = signed_in_with_code(finance)
    page = http.get(f"/admin/payments/webhookevent/{event.pk}/change/").content.decode()
    assert "evt_1" in page and 'name="result"' not in page
    assert http.post(f"/admin/payments/webhookevent/{event.pk}/delete/").status_code == 403


def test_payment_methods_are_configured_in_the_admin(finance, card):
    http = signed_in_with_code(finance)
    page = http.get("/admin/payments/paymentmethod/").content.decode()
    assert "Card (sandbox)" in page and "2.5 % + 0.3" in page
