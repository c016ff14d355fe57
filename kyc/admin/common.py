"""What the KYC admin pages share: whose clients a member of staff sees, and
how the age of a waiting item reads."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet

from accounts.roles import ALL_CLIENTS_ROLES
from accounts.selectors import staff_role_names


def sees_all_clients(staff) -> bool:
    """Everyone but a sales manager with no other role (who sees only the
    clients assigned to them), as ``accounts.selectors.clients_visible_to``."""
    return bool(staff.is_superuser or staff_role_names(staff) & set(ALL_CLIENTS_ROLES))


def scoped(qs: QuerySet, staff, *, user_path: str = "user") -> QuerySet:
    """``qs`` limited to the rows of clients ``staff`` may see. Filters on
    the client's manager directly (no subquery of all clients for those who
    see everyone: the queue must stay fast at 100,000 rows)."""
    if sees_all_clients(staff):
        return qs
    return qs.filter(**{f"{user_path}__profile__manager": staff})


def review_sla() -> timedelta:
    """How long an item may wait before the queue shows it as overdue."""
    return timedelta(hours=getattr(settings, "KYC_REVIEW_SLA_HOURS", 24))


def age_label(age: timedelta) -> str:
    """ "just now", "12 min", "3 h", "2 days": short enough for a column."""
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
