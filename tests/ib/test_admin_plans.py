"""Commission plans in the admin: saving records a version from the moment
chosen (now by default, later to schedule), the version history reads as a
diff, and what the service would refuse (a past moment, tier shares over
100 %, a rate-difference plan without a rate) is a form error with nothing
written. Finance edits, Compliance reads; a plan in use cannot be deleted."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE
from backoffice.models import Event
from ib.models import Plan, PlanRule, PlanVersion
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory
from tests.ib.factories import make_partner, make_plan

pytestmark = pytest.mark.django_db

ADD = "/admin/ib/plan/add/"


def change_url(plan: Plan) -> str:
    return f"/admin/ib/plan/{plan.pk}/change/"


@pytest.fixture
def finance_staff():
    return StaffFactory(roles=[FINANCE], email="finance@example.com")


@pytest.fixture
def finance(finance_staff):
    return signed_in_with_code(finance_staff)


def errors(response) -> str:
    """The page's error messages (field and form errors), as text."""
    page = response.content.decode()
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page, re.S)
    return html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", e) for e in found))


def moment_fields(moment, *, opened=None) -> dict[str, str]:
    """The split date and time as the form posts them, with the hidden
    initial value of when the page was opened (``opened``: the same)."""
    local = timezone.localtime(moment).replace(microsecond=0)
    opened_local = timezone.localtime(opened or moment).replace(microsecond=0)
    return {
        "effective_from_0": local.strftime("%Y-%m-%d"),
        "effective_from_1": local.strftime("%H:%M:%S"),
        "initial-effective_from_0": opened_local.strftime("%Y-%m-%d"),
        "initial-effective_from_1": opened_local.strftime("%H:%M:%S"),
    }


def plan_data(*, rules=None, existing_rules=(), moment=None, opened=None, **overrides) -> dict:
    rules = rules if rules is not None else [{"instrument_group": "", "rebate_per_lot": "10"}]
    data = {
        "name": "Gold",
        "description": "",
        "currency": "USD",
        "is_active": "on",
        "tier_model": Plan.FIXED_SHARES,
        "tier_shares": "70, 20, 10",
        "min_hold_seconds": "60",
        "cap_per_deal": "",
        "cap_per_period": "",
        "cap_period": "month",
        "revshare_percent": "",
        "revshare_period": "month",
        "cpa_amount": "",
        "cpa_min_deposit": "0",
        "cpa_min_lots": "0",
        "cpa_within_days": "30",
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": str(len(existing_rules)),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        **moment_fields(moment or timezone.now(), opened=opened),
    }
    for index, rule in enumerate(rules):
        known = index < len(existing_rules)
        data[f"rules-{index}-id"] = str(existing_rules[index]) if known else ""
        data[f"rules-{index}-instrument_group"] = rule.get("instrument_group", "")
        data[f"rules-{index}-rebate_per_lot"] = rule.get("rebate_per_lot", "0")
        data[f"rules-{index}-commission_share"] = rule.get("commission_share", "0")
        data[f"rules-{index}-spread_share"] = rule.get("spread_share", "0")
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def edit_data(plan: Plan, **overrides) -> dict:
    rules = list(plan.rules.order_by("id"))
    return plan_data(
        rules=overrides.pop(
            "rules",
            [
                {
                    "instrument_group": r.instrument_group,
                    "rebate_per_lot": str(r.rebate_per_lot),
                    "commission_share": str(r.commission_share),
                    "spread_share": str(r.spread_share),
                }
                for r in rules
            ],
        ),
        existing_rules=[r.pk for r in rules],
        **overrides,
    )


