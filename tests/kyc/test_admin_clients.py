"""Clients' KYC in the admin: the list by level, risk and country (Sales see
their own clients only), the client's KYC page with its level history, a
level set by hand with a reason (and refused without one or without the
permission), and the KYC panel on the client's own admin page."""

from __future__ import annotations

import pytest

from accounts.models import ClientProfile
from accounts.roles import COMPLIANCE, SALES, SUPPORT
from backoffice.models import Event
from kyc.models import ClientKyc, Level, LevelChange
from kyc.services import submission_approve
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.kyc.test_admin_review import (  # noqa: F401
    document_root,
    level_of,
    messages_of,
    submit_identity,
    take_test,
)

pytestmark = pytest.mark.django_db

LIST = "/admin/kyc/clientkyc/"


def page_url(user) -> str:
    return f"/admin/kyc/clientkyc/{user.pk}/change/"


def set_level_url(user) -> str:
    return f"/admin/kyc/clientkyc/{user.pk}/set-level/"


@pytest.fixture
def compliance_user():
    return StaffFactory(roles=[COMPLIANCE], email="officer@example.com")


@pytest.fixture
def compliance(compliance_user):
    return signed_in_with_code(compliance_user)


def test_the_list_filters_by_level_risk_and_country(compliance):
    gb = TraderFactory(email="gb@example.com", kyc_level=1)
    ng = TraderFactory(email="ng@example.com", kyc_level=0)
    ClientProfile.objects.filter(user=ng).update(country="NG")
    ClientKyc.objects.filter(user=ng).update(risk=ClientKyc.HIGH, country="NG")
    ClientKyc.objects.filter(user=gb).update(country="GB")

    def emails(query: str) -> set[str]:
        html = compliance.get(f"{LIST}?{query}").content.decode()
        return {e for e in ("gb@example.com", "ng@example.com") if e in html}

    assert emails("") == {"gb@example.com", "ng@example.com"}
    assert emails(f"level__id__exact={Level.objects.get(number=1).pk}") == {"gb@example.com"}
    assert emails("risk__exact=high") == {"ng@example.com"}
    assert emails("country=NG") == {"ng@example.com"}
    assert emails("q=gb%40example") == {"gb@example.com"}


def test_sales_see_only_their_own_clients(compliance):
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(email="mine@example.com", kyc_level=2)
    ClientProfile.objects.filter(user=mine).update(manager=sales)
    theirs = TraderFactory(email="theirs@example.com")
    http = signed_in_with_code(sales)
    html = http.get(LIST).content.decode()
    assert "mine@example.com" in html and "theirs@example.com" not in html
    assert http.get(page_url(mine)).status_code == 200
    assert http.get(page_url(theirs)).status_code == 302  # the admin's "does not exist"
    response = http.post(set_level_url(mine), {"level": Level.objects.get(number=3).pk})
    assert response.status_code == 403
    assert level_of(mine) == 2


def test_the_page_shows_items_and_level_history(compliance, compliance_user):
    client = TraderFactory(kyc_level=0)
    take_test(client)
    submission_approve(actor=compliance_user, submission=submit_identity(client))
    html = compliance.get(page_url(client)).content.decode()
    assert "Identity document" in html and "Appropriateness test" in html
    assert "approved" in html
    history = html.split("level history", 1)[1]
    assert "Identity document approved." in history and "officer@example.com" in history
    assert f"?user__id__exact={client.pk}" in html  # all of the client's submissions


def test_compliance_sets_a_level_by_hand_with_a_reason(compliance, compliance_user):
    client = TraderFactory(kyc_level=1)
    three = Level.objects.get(number=3)
    response = compliance.post(
        set_level_url(client), {"level": three.pk, "reason": "Institutional client"}, follow=True
    )
    assert f"{client.email} is now at level 3 · Enhanced." in messages_of(response)
    assert level_of(client) == 3
    change = LevelChange.objects.get(user=client)
    assert (change.from_level, change.to_level, change.reason, change.actor) == (
        1,
        3,
        "Institutional client",
        compliance_user,
    )
    assert Event.objects.filter(name="kyc.level_changed", client=client).exists()
    assert "Institutional client" in response.content.decode()  # in the history


@pytest.mark.parametrize(
    "data, message",
    [
        ({"level": "three", "reason": "x"}, "Choose one of the listed levels."),
        ({"level": "999999", "reason": "x"}, "Choose one of the listed levels."),
        ({"reason": "x"}, "This field is required."),
        ({"level": "LEVEL3"}, "This field is required."),
        ({"level": "LEVEL3", "reason": "   "}, "This field is required."),
        ({"level": "LEVEL3", "reason": "x" * 201}, "at most 200 characters"),
    ],
)
def test_a_level_needs_a_valid_level_and_a_reason(compliance, data, message):
    client = TraderFactory(kyc_level=1)
    if data.get("level") == "LEVEL3":
        data = {**data, "level": Level.objects.get(number=3).pk}
    response = compliance.post(set_level_url(client), data, follow=True)
    assert any(message in m for m in messages_of(response)), messages_of(response)
    assert level_of(client) == 1
    assert not LevelChange.objects.filter(user=client).exists()


def test_setting_a_level_needs_the_permission():
    client = TraderFactory(kyc_level=1)
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    page = http.get(page_url(client)).content.decode()
    assert "Setting a level by hand needs the Compliance role." in page
    response = http.post(
        set_level_url(client), {"level": Level.objects.get(number=3).pk, "reason": "x"}
    )
    assert response.status_code == 403
    assert level_of(client) == 1
    assert http.get(set_level_url(client)).status_code == 405


def test_hostile_ids_on_set_level(compliance):
    assert compliance.post("/admin/kyc/clientkyc/abc/set-level/", {}).status_code == 404
    assert compliance.post("/admin/kyc/clientkyc/999999/set-level/", {}).status_code == 404


def test_the_clients_admin_page_has_a_kyc_panel(compliance):
    client = TraderFactory(kyc_level=1)
    ClientKyc.objects.filter(user=client).update(risk=ClientKyc.HIGH)
    submit_identity(TraderFactory(kyc_level=0))
    html = compliance.get(f"/admin/accounts/client/{client.pk}/change/").content.decode()
    panel = html.split('id="kyc-panel"', 1)[1].split("</fieldset>", 1)[0]
    assert "Level <strong>1 · Basic</strong>" in panel and "risk <strong>high</strong>" in panel
    assert f"/admin/kyc/clientkyc/{client.pk}/change/" in panel
    assert f"/admin/kyc/submission/?user__id__exact={client.pk}" in panel

    fresh = TraderFactory(kyc_level=False)
    html = compliance.get(f"/admin/accounts/client/{fresh.pk}/change/").content.decode()
    assert "Verification not started" in html


def test_saving_the_client_page_keeps_working_with_the_panel():
    from accounts.roles import ADMINISTRATOR

    client = TraderFactory(kyc_level=1, first_name="Old")
    http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    profile = client.profile
    data = {
        "email": client.email,
        "first_name": "New",
        "last_name": client.last_name,
        "is_active": "on",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-MIN_NUM_FORMS": "1",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-id": profile.pk,
        "profile-0-user": client.pk,
        "profile-0-date_of_birth": "1985-05-17",
        "profile-0-country": "GB",
        "profile-0-phone": profile.phone,
        "profile-0-address_line1": profile.address_line1,
        "profile-0-city": profile.city,
        "profile-0-postal_code": profile.postal_code,
        "profile-0-language": profile.language,
    }
    response = http.post(f"/admin/accounts/client/{client.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    client.refresh_from_db()
    assert client.first_name == "New"
    assert level_of(client) == 1
