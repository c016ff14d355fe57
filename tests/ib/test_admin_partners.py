"""Partners in the admin, through the real pages with a signed-in member of
staff: the applications queue, approve / reject / suspend (Support cannot),
the plan (the rate-difference ceiling shown), moves of partners (recorded,
loops refused) and of clients, staff creation, payout settings (Finance),
Sales scoping, and the pages' query counts."""

from __future__ import annotations

import html as html_lib
from decimal import Decimal

import pytest

from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from backoffice.models import Event
from ib.models import Partner, PartnerMove, PlanAssignment, Referral
from ib.selectors import programme_settings
from ib.services import partner_apply
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_chain, make_partner, make_plan, refer

pytestmark = pytest.mark.django_db

LIST = "/admin/ib/partner/"
ADD = "/admin/ib/partner/add/"


def page(partner: Partner) -> str:
    return f"/admin/ib/partner/{partner.pk}/change/"


def action(partner: Partner, name: str) -> str:
    return f"/admin/ib/partner/{partner.pk}/{name}/"


def text(response) -> str:
    return html_lib.unescape(response.content.decode())


def messages_after(response) -> str:
    """The messages a redirect leads to (followed)."""
    return " ".join(str(m) for m in response.context["messages"])


@pytest.fixture
def compliance_staff():
    return StaffFactory(roles=[COMPLIANCE], email="compliance@example.com")


@pytest.fixture
def compliance(compliance_staff):
    return signed_in_with_code(compliance_staff)


@pytest.fixture
def applicant():
    return partner_apply(user=TraderFactory(email="applicant@example.com"), company="Acme FX")


# --- the applications queue and decisions --------------------------------------------------


def test_the_applications_link_opens_the_pending_ones(compliance, applicant):
    active = make_partner()
    response = compliance.get("/admin/ib/partner/applications/", follow=True)
    assert response.redirect_chain[-1][0] == f"{LIST}?status__exact=pending"
    body = text(response)
    assert "applicant@example.com" in body
    assert active.user.email not in body
    index = text(compliance.get("/admin/"))
    assert "Applications to review" in index


def test_compliance_approves_an_application_on_a_plan(compliance, compliance_staff, applicant):
    gold = make_plan(name="Gold")
    response = compliance.post(action(applicant, "approve"), {"plan": gold.pk}, follow=True)
    assert "is approved, on Gold" in messages_after(response)
    partner = Partner.objects.get(pk=applicant.pk)
    assert (partner.status, partner.plan_id, partner.approved_by) == (
        Partner.ACTIVE,
        gold.pk,
        compliance_staff,
    )
    assert PlanAssignment.objects.get(partner=partner).plan == gold
    assert Event.objects.filter(name="ib.partner_approved", actor=compliance_staff).exists()


def test_approval_defaults_to_the_programme_default_plan(compliance, applicant):
    default = make_plan(name="Default")
    settings_row = programme_settings()
    settings_row.default_plan = default
    settings_row.save()
    body = text(compliance.get(page(applicant)))
    assert "the programme's default plan (Default)" in body
    compliance.post(action(applicant, "approve"), {"plan": ""})
    assert Partner.objects.get(pk=applicant.pk).plan == default


def test_support_cannot_decide(applicant):
    support = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    body = text(support.get(page(applicant)))
    assert 'id="approve-form"' not in body
    assert "decisions on partners need" in body
    assert support.post(action(applicant, "approve"), {}).status_code == 403
    assert support.post(action(applicant, "reject"), {"reason": "no"}).status_code == 403
    assert support.post(action(applicant, "suspend"), {"reason": "no"}).status_code == 403
    assert Partner.objects.get(pk=applicant.pk).status == Partner.PENDING
    # Their view is read-only: the details form cannot be posted either.
    assert support.post(page(applicant), {"company": "Changed"}).status_code == 403


def test_reject_needs_a_reason(compliance, applicant):
    response = compliance.post(action(applicant, "reject"), {"reason": "  "}, follow=True)
    assert "Give the reason." in messages_after(response)
    assert Partner.objects.get(pk=applicant.pk).status == Partner.PENDING
    compliance.post(action(applicant, "reject"), {"reason": "No website yet."})
    assert Partner.objects.get(pk=applicant.pk).status == Partner.REJECTED
    event = Event.objects.get(name="ib.partner_rejected")
    assert event.payload["reason"] == "No website yet."