def test_a_new_plan_is_saved_with_its_rules_and_first_version(finance, finance_staff):
    response = finance.post(
        ADD,
        plan_data(
            rules=[
                {"instrument_group": "", "rebate_per_lot": "10"},
                {"instrument_group": "metals", "rebate_per_lot": "4", "spread_share": "25"},
            ]
        ),
    )
    assert response.status_code == 302, errors(response)
    plan = Plan.objects.get(name="Gold")
    assert {r.instrument_group: r.rebate_per_lot for r in plan.rules.all()} == {
        "": Decimal("10"),
        "metals": Decimal("4"),
    }
    version = PlanVersion.objects.get(plan=plan)
    assert version.created_by == finance_staff
    assert abs(version.effective_from - timezone.now()) < timedelta(seconds=30)
    assert version.terms["tier_shares"] == ["70", "20", "10"]
    assert version.terms["rules"]["metals"]["spread_share"] == "25"
    assert Event.objects.filter(name="ib.plan_changed", actor=finance_staff).count() == 1


def test_a_later_edit_records_another_version_from_its_date(finance):
    plan = make_plan(rebate="10", name="Silver")
    later = timezone.now() + timedelta(days=3)
    data = edit_data(plan, name="Silver", moment=later, opened=timezone.now())
    data["rules-0-rebate_per_lot"] = "12"
    response = finance.post(change_url(plan), data)
    assert response.status_code == 302, errors(response)
    versions = list(PlanVersion.objects.filter(plan=plan).order_by("effective_from"))
    assert len(versions) == 2
    assert versions[0].terms["rules"][""]["rebate_per_lot"] == "10"  # untouched
    assert versions[1].terms["rules"][""]["rebate_per_lot"] == "12"
    assert abs(versions[1].effective_from - later) < timedelta(seconds=1)
    page = html_lib.unescape(finance.get(change_url(plan)).content.decode())
    assert "any group: 10 per lot → 12 per lot" in page
    assert "scheduled" in page and "in force" in page


def test_a_form_left_open_saves_as_now_not_as_the_moment_it_was_opened(finance):
    """The date field opens at "now"; left as it is, the change takes
    effect when saved, even if the page was opened long before."""
    plan = make_plan(rebate="10", name="Bronze")
    opened = timezone.now() - timedelta(minutes=20)
    data = edit_data(plan, name="Bronze", moment=opened, opened=opened)
    data["rules-0-rebate_per_lot"] = "11"
    response = finance.post(change_url(plan), data)
    assert response.status_code == 302, errors(response)
    latest = PlanVersion.objects.filter(plan=plan).order_by("-effective_from").first()
    assert latest.terms["rules"][""]["rebate_per_lot"] == "11"
    assert abs(latest.effective_from - timezone.now()) < timedelta(seconds=30)


def test_a_past_date_is_refused_and_nothing_is_written(finance):
    plan = make_plan(rebate="10", name="Copper")
    data = edit_data(
        plan,
        name="Copper renamed",
        moment=timezone.now() - timedelta(days=2),
        opened=timezone.now(),
    )
    data["rules-0-rebate_per_lot"] = "99"
    response = finance.post(change_url(plan), data)
    assert response.status_code == 200
    assert "cannot take effect in the past" in errors(response)
    plan.refresh_from_db()
    assert plan.name == "Copper"
    assert PlanRule.objects.get(plan=plan).rebate_per_lot == Decimal("10")
    assert PlanVersion.objects.filter(plan=plan).count() == 1


def test_a_date_before_a_scheduled_version_is_refused(finance):
    plan = make_plan(rebate="10", name="Zinc")
    data = edit_data(plan, name="Zinc", moment=timezone.now() + timedelta(days=5))
    data["initial-effective_from_0"] = "2000-01-01"  # changed on the page
    data["rules-0-rebate_per_lot"] = "12"
    assert finance.post(change_url(plan), data).status_code == 302
    data = edit_data(plan, name="Zinc", moment=timezone.now() + timedelta(days=1))
    data["initial-effective_from_0"] = "2000-01-01"
    data["rules-0-rebate_per_lot"] = "13"
    response = finance.post(change_url(plan), data)
    assert response.status_code == 200
    assert "already has a version from" in errors(response)
    assert PlanVersion.objects.filter(plan=plan).count() == 2


