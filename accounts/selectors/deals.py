"""Reads of a trader's deals: the trading history (keyset pages, the CSV
export's chunks) and the analytics aggregates.

Every read starts from ``Deal.objects.filter(client=user)``: the accounts a
caller passes narrow it further but can never widen it to another trader's
deals. Pages and chunks walk the (client, -close_time, -id) index by keyset
on (close_time, id), never by OFFSET; the analytics are computed in SQL
(GROUP BY with conditional aggregates), a constant number of queries
whatever the number of deals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from backoffice.money import from_minor

from ..models import Deal, Instrument, TradingAccount

HISTORY_PAGE_SIZE = 50
EXPORT_CHUNK = 2000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def trading_accounts_for_user(*, user) -> list[TradingAccount]:
    """The user's trading accounts (live first, then by opening), one query."""
    return list(TradingAccount.objects.filter(user=user).order_by("is_demo", "created_at", "id"))


def instrument_digits() -> dict[str, int]:
    """Price decimals by symbol, for the instruments the broker defines."""
    return dict(Instrument.objects.values_list("symbol", "digits"))


def instrument_symbols() -> list[str]:
    return list(Instrument.objects.order_by("symbol").values_list("symbol", flat=True))


# --- The history ---------------------------------------------------------------------


@dataclass(frozen=True)
class DealCursor:
    """Where a history page ends: the last deal's close time and id. In a URL
    it is ``<microseconds since 1970 UTC>_<id>``."""

    close_time: datetime
    id: int

    def encode(self) -> str:
        micros = (self.close_time - _EPOCH) // _MICROSECOND
        return f"{micros}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> DealCursor | None:
        """The cursor in ``text``, or None when it is not one."""
        micros, sep, ident = (text or "").partition("_")
        if not sep or not ident.isdigit() or not micros.lstrip("-").isdigit():
            return None
        if len(micros) > 20 or len(ident) > 19:
            return None
        try:
            close_time = _EPOCH + int(micros) * _MICROSECOND
        except OverflowError:
            return None
        number = int(ident)
        if not 0 < number < 2**63:
            return None
        return cls(close_time, number)


@dataclass(frozen=True)
class DealFilter:
    """What to read: the user's deals, narrowed to ``accounts`` (the user's
    own, already checked; empty means all of them), a symbol, a side, and a
    period [since, until)."""

    accounts: Sequence[TradingAccount] = ()
    symbol: str = ""
    side: str = ""
    since: datetime | None = None
    until: datetime | None = None


def deals_for_user(*, user, filters: DealFilter) -> QuerySet[Deal]:
    qs = Deal.objects.filter(client=user)
    ids = [a.pk for a in filters.accounts]
    if len(ids) == 1:
        qs = qs.filter(account_id=ids[0])
    elif ids:
        qs = qs.filter(account_id__in=ids)
    if filters.symbol:
        qs = qs.filter(symbol=filters.symbol)
    if filters.side:
        qs = qs.filter(side=filters.side)
    if filters.since is not None:
        qs = qs.filter(close_time__gte=filters.since)
    if filters.until is not None:
        qs = qs.filter(close_time__lt=filters.until)
    return qs


def _before(qs: QuerySet[Deal], cursor: DealCursor | None) -> QuerySet[Deal]:
    if cursor is None:
        return qs
    # The redundant "close_time <= t" is the index range; the OR breaks ties
    # on close_time by id.
    return qs.filter(close_time__lte=cursor.close_time).filter(
        Q(close_time__lt=cursor.close_time) | Q(close_time=cursor.close_time, id__lt=cursor.id)
    )


@dataclass(frozen=True)
class DealsPage:
    deals: list[Deal]
    next_cursor: DealCursor | None


def deals_page(
    *,
    user,
    filters: DealFilter,
    accounts: Sequence[TradingAccount],
    before: DealCursor | None = None,
    limit: int = HISTORY_PAGE_SIZE,
) -> DealsPage:
    """One page of the user's deals, newest first (one query). ``accounts``
    are all the user's accounts: each deal gets its account from them."""
    qs = _before(deals_for_user(user=user, filters=filters), before)
    rows = list(qs.order_by("-close_time", "-id")[: limit + 1])
    page = rows[:limit]
    by_id = {a.pk: a for a in accounts}
    for deal in page:
        if deal.account_id in by_id:  # else (an account since moved) Django reads it
            deal.account = by_id[deal.account_id]  # no query per deal
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = DealCursor(last.close_time, last.pk)
    return DealsPage(page, next_cursor)


EXPORT_FIELDS = (
    "id",
    "ticket",
    "account_id",
    "symbol",
    "side",
    "volume",
    "open_time",
    "close_time",
    "open_price",
    "close_price",
    "profit",
    "commission",
    "swap",
)


def deals_export_rows(*, user, filters: DealFilter, chunk: int | None = None) -> Iterator[tuple]:
    """Every deal the filter matches, newest first, as tuples of
    ``EXPORT_FIELDS``: read in keyset chunks of ``chunk`` rows, so that an
    export of any size holds one chunk in memory."""
    chunk = chunk or EXPORT_CHUNK
    cursor = None
    base = deals_for_user(user=user, filters=filters)
    while True:
        rows = list(
            _before(base, cursor).order_by("-close_time", "-id").values_list(*EXPORT_FIELDS)[:chunk]
        )
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1]
        cursor = DealCursor(last[7], last[0])