def test_suspend_and_reactivate(compliance):
    partner = make_partner(plan=make_plan(name="P"))
    body = text(compliance.get(page(partner)))
    assert 'id="suspend-form"' in body and 'id="reject-form"' not in body
    compliance.post(action(partner, "suspend"), {"reason": "Chargebacks"})
    assert Partner.objects.get(pk=partner.pk).status == Partner.SUSPENDED
    assert "Reactivate" in text(compliance.get(page(partner)))
    compliance.post(action(partner, "approve"), {"plan": ""})
    assert Partner.objects.get(pk=partner.pk).status == Partner.ACTIVE


def test_a_rejected_application_cannot_be_suspended_or_approved_by_url(compliance, applicant):
    compliance.post(action(applicant, "reject"), {"reason": "No."})
    response = compliance.post(action(applicant, "suspend"), {"reason": "x"}, follow=True)
    assert "Only an active partner can be suspended." in messages_after(response)
    response = compliance.post(action(applicant, "approve"), {"plan": ""}, follow=True)
    assert "Only a pending or suspended partner" in messages_after(response)
    assert Partner.objects.get(pk=applicant.pk).status == Partner.REJECTED


def test_decisions_on_unknown_ids_are_404(compliance):
    assert compliance.post("/admin/ib/partner/999999/approve/", {}).status_code == 404
    assert compliance.post("/admin/ib/partner/abc/approve/", {}).status_code == 404
    assert compliance.get("/admin/ib/partner/999999/approve/").status_code == 405


# --- plans --------------------------------------------------------------------------------


def test_assigning_a_plan_above_the_parents_rate_shows_the_ceiling(compliance):
    high = make_plan(name="High", rebate="10", tier_model="rate_difference", tier_shares="")
    higher = make_plan(name="Higher", rebate="12", tier_model="rate_difference", tier_shares="")
    low = make_plan(name="Low", rebate="6", tier_model="rate_difference", tier_shares="")
    parent = make_partner(plan=high)
    child = make_partner(parent=parent, plan=low)
    response = compliance.post(action(child, "plan"), {"plan": higher.pk}, follow=True)
    assert "higher than the parent partner's" in messages_after(response)
    assert Partner.objects.get(pk=child.pk).plan == low
    assert PlanAssignment.objects.filter(partner=child).count() == 1
    response = compliance.post(action(child, "plan"), {"plan": high.pk}, follow=True)
    assert "is on High for deals closed from now" in messages_after(response)
    assert Partner.objects.get(pk=child.pk).plan == high


# --- moves --------------------------------------------------------------------------------


def test_moving_a_partner_is_recorded_and_loops_are_refused(compliance, compliance_staff):
    a = make_chain(3)
    b = make_partner()
    response = compliance.post(
        action(a[1], "move"), {"new_parent": b.user.email.upper(), "reason": "desk merge"}
    )
    assert response.status_code == 302
    moved = Partner.objects.get(pk=a[1].pk)
    assert moved.parent_partner_id == b.pk
    record = PartnerMove.objects.get(partner=moved)
    assert (record.old_parent_id, record.new_parent_id, record.actor, record.reason) == (
        a[0].pk,
        b.pk,
        compliance_staff,
        "desk merge",
    )
    # Under their own sub-partner: refused, nothing changes.
    response = compliance.post(action(a[1], "move"), {"new_parent": a[2].user.email}, follow=True)
    assert "cannot go under themselves" in messages_after(response)
    assert Partner.objects.get(pk=a[1].pk).parent_partner_id == b.pk
    assert PartnerMove.objects.filter(partner=moved).count() == 1
    # The page shows the move and the new place in the tree.
    body = text(compliance.get(page(moved)))
    assert "desk merge" in body and b.user.email in body