def test_tier_shares_over_100_percent_are_refused(finance):
    response = finance.post(ADD, plan_data(tier_shares="70, 20, 20"))
    assert response.status_code == 200
    assert "more than 100 %" in errors(response)
    assert not Plan.objects.filter(name="Gold").exists()
    assert not PlanVersion.objects.exists()
    response = finance.post(ADD, plan_data(tier_shares="lots"))
    assert "percentages separated by commas" in errors(response)
    response = finance.post(ADD, plan_data(tier_shares=""))
    assert "needs its tier shares" in errors(response)
    assert not Plan.objects.filter(name="Gold").exists()


def test_a_rate_difference_plan_needs_a_rebate_rule(finance):
    data = plan_data(
        tier_model=Plan.RATE_DIFFERENCE,
        tier_shares="",
        rules=[{"instrument_group": "", "commission_share": "30"}],
    )
    response = finance.post(ADD, data)
    assert response.status_code == 200
    assert "needs a rule with a rebate per lot" in errors(response)
    assert not Plan.objects.exists()
    data["rules-0-rebate_per_lot"] = "8"
    assert finance.post(ADD, data).status_code == 302
    assert Plan.objects.get(name="Gold").tier_model == Plan.RATE_DIFFERENCE


def test_a_plan_that_pays_nothing_is_refused(finance):
    response = finance.post(ADD, plan_data(rules=[]))
    assert "pays nothing" in errors(response)
    response = finance.post(ADD, plan_data(rules=[], cpa_amount="50"))
    assert response.status_code == 302, errors(response)


def test_two_rules_for_the_same_group_are_refused(finance):
    rules = [
        {"instrument_group": "metals", "rebate_per_lot": "4"},
        {"instrument_group": "metals", "rebate_per_lot": "5"},
    ]
    response = finance.post(ADD, plan_data(rules=rules))
    assert response.status_code == 200
    assert not Plan.objects.exists()


def test_compliance_reads_plans_but_cannot_change_them():
    plan = make_plan(rebate="10", name="Read only")
    http = signed_in_with_code(StaffFactory(roles=[COMPLIANCE]))
    page = http.get(change_url(plan))
    assert page.status_code == 200
    assert "Versions: what accrual reads" in page.content.decode()
    assert http.get(ADD).status_code == 403
    response = http.post(change_url(plan), edit_data(plan, name="Hijacked"))
    assert response.status_code == 403
    plan.refresh_from_db()
    assert plan.name == "Read only"


def test_a_plan_in_use_cannot_be_deleted_an_unused_one_can():
    http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    used = make_plan(name="Used")
    make_partner(plan=used)
    response = http.post(f"/admin/ib/plan/{used.pk}/delete/", {"post": "yes"}, follow=True)
    assert "cannot be deleted: 1 partner is on it" in response.content.decode()
    assert Plan.objects.filter(pk=used.pk).exists()
    unused = make_plan(name="Unused")
    response = http.post(f"/admin/ib/plan/{unused.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Plan.objects.filter(pk=unused.pk).exists()


def test_finance_cannot_delete_plans(finance):
    plan = make_plan(name="Kept")
    assert finance.post(f"/admin/ib/plan/{plan.pk}/delete/", {"post": "yes"}).status_code == 403


def test_plan_list_and_page_query_counts_are_bounded(finance, django_assert_max_num_queries):
    plans = [make_plan(name=f"P{i}") for i in range(3)]
    for plan in plans:
        make_partner(plan=plan)
    finance.get("/admin/ib/plan/")  # warm caches
    with django_assert_max_num_queries(9):
        assert finance.get("/admin/ib/plan/").status_code == 200
    for i in range(6):
        make_plan(name=f"Q{i}")
    with django_assert_max_num_queries(9):
        assert finance.get("/admin/ib/plan/").status_code == 200
    with django_assert_max_num_queries(9):
        assert finance.get(change_url(plans[0])).status_code == 200
