"""Reads of a partner's commission history: filters, keyset pages (on the
``(partner, -earned_at)`` index), the CSV export's chunks, and what a page
needs to show and explain its rows (plan versions, clients' masked names,
deals) in a fixed number of queries.

Every read starts from ``Commission.objects.filter(partner=partner)``: the
filters narrow the partner's own rows, never widen them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Deal, User
from accounts.selectors.deals import DealCursor

from ..display import client_label, explain
from ..models import Commission, Partner, PlanVersion, Referral

PAGE_SIZE = 50
EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class CommissionFilter:
    kind: str = ""
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    client_id: int | None = None
    sub_partner: Partner | None = None  # rows from this sub-partner's branch
    paid: bool | None = None


def commissions_for(partner: Partner, filters: CommissionFilter) -> QuerySet[Commission]:
    """The partner's own commission rows matching ``filters``, newest first."""
    qs = Commission.objects.filter(partner=partner)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.since:
        qs = qs.filter(earned_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(earned_at__lt=filters.until)
    if filters.client_id:
        qs = qs.filter(client_id=filters.client_id)
    if filters.sub_partner is not None:
        branch = Referral.objects.filter(
            until__isnull=True, partner__path__startswith=filters.sub_partner.path
        ).values("client_id")
        qs = qs.filter(client_id__in=branch)
    if filters.paid is not None:
        qs = qs.filter(payout__isnull=not filters.paid)
    return qs.order_by("-earned_at", "-id")


def _before(qs: QuerySet[Commission], cursor: DealCursor | None) -> QuerySet[Commission]:
    if cursor is None:
        return qs
    return qs.filter(
        Q(earned_at__lt=cursor.close_time) | Q(earned_at=cursor.close_time, id__lt=cursor.id)
    )


@dataclass
class Row:
    commission: Commission
    client: str
    deal: Deal | None
    explanation: str


@dataclass
class Page:
    rows: list[Row]
    next_cursor: DealCursor | None


def _rows(commissions: list[Commission]) -> list[Row]:
    """The rows with their explanations: plan versions, clients and deals
    in one query each."""
    version_ids = {c.plan_version_id for c in commissions}
    terms = dict(PlanVersion.objects.filter(pk__in=version_ids).values_list("id", "terms"))
    client_ids = {c.client_id for c in commissions if c.client_id}
    names = {
        pk: client_label(first, last, pk)
        for pk, first, last in User.objects.filter(pk__in=client_ids).values_list(
            "pk", "first_name", "last_name"
        )
    }
    deal_ids = {c.deal_id for c in commissions if c.deal_id}
    deals = (
        {d.pk: d for d in Deal.objects.filter(pk__in=deal_ids).only("id", "ticket", "symbol")}
        if deal_ids
        else {}
    )
    return [
        Row(
            commission=c,
            client=names.get(c.client_id, "") if c.client_id else "",
            deal=deals.get(c.deal_id) if c.deal_id else None,
            explanation=explain(c, terms.get(c.plan_version_id)),
        )
        for c in commissions
    ]


def commissions_page(
    partner: Partner, filters: CommissionFilter, *, before: DealCursor | None = None
) -> Page:
    """One page of the partner's rows (newest first), keyset by
    ``(earned_at, id)``; 4 queries."""
    qs = _before(commissions_for(partner, filters), before)
    found = list(qs[: PAGE_SIZE + 1])
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    cursor = DealCursor(found[-1].earned_at, found[-1].pk) if more else None
    return Page(rows=_rows(found), next_cursor=cursor)


def commission_export_rows(partner: Partner, filters: CommissionFilter) -> Iterator[Row]:
    """Every matching row, in keyset chunks of :data:`EXPORT_CHUNK` (for a
    streamed CSV: memory stays flat whatever the number of rows)."""
    qs = commissions_for(partner, filters)
    cursor: DealCursor | None = None
    while True:
        chunk = list(_before(qs, cursor)[:EXPORT_CHUNK])
        if not chunk:
            return
        yield from _rows(chunk)
        if len(chunk) < EXPORT_CHUNK:
            return
        cursor = DealCursor(chunk[-1].earned_at, chunk[-1].pk)


def commission_get_for_partner(*, partner: Partner, commission_id: int | str) -> Commission:
    """One of the partner's own rows, or 404."""
    try:
        ident = int(commission_id)
    except (TypeError, ValueError):
        ident = 0
    found = (
        Commission.objects.filter(partner=partner, pk=ident).first() if 0 < ident < 2**63 else None
    )
    if found is None:
        raise Http404("No such commission.")
    return found


def explained(commissions: Iterable[Commission]) -> list[Row]:
    return _rows(list(commissions))