def test_moving_a_partner_to_the_top_and_bad_input(compliance):
    a = make_chain(2)
    response = compliance.post(action(a[1], "move"), {}, follow=True)
    assert "Name the new parent" in messages_after(response)
    response = compliance.post(
        action(a[1], "move"), {"new_parent": "nobody@example.com"}, follow=True
    )
    assert "No partner with the e-mail nobody@example.com" in messages_after(response)
    assert Partner.objects.get(pk=a[1].pk).parent_partner_id == a[0].pk
    compliance.post(action(a[1], "move"), {"to_top": "on", "reason": "independent"})
    top = Partner.objects.get(pk=a[1].pk)
    assert top.parent_partner_id is None and top.depth == 1


def test_moving_a_client_from_the_partners_client_list(compliance, compliance_staff):
    old, new = make_partner(), make_partner()
    client = TraderFactory()
    refer(client, old)
    body = text(compliance.get(page(old)))
    assert client.email in body
    url = f"/admin/ib/partner/move-client/{client.pk}/?from={old.pk}"
    form_page = text(compliance.get(url))
    assert "is the client of" in form_page and f">{old.user.email}</a>" in form_page
    response = compliance.post(url, {"partner": new.user.email, "reason": "asked"})
    assert response["Location"] == page(old)
    referrals = Referral.objects.filter(client=client).order_by("since", "id")
    assert [(r.partner_id, r.until is None) for r in referrals] == [(old.pk, False), (new.pk, True)]
    record = PartnerMove.objects.get(client=client)
    assert (record.old_parent_id, record.new_parent_id, record.actor) == (
        old.pk,
        new.pk,
        compliance_staff,
    )


def test_a_client_cannot_be_moved_to_themselves(compliance):
    partner = make_partner()
    url = f"/admin/ib/partner/move-client/{partner.user_id}/"
    response = compliance.post(url, {"partner": partner.user.email})
    assert response.status_code == 200
    assert "cannot be their own partner" in text(response)
    assert not Referral.objects.filter(client=partner.user).exists()


def test_the_client_page_shows_the_ib_panel():
    admin_http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    partner = make_partner()
    client = TraderFactory()
    refer(client, partner)
    body = text(admin_http.get(f"/admin/accounts/client/{client.pk}/change/"))
    assert f'Client of <a href="/admin/ib/partner/{partner.pk}/change/">' in body
    assert f"/admin/ib/partner/move-client/{client.pk}/" in body


# --- staff creation -----------------------------------------------------------------------


def test_sales_make_their_client_a_partner_under_a_parent():
    sales_staff = StaffFactory(roles=[SALES])
    sales = signed_in_with_code(sales_staff)
    plan = make_plan(name="Starter")
    parent = make_partner(user=TraderFactory(profile__manager=sales_staff))
    client = TraderFactory(email="new.ib@example.com", profile__manager=sales_staff)
    response = sales.post(
        ADD,
        {
            "client": "NEW.IB@example.com",
            "parent": parent.user.email,
            "plan": plan.pk,
            "company": "Desk",
            "website": "",
        },
    )
    partner = Partner.objects.get(user=client)
    assert response["Location"] == page(partner)
    assert (partner.status, partner.parent_partner_id, partner.plan_id, partner.company) == (
        Partner.ACTIVE,
        parent.pk,
        plan.pk,
        "Desk",
    )
    assert partner.approved_by == sales_staff


def test_staff_creation_refuses_what_it_must(compliance):
    administrator = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    existing = make_partner()
    staff = StaffFactory(email="colleague@example.com")
    for email, message in [
        (existing.user.email, "is already a partner"),
        (staff.email, "No client with the e-mail"),
        ("ghost@example.com", "No client with the e-mail"),
    ]:
        response = administrator.post(ADD, {"client": email, "parent": "", "plan": ""})
        assert response.status_code == 200
        assert message in text(response)
    assert Partner.objects.count() == 1
    # Compliance has no right to create partners.
    assert compliance.get(ADD).status_code == 403


# --- details and payout settings --------------------------------------------------------------


def details(partner: Partner, **overrides) -> dict:
    data = {
        "company": partner.company,
        "website": partner.website,
        "payout_currency": partner.payout_currency_id,
        "payout_schedule": partner.payout_schedule,
        "payout_minimum": str(partner.payout_minimum),
        "show_client_contacts": "",
    }
    data.update(overrides)
    return data


