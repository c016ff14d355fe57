"""Reads of exchange rates: the mid rate between two currencies, and the
broker's markup on a pair.

``rate_for`` is what conversions (and deposits whose provider settles in
another currency) ask; it refuses, with a message for people, when no rate
is known or the only ones known are older than their source allows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone
from django.utils.timesince import timesince

from ..exceptions import LedgerError
from ..models import Currency, Markup, Rate, RateSource

# Currencies a cross rate may go through, in the order tried.
RATE_PIVOTS = ("EUR", "USD")


class RateUnavailable(LedgerError):
    """No usable rate between two currencies; the message is for people."""


class RateTooOld(RateUnavailable):
    """Rates exist, but each is older than its source's maximum age."""


@dataclass(frozen=True)
class RateQuote:
    """1 ``base`` = ``rate`` ``quote`` at mid-market (before the markup).

    ``source`` is the source of the rate (of its first leg for a cross rate;
    ``sources`` has every leg's); ``as_of`` is when it was published (the
    older leg's for a cross rate); ``route`` says how it was found:
    ``"direct"``, ``"inverse"``, ``"cross via EUR"``, or ``"same"`` (one
    currency, rate 1).
    """

    base: str
    quote: str
    rate: Decimal
    as_of: datetime
    source: RateSource | None
    route: str
    sources: tuple[RateSource, ...] = field(default=())


def _code(currency: Currency | str) -> str:
    return currency.code if isinstance(currency, Currency) else str(currency).strip().upper()


def _age_allowed(row: Rate, at: datetime) -> bool:
    return at - row.as_of <= timedelta(seconds=row.source.max_age_seconds)


def rate_for(
    base: Currency | str, quote: Currency | str, *, at: datetime | None = None
) -> RateQuote:
    """The mid rate from ``base`` to ``quote`` at ``at`` (default now), in one query.

    Tried in order: the direct pair, from the enabled sources by priority;
    the inverse pair likewise; a cross rate through a pivot currency
    (:data:`RATE_PIVOTS`), each leg direct or inverse. A rate older than its
    source's ``max_age_seconds`` is passed over; when nothing else is left,
    :class:`RateTooOld` says how old the rate is, and :class:`RateUnavailable`
    says that there is none.
    """
    at = at or timezone.now()
    b, q = _code(base), _code(quote)
    if b == q:
        return RateQuote(b, q, Decimal(1), at, None, "same")
    involved = {b, q}
    rows = (
        Rate.objects.filter(source__enabled=True)
        .filter(Q(base_id__in=involved) | Q(quote_id__in=involved))
        .select_related("source")
        .order_by("source__priority", "source__identifier")
    )
    by_pair: dict[tuple[str, str], list[Rate]] = defaultdict(list)
    for row in rows:
        by_pair[(row.base_id, row.quote_id)].append(row)
    stale: list[Rate] = []

    def usable(pair: tuple[str, str]) -> Rate | None:
        for row in by_pair.get(pair, []):
            if _age_allowed(row, at):
                return row
            stale.append(row)
        return None

    def leg(x: str, y: str) -> tuple[Decimal, Rate, str] | None:
        row = usable((x, y))
        if row is not None:
            return row.rate, row, "direct"
        row = usable((y, x))
        if row is not None:
            return Decimal(1) / row.rate, row, "inverse"
        return None

    found = leg(b, q)
    if found is not None:
        rate, row, route = found
        return RateQuote(b, q, rate, row.as_of, row.source, route, (row.source,))
    for pivot in RATE_PIVOTS:
        if pivot in involved:
            continue
        first, second = leg(b, pivot), leg(pivot, q)
        if first is not None and second is not None:
            return RateQuote(
                b,
                q,
                first[0] * second[0],
                min(first[1].as_of, second[1].as_of),
                first[1].source,
                f"cross via {pivot}",
                (first[1].source, second[1].source),
            )
    if stale:
        newest = max(stale, key=lambda row: row.as_of)
        raise RateTooOld(
            f"The exchange rate between {b} and {q} is out of date "
            f"(last updated {timesince(newest.as_of, at)} ago), so we cannot quote it now. "
            "Please try again later."
        )
    raise RateUnavailable(
        f"No exchange rate between {b} and {q} is available at the moment. Please try again later."
    )


def markup_for(base: Currency | str, quote: Currency | str) -> Markup:
    """The markup and fee for converting ``base`` into ``quote``.

    The most specific row wins: the exact pair, then the currency sold
    (``base`` set, any ``quote``), then the currency bought, then the row for
    every pair. With no row at all, no markup and no fee (an unsaved row).
    """
    b, q = _code(base), _code(quote)
    rows = Markup.objects.filter(
        Q(base_id=b) | Q(base__isnull=True), Q(quote_id=q) | Q(quote__isnull=True)
    )
    best = max(
        rows,
        key=lambda m: (m.base_id is not None) * 2 + (m.quote_id is not None),
        default=None,
    )
    if best is None:
        return Markup(markup_percent=Decimal(0), fee_percent=Decimal(0))
    return best
