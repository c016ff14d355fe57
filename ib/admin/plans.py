"""Commission plans in the admin (Finance and Administrators edit, other
roles read): the plan's terms in fieldsets (basics, tiers, anti-abuse,
caps, revenue share, CPA), its rules per instrument group inline, and the
history of its versions.

Saving records a version (``plan_version_record``) from the moment chosen
on the form, after the rules are saved, so the version holds them. What
would make the service refuse (tier shares over 100 %, a moment in the past
or before the latest version) is refused by the form first: the page shows
the error and nothing is written. A plan that partners are or were on
cannot be deleted: commissions were paid under its versions.
"""

from __future__ import annotations

from typing import Any

from auditlog.registry import auditlog
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from kyc.admin.config import InUseDeleteMixin

from ..admin_forms import GROUP_CHOICES, PlanForm, PlanRuleForm, PlanRuleFormSet
from ..exceptions import IbError
from ..models import Partner, Plan, PlanAssignment, PlanRule, PlanVersion, Settings
from ..services.plans import plan_version_record

auditlog.register(Plan)
auditlog.register(PlanRule)

HISTORY_LIMIT = 50
GROUP_LABELS = dict(GROUP_CHOICES)
TERM_LABELS = {
    "name": "name",
    "currency": "currency",
    "tier_model": "tier model",
    "tier_shares": "tier shares",
    "min_hold_seconds": "minimum hold (s)",
    "allow_own_trading": "own trading earns",
    "cap_per_deal": "cap per deal",
    "cap_per_period": "cap per period",
    "cap_period": "cap period",
    "revshare_percent": "revenue share %",
    "revshare_period": "revenue share period",
    "revshare_carry_negative": "losses carried",
    "cpa_amount": "CPA amount",
    "cpa_min_deposit": "CPA minimum deposit",
    "cpa_min_lots": "CPA minimum lots",
    "cpa_within_days": "CPA lots within days",
}
TIER_MODELS = {Plan.FIXED_SHARES: "fixed shares", Plan.RATE_DIFFERENCE: "rate difference"}


class _VersionRefused(Exception):
    """The service refused the version after the form passed (a race with
    another save): raised out of the admin's transaction to undo the save."""