def test_finance_edits_payout_settings_through_the_service():
    finance_staff = StaffFactory(roles=[FINANCE])
    finance = signed_in_with_code(finance_staff)
    partner = make_partner()
    response = finance.post(
        page(partner), details(partner, payout_minimum="120", payout_schedule="weekly")
    )
    assert response.status_code == 302
    partner.refresh_from_db()
    assert (partner.payout_minimum, partner.payout_schedule) == (Decimal("120"), "weekly")
    event = Event.objects.get(name="ib.partner_updated")
    assert event.payload == {"fields": ["payout_minimum", "payout_schedule"]}
    assert event.actor == finance_staff


def test_compliance_cannot_change_payout_settings(compliance):
    partner = make_partner()
    body = text(compliance.get(page(partner)))
    assert 'name="payout_minimum"' not in body
    assert 'name="company"' in body
    compliance.post(page(partner), details(partner, payout_minimum="1", company="Renamed"))
    partner.refresh_from_db()
    assert partner.payout_minimum == Decimal("50")
    assert partner.company == "Renamed"


def test_payouts_held_is_read_only_here():
    administrator = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    partner = make_partner()
    body = text(administrator.get(page(partner)))
    assert 'name="payouts_held"' not in body
    administrator.post(page(partner), {**details(partner), "payouts_held": "on"})
    assert Partner.objects.get(pk=partner.pk).payouts_held is False


# --- Sales scoping ------------------------------------------------------------------------


def test_sales_see_only_partners_who_are_their_clients():
    sales_staff = StaffFactory(roles=[SALES])
    sales = signed_in_with_code(sales_staff)
    mine = make_partner(user=TraderFactory(email="mine@example.com", profile__manager=sales_staff))
    theirs = make_partner(user=TraderFactory(email="theirs@example.com"))
    pending = partner_apply(user=TraderFactory(email="pending@example.com"))
    body = text(sales.get(LIST))
    assert "mine@example.com" in body
    assert "theirs@example.com" not in body and "pending@example.com" not in body
    assert sales.get(page(mine)).status_code == 200
    assert sales.get(page(theirs)).status_code == 404
    assert sales.post(action(pending, "approve"), {}).status_code == 404
    assert sales.post(action(theirs, "suspend"), {"reason": "x"}).status_code == 404
    assert Partner.objects.get(pk=pending.pk).status == Partner.PENDING
    # Nor can they move anyone under a partner they cannot see, or move a
    # client who is not theirs.
    response = sales.post(action(mine, "move"), {"new_parent": theirs.user.email}, follow=True)
    assert "No partner with the e-mail" in messages_after(response)
    stranger = TraderFactory()
    assert sales.get(f"/admin/ib/partner/move-client/{stranger.pk}/").status_code == 404
    response = sales.post(ADD, {"client": stranger.email, "parent": "", "plan": ""})
    assert "No client with the e-mail" in text(response)


# --- query counts ---------------------------------------------------------------------------


def test_partner_list_query_count_is_constant(compliance, django_assert_max_num_queries):
    def grow():
        for parent in make_chain(3):
            refer(TraderFactory(), parent)

    grow()
    compliance.get(LIST)  # warm caches
    with django_assert_max_num_queries(8):
        response = compliance.get(LIST)
    assert response.status_code == 200
    grow()
    grow()
    with django_assert_max_num_queries(8):
        response = compliance.get(LIST)
    body = text(response)
    assert body.count('class="ib-badge active"') == 9


def test_partner_page_query_count_is_constant(compliance, django_assert_max_num_queries):
    chain = make_chain(4, plan=make_plan(name="P"))
    middle = chain[1]
    for _ in range(3):
        refer(TraderFactory(), middle)
        make_partner(parent=middle)
    compliance.get(page(middle))
    with django_assert_max_num_queries(16):
        assert compliance.get(page(middle)).status_code == 200
    for _ in range(5):
        refer(TraderFactory(), middle)
        make_partner(parent=middle)
    with django_assert_max_num_queries(16):
        response = compliance.get(page(middle))
    body = text(response)
    assert "Direct clients (8)" in body
    assert body.count("/admin/ib/partner/move-client/") == 8
    assert chain[0].user.email in body  # the ancestor in the trail
