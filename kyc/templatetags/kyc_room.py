"""The verification card on the room's dashboard.

    {% load kyc_room %}
    {% kyc_dashboard_card user %}

The dashboard belongs to ``accounts``, which may not import this app
(ARCHITECTURE.md: kyc depends on accounts, never the reverse); a template tag
lets its template show the card without that import. The dashboard caches
the fragment under the room version, which every ``kyc.*`` event bumps, so
the card follows the client's level.
"""

from __future__ import annotations

from django import template

from .. import selectors
from ..models import Level

register = template.Library()


@register.inclusion_tag("kyc/_dashboard_card.html")
def kyc_dashboard_card(user) -> dict:
    kyc = selectors.kyc_for_user(user)
    try:
        level = kyc.level if kyc is not None else selectors.level_lowest()
    except Level.DoesNotExist:
        return {"level": None}
    next_level = (
        Level.objects.filter(is_active=True, number__gt=level.number).order_by("number").first()
    )
    return {"level": level, "next_level": next_level}