def _value(key: str, value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "tier_model":
        return TIER_MODELS.get(value, value)
    if key == "tier_shares":
        return " / ".join(value) + " %" if value else "none"
    return str(value)


def _rule_text(rule: dict[str, Any]) -> str:
    parts = []
    if rule.get("rebate_per_lot") not in (None, "0"):
        parts.append(f"{rule['rebate_per_lot']} per lot")
    if rule.get("commission_share") not in (None, "0"):
        parts.append(f"{rule['commission_share']} % of commission")
    if rule.get("spread_share") not in (None, "0"):
        parts.append(f"{rule['spread_share']} % of spread")
    return ", ".join(parts) or "nothing"


def _group(name: str) -> str:
    return GROUP_LABELS.get(name, name)


def terms_summary(terms: dict[str, Any]) -> list[str]:
    """A version's terms as short lines (the first version of a plan)."""
    lines = [f"{TIER_MODELS.get(terms.get('tier_model'), '')} · {terms.get('currency')}"]
    if terms.get("tier_model") == Plan.FIXED_SHARES:
        lines.append(f"tier shares {_value('tier_shares', terms.get('tier_shares'))}")
    for group, rule in sorted((terms.get("rules") or {}).items()):
        lines.append(f"{_group(group)}: {_rule_text(rule)}")
    for key in ("cap_per_deal", "cap_per_period", "revshare_percent", "cpa_amount"):
        if terms.get(key) is not None:
            lines.append(f"{TERM_LABELS[key]} {terms[key]}")
    if terms.get("min_hold_seconds"):
        lines.append(f"minimum hold {terms['min_hold_seconds']} s")
    return lines


def terms_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two versions' terms, one line per term or rule."""
    lines = [
        f"{label}: {_value(key, before.get(key))} → {_value(key, after.get(key))}"
        for key, label in TERM_LABELS.items()
        if before.get(key) != after.get(key)
    ]
    old_rules, new_rules = before.get("rules") or {}, after.get("rules") or {}
    for group in sorted(set(old_rules) | set(new_rules)):
        old, new = old_rules.get(group), new_rules.get(group)
        if old == new:
            continue
        if old is None:
            lines.append(f"rule added for {_group(group)}: {_rule_text(new)}")
        elif new is None:
            lines.append(f"rule removed for {_group(group)} (was {_rule_text(old)})")
        else:
            lines.append(f"{_group(group)}: {_rule_text(old)} → {_rule_text(new)}")
    return lines or ["no change in the terms"]


def version_rows(plan: Plan) -> list[dict[str, Any]]:
    """The plan's versions, newest first, each with what it changed."""
    versions = list(
        PlanVersion.objects.filter(plan=plan)
        .select_related("created_by")
        .order_by("-effective_from", "-id")[: HISTORY_LIMIT + 1]
    )
    now = timezone.now()
    in_force = next((v.pk for v in versions if v.effective_from <= now), None)
    rows = []
    for index, version in enumerate(versions[:HISTORY_LIMIT]):
        older = versions[index + 1] if index + 1 < len(versions) else None
        rows.append(
            {
                "version": version,
                "by": version.created_by.email if version.created_by else "system",
                "state": (
                    "scheduled"
                    if version.effective_from > now
                    else "in force"
                    if version.pk == in_force
                    else ""
                ),
                "lines": terms_diff(older.terms, version.terms)
                if older is not None
                else ["first version: " + "; ".join(terms_summary(version.terms))],
            }
        )
    return rows


def plan_usage(plan: Plan) -> str:
    """Why ``plan`` cannot be deleted ("" when nothing uses it). Commissions
    name its versions; every commission's partner was assigned the plan, so
    the assignments (indexed, few) stand for them."""
    if plan.pk is None:
        return ""
    reasons = []
    partners = Partner.objects.filter(plan=plan).count()
    if partners:
        reasons.append(f"{partners:,} partner{'s are' if partners != 1 else ' is'} on it")
    elif PlanAssignment.objects.filter(plan=plan).exists():
        reasons.append("partners were on it: their plan history and commissions name it")
    if Settings.objects.filter(default_plan=plan).exists():
        reasons.append("it is the programme's default plan")
    return " and ".join(reasons)


class PlanRuleInline(admin.TabularInline):
    model = PlanRule
    form = PlanRuleForm
    formset = PlanRuleFormSet
    fields = ["instrument_group", "rebate_per_lot", "commission_share", "spread_share"]
    verbose_name = "rule per instrument group"
    verbose_name_plural = "rules per instrument group"

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 1 if obj is None else 0


@admin.register(Plan)
class PlanAdmin(InUseDeleteMixin, admin.ModelAdmin):
    form = PlanForm
    inlines = [PlanRuleInline]
    change_form_template = "admin/ib/plan/change_form.html"
    list_display = [
        "name",
        "currency",
        "tiers",
        "rules_summary",
        "partners_count",
        "effective_from",
        "is_active",
    ]
    list_filter = ["is_active", "tier_model", "currency"]
    search_fields = ["name"]
    ordering = ["name"]
    instead = "Untick “active” instead: no one new is put on it; its partners keep it."
    fieldsets = [
        (None, {"fields": ["name", "description", "currency", "is_active", "effective_from"]}),
        (
            "Tiers",
            {
                "description": "Fixed shares: each level above the client gets its share of "
                "what the deal earns. Rate difference: each partner's rate (the rules' rebate "
                "per lot) is no higher than its parent's, and each ancestor earns the "
                "difference between its rate and the one below.",
                "fields": ["tier_model", "tier_shares"],
            },
        ),
        ("Anti-abuse", {"fields": ["min_hold_seconds", "allow_own_trading"]}),
        (
            "Caps",
            {
                "description": "Whatever the tiers add up to.",
                "fields": ["cap_per_deal", ("cap_per_period", "cap_period")],
            },
        ),
        (
            "Revenue share",
            {"fields": [("revshare_percent", "revshare_period"), "revshare_carry_negative"]},
        ),
        (
            "CPA",
            {
                "description": "A one-time amount when a referred client's first deposit "
                "qualifies.",
                "fields": ["cpa_amount", "cpa_min_deposit", ("cpa_min_lots", "cpa_within_days")],
            },
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("currency")
            .annotate(partners_total=Count("partners"))
            .prefetch_related("rules")
        )

    def usage(self, obj: Plan) -> str:
        return plan_usage(obj)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "currency" and field is not None:
            # Currencies are the ledger's: picked here, never added or edited.
            widget = field.widget
            widget.can_add_related = widget.can_change_related = widget.can_view_related = False
        return field

    @admin.display(description="tiers", ordering="tier_model")
    def tiers(self, obj: Plan) -> str:
        if obj.tier_model == Plan.RATE_DIFFERENCE:
            return "rate difference"
        return f"fixed: {obj.tier_shares} %" if obj.tier_shares else "fixed"

    @admin.display(description="rules")
    def rules_summary(self, obj: Plan) -> str:
        rules = sorted(obj.rules.all(), key=lambda r: r.instrument_group)
        parts = [
            (
                _group(r.instrument_group),
                _rule_text(
                    {
                        "rebate_per_lot": _plain(r.rebate_per_lot),
                        "commission_share": _plain(r.commission_share),
                        "spread_share": _plain(r.spread_share),
                    }
                ),
            )
            for r in rules
        ]
        if not parts:
            return "no rules"
        return format_html_join(mark_safe("<br>"), "{}: {}", parts)

    @admin.display(description="partners", ordering="partners_total")
    def partners_count(self, obj: Plan) -> int:
        return obj.partners_total

    # --- Saving: the plan, its rules, then its version ----------------------------------------

    def save_model(self, request, obj: Plan, form: PlanForm, change: bool) -> None:
        obj.effective_from = form.effective_moment or timezone.now()
        super().save_model(request, obj, form, change)

    def save_related(self, request, form: PlanForm, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Fresh, without the list's prefetched rules: the version holds the saved ones.
        plan = Plan.objects.get(pk=form.instance.pk)
        try:
            version = plan_version_record(
                plan=plan, actor=request.user, effective_from=plan.effective_from
            )
        except IbError as exc:
            raise _VersionRefused(str(exc)) from exc
        if version.effective_from > timezone.now():
            messages.info(
                request,
                f"The new terms apply to deals closed from "
                f"{timezone.localtime(version.effective_from):%Y-%m-%d %H:%M}; "
                "until then the version before stays in force.",
            )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _VersionRefused as exc:  # the admin's transaction was rolled back
            messages.error(request, f"Nothing was saved: {exc}")
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["versions"] = version_rows(obj) if obj is not None and obj.pk else []
        return super().render_change_form(request, context, add, change, form_url, obj)


def _plain(value) -> str:
    return format(value.normalize(), "f")