# --- Analytics -----------------------------------------------------------------------

_NET = F("profit") + F("commission") + F("swap")
_HOLDING = ExpressionWrapper(F("close_time") - F("open_time"), output_field=DurationField())


@dataclass
class InstrumentResult:
    symbol: str
    trades: int
    wins: int
    losses: int
    volume: Decimal  # lots
    net: int  # minor units
    gross_profit: int
    gross_loss: int  # minor units, <= 0
    best: int
    worst: int
    holding: timedelta


@dataclass
class DayResult:
    day: date
    trades: int
    net: int
    cumulative: int = 0


@dataclass
class Analytics:
    """The results of a set of deals in one currency (minor units with
    ``digits`` decimals). Figures are None where they make no sense (no
    trades; a profit factor without losses)."""

    currency: str
    digits: int
    by_instrument: list[InstrumentResult] = field(default_factory=list)
    by_day: list[DayResult] = field(default_factory=list)

    @property
    def trades(self) -> int:
        return sum(r.trades for r in self.by_instrument)

    @property
    def wins(self) -> int:
        return sum(r.wins for r in self.by_instrument)

    @property
    def losses(self) -> int:
        return sum(r.losses for r in self.by_instrument)

    @property
    def net(self) -> int:
        return sum(r.net for r in self.by_instrument)

    @property
    def gross_profit(self) -> int:
        return sum(r.gross_profit for r in self.by_instrument)

    @property
    def gross_loss(self) -> int:
        return sum(r.gross_loss for r in self.by_instrument)

    @property
    def volume(self) -> Decimal:
        return sum((r.volume for r in self.by_instrument), Decimal(0))

    @property
    def best(self) -> int | None:
        return max((r.best for r in self.by_instrument), default=None)

    @property
    def worst(self) -> int | None:
        return min((r.worst for r in self.by_instrument), default=None)

    @property
    def win_rate(self) -> Decimal | None:
        """Winning trades (net > 0) in percent of all trades, one decimal."""
        if not self.trades:
            return None
        return (Decimal(100 * self.wins) / self.trades).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_EVEN
        )

    @property
    def profit_factor(self) -> Decimal | None:
        """Gross profit / gross loss, two decimals; None without losses."""
        if not self.gross_loss:
            return None
        return (Decimal(self.gross_profit) / -self.gross_loss).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_EVEN
        )

    @property
    def average(self) -> Decimal | None:
        """The average net result of a trade, in major units."""
        if not self.trades:
            return None
        quantum = Decimal(1).scaleb(-self.digits)
        return (from_minor(self.net, self.digits) / self.trades).quantize(
            quantum, rounding=ROUND_HALF_EVEN
        )

    @property
    def average_holding(self) -> timedelta | None:
        if not self.trades:
            return None
        total = sum((r.holding for r in self.by_instrument), timedelta(0))
        return timedelta(seconds=round(total.total_seconds() / self.trades))


def deal_analytics(
    *,
    user,
    accounts: Sequence[TradingAccount],
    since: datetime | None,
    until: datetime | None,
    all_accounts: bool = False,
) -> Analytics:
    """The analytics of the user's deals on ``accounts`` (all in one
    currency) in [since, until): two queries, one grouped by instrument and
    one by day (in the current time zone). ``all_accounts`` says that
    ``accounts`` are all the user's accounts, so no account filter is needed."""
    currencies = {a.currency for a in accounts}
    if len(currencies) != 1:
        raise ValueError("analytics are computed for accounts of one currency")
    digits = {a.currency_digits for a in accounts}
    result = Analytics(currency=currencies.pop(), digits=max(digits))
    if len(digits) > 1:  # the same currency kept with different precision: not summed
        raise ValueError("accounts of one currency must have the same currency digits")
    filters = DealFilter(accounts=() if all_accounts else tuple(accounts), since=since, until=until)
    qs = deals_for_user(user=user, filters=filters).alias(net=_NET)
    instruments = (
        qs.values("symbol")
        .annotate(
            trades=Count("id"),
            wins=Count("id", filter=Q(net__gt=0)),
            losses=Count("id", filter=Q(net__lt=0)),
            volume=Sum("volume"),
            total=Sum("net"),
            gross_profit=Sum("net", filter=Q(net__gt=0)),
            gross_loss=Sum("net", filter=Q(net__lt=0)),
            best=Max("net"),
            worst=Min("net"),
            holding=Sum(_HOLDING),
        )
        .order_by("-volume", "symbol")
    )
    for row in instruments:
        result.by_instrument.append(
            InstrumentResult(
                symbol=row["symbol"],
                trades=row["trades"],
                wins=row["wins"],
                losses=row["losses"],
                volume=row["volume"] or Decimal(0),
                net=int(row["total"] or 0),
                gross_profit=int(row["gross_profit"] or 0),
                gross_loss=int(row["gross_loss"] or 0),
                best=int(row["best"]),
                worst=int(row["worst"]),
                holding=row["holding"] or timedelta(0),
            )
        )
    if not result.by_instrument:
        return result  # no deals: no second query
    days = (
        qs.annotate(day=TruncDate("close_time"))
        .values("day")
        .annotate(trades=Count("id"), total=Sum("net"))
        .order_by("day")
    )
    running = 0
    for row in days:  # one row per day, not per deal
        running += int(row["total"])
        result.by_day.append(DayResult(row["day"], row["trades"], int(row["total"]), running))
    return result
