"""Partners: applications, approval, the tree and its moves, plan assignment.

Referral links and attribution are in :mod:`ib.services.referrals`,
plans in :mod:`ib.services.plans`, accrual in :mod:`ib.services.accrual`,
payouts in :mod:`ib.services.payouts`.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from treebeard.exceptions import InvalidMoveToDescendant

from backoffice.events import publish
from backoffice.services import notification_create

from .. import selectors
from ..exceptions import IbError
from ..models import Partner, PartnerMove, Plan, PlanAssignment, Referral, ReferralLink


def _require(actor, permission: str, what: str) -> None:
    if actor is not None and not actor.has_perm(permission):
        raise IbError(f"You do not have permission to {what}.")


def _place(*, user, parent: Partner | None, **fields) -> Partner:
    """Create the partner node under ``parent`` (a root without one)."""
    if parent is None:
        partner = Partner.objects.add_root(create_kwargs={"user": user, **fields})
    else:
        parent = Partner.objects.get(pk=parent.pk)  # fresh path and numchild
        partner = Partner.objects.add_child(
            parent, create_kwargs={"user": user, "parent_partner": parent, **fields}
        )
    return partner


def _parent_for_applicant(user, via_link: ReferralLink | None) -> Partner | None:
    """Under whom a new partner goes: the partner whose sub-partner link
    they used, else the partner who introduced them as a client."""
    if via_link is not None and via_link.kind == ReferralLink.PARTNER and via_link.is_active:
        return via_link.partner
    referral = selectors.current_referral(user)
    return referral.partner if referral is not None else None


@transaction.atomic
def partner_apply(
    *,
    user,
    company: str = "",
    website: str = "",
    note: str = "",
    via_link: ReferralLink | None = None,
) -> Partner:
    """A trader asks to become a partner (pending until approved). A
    rejected applicant may apply again."""
    if user.is_staff:
        raise IbError("Staff accounts cannot be partners.")
    existing = Partner.objects.select_for_update().filter(user_id=user.pk).first()
    if existing is not None:
        if existing.status != Partner.REJECTED:
            raise IbError(
                "You are already a partner."
                if existing.status == Partner.ACTIVE
                else "Your application is already with us."
            )
        existing.status = Partner.PENDING
        existing.company, existing.website, existing.application_note = company, website, note
        existing.save(update_fields=["status", "company", "website", "application_note"])
        partner = existing
    else:
        parent = _parent_for_applicant(user, via_link)
        partner = _place(
            user=user,
            parent=parent,
            company=company,
            website=website,
            application_note=note,
            status=Partner.PENDING,
        )
    publish("ib.partner_applied", partner, {"parent": partner.parent_partner_id}, client=user)
    return partner


def _assign(partner: Partner, plan: Plan | None, actor, since=None) -> None:
    """Approving or creating a partner puts them on a plan: the approver's
    permission covers it."""
    if plan is not None:
        _plan_record(actor=actor, partner=partner, plan=plan, since=since)


@transaction.atomic
def partner_approve(*, actor, partner: Partner, plan: Plan | None = None) -> Partner:
    """Approve an application: the partner earns from now, on ``plan`` (or
    the programme's default plan)."""
    _require(actor, "ib.approve_partner", "approve partners")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if partner.status == Partner.ACTIVE:
        return partner
    if partner.status not in (Partner.PENDING, Partner.SUSPENDED):
        raise IbError("Only a pending or suspended partner can be approved.")
    now = timezone.now()
    partner.status = Partner.ACTIVE
    partner.approved_at, partner.approved_by = now, actor
    partner.save(update_fields=["status", "approved_at", "approved_by"])
    plan = plan or partner.plan or selectors.programme_settings().default_plan
    if plan is not None and plan.pk != partner.plan_id:
        _assign(partner, plan, actor, since=now)
    publish("ib.partner_approved", partner, {}, client=partner.user, actor=actor)
    notification_create(
        user=partner.user,
        kind="ib",
        title="You are now a partner",
        body="Your partner dashboard is open: share your links and follow your commissions.",
    )
    return partner


@transaction.atomic
def partner_reject(*, actor, partner: Partner, reason: str) -> Partner:
    _require(actor, "ib.approve_partner", "decide on partner applications")
    if not reason.strip():
        raise IbError("Give the reason: the applicant reads it.")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if partner.status != Partner.PENDING:
        raise IbError("Only a pending application can be rejected.")
    partner.status = Partner.REJECTED
    partner.save(update_fields=["status"])
    publish("ib.partner_rejected", partner, {"reason": reason}, client=partner.user, actor=actor)
    notification_create(user=partner.user, kind="ib", title="Your partner application", body=reason)
    return partner


@transaction.atomic
def partner_suspend(*, actor, partner: Partner, reason: str) -> Partner:
    """A suspended partner earns nothing on deals closed while suspended."""
    _require(actor, "ib.approve_partner", "suspend partners")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if partner.status == Partner.SUSPENDED:
        return partner
    if partner.status != Partner.ACTIVE:
        raise IbError("Only an active partner can be suspended.")
    partner.status = Partner.SUSPENDED
    partner.save(update_fields=["status"])
    publish("ib.partner_suspended", partner, {"reason": reason}, client=partner.user, actor=actor)
    return partner


@transaction.atomic
def partner_create(
    *, actor, user, parent: Partner | None = None, plan: Plan | None = None, **fields
) -> Partner:
    """Staff make a client a partner directly (active at once)."""
    _require(actor, "ib.add_partner", "create partners")
    if user.is_staff:
        raise IbError("Staff accounts cannot be partners.")
    if Partner.objects.filter(user_id=user.pk).exists():
        raise IbError(f"{user.email} is already a partner.")
    now = timezone.now()
    partner = _place(
        user=user,
        parent=parent,
        status=Partner.ACTIVE,
        approved_at=now,
        approved_by=actor if actor is not None and actor.pk else None,
        **fields,
    )
    plan = plan or selectors.programme_settings().default_plan
    _assign(partner, plan, actor, since=now)
    publish("ib.partner_approved", partner, {"by_staff": True}, client=user, actor=actor)
    return partner


def _refuse_loop(partner: Partner, new_parent: Partner | None) -> None:
    if new_parent is None:
        return
    if new_parent.pk == partner.pk or new_parent.path.startswith(partner.path):
        raise IbError("A partner cannot go under themselves or one of their own sub-partners.")


@transaction.atomic
def partner_move(
    *, actor, partner: Partner, new_parent: Partner | None, reason: str = ""
) -> Partner:
    """Move a partner (with their whole subtree) under another parent, or to
    the top. Effective for deals closed after the move; recorded."""
    _require(actor, "ib.move_partner", "move partners")
    # Tree moves rewrite paths: one at a time.
    Partner.objects.select_for_update().filter(pk=partner.pk).first()
    partner = Partner.objects.get(pk=partner.pk)
    if new_parent is not None:
        new_parent = Partner.objects.get(pk=new_parent.pk)
    old_parent_id = partner.parent_partner_id
    if (new_parent.pk if new_parent else None) == old_parent_id:
        return partner
    _refuse_loop(partner, new_parent)
    try:
        if new_parent is None:
            Partner.objects.move(partner, Partner.objects.get_last_root_node(), "last-sibling")
        else:
            Partner.objects.move(partner, new_parent, "last-child")
    except InvalidMoveToDescendant as exc:
        raise IbError(
            "A partner cannot go under themselves or one of their own sub-partners."
        ) from exc
    partner = Partner.objects.get(pk=partner.pk)
    partner.parent_partner = new_parent
    partner.save(update_fields=["parent_partner"])
    PartnerMove.objects.create(
        partner=partner,
        old_parent_id=old_parent_id,
        new_parent=new_parent,
        actor=actor if actor is not None and actor.pk else None,
        reason=reason,
    )
    publish(
        "ib.partner_moved",
        partner,
        {"from": old_parent_id, "to": new_parent.pk if new_parent else None, "reason": reason},
        client=partner.user,
        actor=actor,
    )
    return partner


@transaction.atomic
def client_move(*, actor, client, partner: Partner | None, reason: str = "") -> Referral | None:
    """Attribute a client to another partner (or to none) from now on;
    deals closed before stay with the partner they had."""
    _require(actor, "ib.move_partner", "move clients between partners")
    if partner is not None and partner.user_id == client.pk:
        raise IbError("A client cannot be their own partner.")
    if partner is not None:
        # A partner's own trading cannot earn for someone below them (a loop).
        own = Partner.objects.filter(user_id=client.pk).only("path").first()
        target = Partner.objects.only("path").get(pk=partner.pk)  # the path as it is now
        if own is not None and target.path.startswith(own.path):
            raise IbError("A partner cannot be a client of one of their own sub-partners.")
    now = timezone.now()
    current = (
        Referral.objects.select_for_update().filter(client_id=client.pk, until__isnull=True).first()
    )
    old_partner_id = current.partner_id if current else None
    if (partner.pk if partner else None) == old_partner_id:
        return current
    if current is not None:
        current.until = now
        current.save(update_fields=["until"])
    referral = None
    if partner is not None:
        referral = Referral.objects.create(
            client=client, partner=partner, source=Referral.STAFF, since=now
        )
    PartnerMove.objects.create(
        client=client,
        old_parent_id=old_partner_id,
        new_parent=partner,
        actor=actor if actor is not None and actor.pk else None,
        reason=reason,
        at=now,
    )
    publish(
        "ib.client_moved",
        client,
        {"from": old_partner_id, "to": partner.pk if partner else None, "reason": reason},
        actor=actor,
    )
    return referral


def _rates(plan: Plan) -> dict[str, object]:
    return {r.instrument_group: r.rebate_per_lot for r in plan.rules.all()}


def _check_rate_difference(partner: Partner, plan: Plan) -> None:
    """Under the rate difference model a partner's rate per group is no
    higher than their parent's, and no lower than any of their children's."""
    if plan.tier_model != Plan.RATE_DIFFERENCE:
        return
    mine = _rates(plan)
    parent = partner.parent_partner
    if parent is not None and parent.plan is not None:
        theirs = _rates(parent.plan)
        for group, rate in mine.items():
            limit = theirs.get(group, theirs.get(""))
            if limit is not None and rate > limit:
                raise IbError(
                    f"The rate for {group or 'any group'} ({rate}) is higher than the parent "
                    f"partner's ({limit}): under rate difference a partner's rate cannot exceed "
                    "their parent's."
                )
    for child in Partner.objects.filter(parent_partner=partner).select_related("plan"):
        if child.plan is None:
            continue
        for group, rate in _rates(child.plan).items():
            limit = mine.get(group, mine.get(""))
            if limit is not None and rate > limit:
                raise IbError(
                    f"Sub-partner {child} has a rate of {rate} for {group or 'any group'}, "
                    f"above this plan's {limit}: lower theirs first."
                )


@transaction.atomic
def plan_assign(*, actor, partner: Partner, plan: Plan, since=None) -> PlanAssignment:
    """Put the partner on ``plan`` for deals closed from ``since`` (now)."""
    _require(actor, "ib.change_partner", "change partners' plans")
    return _plan_record(actor=actor, partner=partner, plan=plan, since=since)


def _plan_record(*, actor, partner: Partner, plan: Plan, since=None) -> PlanAssignment:
    partner = (
        # Lock the partner's row only: PostgreSQL refuses FOR UPDATE on the
        # nullable side of the outer join to the parent.
        Partner.objects.select_for_update(of=("self",))
        .select_related("parent_partner__plan")
        .get(pk=partner.pk)
    )
    _check_rate_difference(partner, plan)
    now = timezone.now()
    since = since or now
    if since < now - timezone.timedelta(minutes=1):
        raise IbError("A plan change cannot take effect in the past.")
    assignment = PlanAssignment.objects.create(
        partner=partner,
        plan=plan,
        since=since,
        actor=actor if actor is not None and actor.pk else None,
    )
    partner.plan = plan
    partner.save(update_fields=["plan"])
    publish(
        "ib.plan_assigned",
        partner,
        {"plan": plan.pk, "since": since.isoformat()},
        client=partner.user,
        actor=actor,
    )
    return assignment
