"""A partner's details as staff edit them in the admin: company and website,
and the payout settings (currency, schedule, minimum, contacts shown).

Status, plan, place in the tree and payout holds have their own services
(``ib.services``, ``ib.services.payouts``): this one never touches them.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from backoffice.events import publish

from ..exceptions import IbError
from ..models import Partner

PROFILE_FIELDS = ("company", "website")
PAYOUT_FIELDS = ("payout_currency", "payout_schedule", "payout_minimum", "show_client_contacts")


@transaction.atomic
def partner_details_update(*, actor, partner: Partner, data: dict[str, Any]) -> list[str]:
    """Set the given fields (a subset of ``PROFILE_FIELDS`` and
    ``PAYOUT_FIELDS``); returns the names that changed. Payout settings need
    ``ib.pay_partner`` (Finance), the rest ``ib.change_partner``."""
    unknown = set(data) - set(PROFILE_FIELDS) - set(PAYOUT_FIELDS)
    if unknown:
        raise IbError(f"These partner fields are not edited here: {', '.join(sorted(unknown))}.")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    changed = [name for name, value in data.items() if _value(partner, name) != _key(value)]
    if not changed:
        return []
    if actor is not None:
        if set(changed) & set(PAYOUT_FIELDS) and not actor.has_perm("ib.pay_partner"):
            raise IbError("You do not have permission to change partners' payout settings.")
        if set(changed) & set(PROFILE_FIELDS) and not actor.has_perm("ib.change_partner"):
            raise IbError("You do not have permission to change partners.")
    for name in changed:
        setattr(partner, name, data[name])
    if partner.payout_minimum is None or partner.payout_minimum < 0:
        raise IbError("The payout minimum is zero or more.")
    partner.save(update_fields=changed)
    publish(
        "ib.partner_updated",
        partner,
        {"fields": sorted(changed)},
        client=partner.user,
        actor=actor,
    )
    return changed


def _key(value: Any) -> Any:
    """A model instance compares by its key (the currency's code)."""
    return getattr(value, "pk", value)


def _value(partner: Partner, name: str) -> Any:
    if name == "payout_currency":
        return partner.payout_currency_id
    return getattr(partner, name)
