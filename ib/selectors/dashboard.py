"""Reads of the partner dashboard: the overview's figures, the downline's
clients and the sub-partner tree with each branch's volume and commissions.

Every read starts from the partner's own subtree (paths that start with the
partner's path) or from the partner's own commission rows, so an id from a
request can narrow a read but never widen it to another partner's data;
:func:`subtree_partner_get` and :func:`downline_client_exists` are the
access checks for ids in URLs (404 otherwise).

"Downline clients" are the current referrals (``until`` open) of every
partner in the subtree; a client's deals, deposits and withdrawals count from
the moment they were referred (``Referral.since``), so a client moved in by
staff brings no history that earned someone else. Volume is in lots, as the
platform reports them, of live accounts only: deals of demo accounts
(virtual money) are no volume, make no active trader and no "has traded",
as they earn no commission (see :func:`_live_deal_sql`).

The aggregates are a constant number of queries whatever the downline's
size (the clients list and the tree add a fixed few per page). They are
written in SQL that PostgreSQL and SQLite both run; the expensive ones read
covering indexes (deals: ``deal_client_time``; deposits and withdrawals:
``*_user_created``). The overview is cached per partner (see
:func:`overview_for`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import (
    DecimalField,
    Exists,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from accounts.models import Deal, TradingAccount
from payments.models import Deposit, LedgerAccount, Withdrawal

from ..models import Commission, Partner, PartnerMove, Referral
from . import programme_settings

LOTS = Decimal("0.0001")
ACTIVE_DAYS = 30
SIGNUP_WEEKS = 12
CHART_DAYS = (30, 90)

_DEAL = Deal._meta.db_table
_ACCOUNT = TradingAccount._meta.db_table
_REFERRAL = Referral._meta.db_table
_PARTNER = Partner._meta.db_table
_COMMISSION = Commission._meta.db_table
_DEPOSIT = Deposit._meta.db_table
_WITHDRAWAL = Withdrawal._meta.db_table
_WALLET = LedgerAccount._meta.db_table


# --- Small helpers ---------------------------------------------------------------------


def _param(moment: datetime):
    """A datetime as the database's driver wants it in raw SQL (SQLite:
    the naive UTC text Django stores)."""
    return connection.ops.adapt_datetimefield_value(moment)


def _lots(value) -> Decimal:
    """A SUM of lots as Decimal (SQLite returns a float for numeric sums)."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value.quantize(LOTS)
    return Decimal(str(value)).quantize(LOTS)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _live_deal_sql() -> str:
    """A condition keeping out deals (``d``) of demo accounts, where the
    deals are joined to the referrals row by row (the overview's sums): an
    anti-join on the account's primary key, which PostgreSQL runs as a hash
    of the demo accounts for a full snapshot and as a probe per deal for the
    few new deals of a view."""
    return (
        f"AND NOT EXISTS (SELECT 1 FROM {_ACCOUNT} a "  # noqa: S608 - names, not data
        "WHERE a.id = d.account_id AND a.is_demo) "
    )


def _live_client_deal_sql(client: str) -> str:
    """The same inside a subquery of one client's deals (``client``: the
    outer query's client id column): the client's demo accounts, one index
    probe per client and a hashed ``NOT IN`` per deal. (Correlated to the
    deal instead, an anti-join would probe the accounts once per deal: 500,000
    probes for 10,000 clients' all-time lots.) A deal's client is its
    account's owner (a composite foreign key, accounts migration 0007)."""
    return (
        f"AND d.account_id NOT IN (SELECT a.id FROM {_ACCOUNT} a "  # noqa: S608 - names
        f"WHERE a.user_id = {client} AND a.is_demo) "
    )


def _prefix(partner: Partner) -> str:
    # Paths are digits and capital letters only: no LIKE wildcard to escape.
    return partner.path + "%"


# --- Access ----------------------------------------------------------------------------


def _id(value) -> int | None:
    """A database id from a URL or a form, or None (not a number, or out of
    a bigint's range: a 404, not a database error)."""
    try:
        ident = int(value)
    except (TypeError, ValueError):
        return None
    return ident if 0 < ident < 2**63 else None


def subtree(partner: Partner) -> QuerySet[Partner]:
    return Partner.objects.filter(path__startswith=partner.path)


def subtree_partner_get(*, partner: Partner, partner_id: int | str) -> Partner:
    """A partner of ``partner``'s subtree (``partner`` itself included) by
    id, or 404: an id elsewhere in the tree is not found, never forbidden."""
    ident = _id(partner_id)
    if ident is None:
        raise Http404("No such sub-partner.")
    found = (
        subtree(partner)
        .filter(pk=ident)
        .select_related("user")
        .only(
            "id",
            "path",
            "depth",
            "numchild",
            "status",
            "parent_partner_id",
            "created_at",
            "user__first_name",
            "user__last_name",
        )
        .first()
    )
    if found is None:
        raise Http404("No such sub-partner.")
    return found


def downline_referrals(partner: Partner) -> QuerySet[Referral]:
    """The current referrals of every partner in the subtree."""
    return Referral.objects.filter(until__isnull=True, partner__path__startswith=partner.path)


def downline_client_exists(*, partner: Partner, client_id: int | str) -> bool:
    """Whether the client is, or was, referred within the partner's subtree
    (a former client's commissions stay the partner's to look at)."""
    ident = _id(client_id)
    if ident is None:
        return False
    return Referral.objects.filter(client_id=ident, partner__path__startswith=partner.path).exists()


def show_contacts(partner: Partner) -> bool:
    """Whether the broker lets this partner see clients' e-mail and phone."""
    return bool(partner.show_client_contacts or programme_settings().show_client_contacts)


# --- The overview ----------------------------------------------------------------------
#
# The overview's all-time figures read every deal of the downline and every
# commission row of the partner: some 500,000 rows each for a partner with
# 10,000 clients, about a second. So they are kept in a per-partner
# *snapshot* (in the cache): the sums up to the highest deal and commission
# ids it has seen, the recent days bucketed by day (today, this month, the
# chart), each client's latest trade of the last 30 days (active traders)
# and the deposits and withdrawals. A page view reads the tables' highest
# ids, adds the rows between the snapshot's ids and those (a primary-key
# range: what came since the last view) and stores the snapshot so grown.
# Deals and commissions only ever get new rows, so this is exact, except for
# a row whose transaction took its id before a view and committed after it
# (two imports at once): the next full snapshot counts it. A full snapshot
# is taken again in the background (Celery) once the last one is older than
# SNAPSHOT_FRESH, while views keep using the old one; at once when there is
# none, or after a partner or client move (which changes whose clients are
# whose). Deposits and withdrawals change status rather than add rows: they
# follow with the full snapshots.


@dataclass(frozen=True)
class MoneyFlow:
    """Deposits and withdrawals of the downline in one wallet currency."""

    currency: str
    deposits: int
    withdrawals: int

    @property
    def net(self) -> int:
        return self.deposits - self.withdrawals


@dataclass(frozen=True)
class CommissionTotals:
    """The partner's own commissions in one currency."""

    currency: str
    today: int
    month: int
    total: int


@dataclass(frozen=True)
class Overview:
    clients_direct: int
    clients_total: int
    sub_partners: int
    active_traders: int
    lots_month: Decimal
    lots_total: Decimal
    flows: list[MoneyFlow]
    commissions: list[CommissionTotals]
    # {currency: [(day, minor), ...]} for the last 90 days, days with rows only.
    commissions_by_day: dict[str, list[tuple[date, int]]]
    signups_by_week: list[tuple[date, int]]
    today: date
    computed_at: datetime = field(compare=False)


SNAPSHOT_FRESH = 600  # seconds before a snapshot is refreshed in the background
SNAPSHOT_TTL = 2 * 86400
KEPT_DAYS = 95  # day buckets: the chart's 90 days and this month, with a margin


@dataclass
class Snapshot:
    """The overview's sums up to ``deal_id`` and ``commission_id``."""

    partner_id: int
    path: str
    move_id: int
    deal_id: int
    commission_id: int
    taken_at: datetime
    first_day: date  # the oldest day bucket
    lots_before: Decimal  # deals closed before first_day
    lots_by_day: dict[date, Decimal]
    last_trade: dict[int, datetime]  # client → latest close, for the 30 days before taken_at
    commissions_before: dict[str, int]  # per currency, earned before first_day
    commissions_by_day: dict[str, dict[date, int]]
    flows: list[MoneyFlow]


@dataclass(frozen=True)
class Stamp:
    deal_id: int
    commission_id: int
    move_id: int


def activity_stamp() -> Stamp:
    """The highest deal, commission and partner-move ids (one query, one
    index probe each)."""
    tables = (_DEAL, _COMMISSION, PartnerMove._meta.db_table)
    sql = "SELECT " + ", ".join(f"(SELECT MAX(id) FROM {t})" for t in tables)  # noqa: S608 - names
    deal, commission, move = _fetch(sql, [])[0]
    return Stamp(int(deal or 0), int(commission or 0), int(move or 0))


def _day_sql(column: str) -> tuple[str, list]:
    sql, params = connection.ops.datetime_cast_date_sql(
        column, (), timezone.get_current_timezone_name()
    )
    return sql, list(params)


def _as_date(value) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _downline_deals_by_day(
    partner: Partner, *, first_day: date, after_id: int, upto_id: int | None
) -> list[tuple[date | None, Decimal]]:
    """Lots of the downline's live deals (since each client's referral) with ids
    in (after_id, upto_id], per day of closing from ``first_day`` (None: before)."""
    day, day_params = _day_sql("d.close_time")
    upper = "AND d.id <= %s " if upto_id is not None else ""
    sql = (
        f"SELECT CASE WHEN d.close_time >= %s THEN {day} END, SUM(d.volume) "  # noqa: S608 - names
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        f"JOIN {_DEAL} d ON d.client_id = r.client_id AND d.close_time >= r.since "
        f"WHERE r.until IS NULL AND p.path LIKE %s AND d.id > %s {upper}{_live_deal_sql()}"
        "GROUP BY 1"
    )
    params = [_param(_start_of(first_day)), *day_params, _prefix(partner), after_id]
    params += [upto_id] if upto_id is not None else []
    return [(_as_date(k), _lots(v)) for k, v in _fetch(sql, params)]


def _downline_last_trades(
    partner: Partner, *, since: datetime, after_id: int, upto_id: int | None
) -> dict[int, datetime]:
    """Each downline client's latest live deal closed since ``since`` (ids in range)."""
    upper = "AND d.id <= %s " if upto_id is not None else ""
    sql = (
        "SELECT d.client_id, MAX(d.close_time) "  # noqa: S608 - names
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        f"JOIN {_DEAL} d ON d.client_id = r.client_id AND d.close_time >= r.since "
        f"AND d.close_time >= %s "
        f"WHERE r.until IS NULL AND p.path LIKE %s AND d.id > %s {upper}{_live_deal_sql()}"
        "GROUP BY 1"
    )
    params = [_param(since), _prefix(partner), after_id]
    params += [upto_id] if upto_id is not None else []
    return {int(c): _as_datetime(t) for c, t in _fetch(sql, params)}


def _commissions_by_day(
    partner: Partner, *, first_day: date, after_id: int, upto_id: int | None
) -> list[tuple[str, date | None, int]]:
    """The partner's commissions with ids in (after_id, upto_id], per
    currency and day earned from ``first_day`` (None: before)."""
    day, day_params = _day_sql("c.earned_at")
    upper = "AND c.id <= %s " if upto_id is not None else ""
    sql = (
        f"SELECT c.currency_id, CASE WHEN c.earned_at >= %s THEN {day} END, "  # noqa: S608
        f"SUM(c.amount) FROM {_COMMISSION} c "
        f"WHERE c.partner_id = %s AND c.id > %s {upper}GROUP BY 1, 2"
    )
    params = [_param(_start_of(first_day)), *day_params, partner.pk, after_id]
    params += [upto_id] if upto_id is not None else []
    return [(cur, _as_date(k), int(v or 0)) for cur, k, v in _fetch(sql, params)]


def _flows(partner: Partner) -> list[MoneyFlow]:
    """Completed deposits (credited amounts) and paid withdrawals of the
    downline since each client's referral, per wallet currency: one query."""
    sql = (
        "SELECT w.currency_id, 'd', SUM(x.credit_amount) "  # noqa: S608 - names, not data
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        f"JOIN {_DEPOSIT} x ON x.user_id = r.client_id AND x.created_at >= r.since "
        f"JOIN {_WALLET} w ON w.id = x.wallet_id "
        "WHERE r.until IS NULL AND p.path LIKE %s AND x.status = %s GROUP BY w.currency_id "
        "UNION ALL "
        "SELECT w.currency_id, 'w', SUM(x.amount) "
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        f"JOIN {_WITHDRAWAL} x ON x.user_id = r.client_id AND x.created_at >= r.since "
        f"JOIN {_WALLET} w ON w.id = x.wallet_id "
        "WHERE r.until IS NULL AND p.path LIKE %s AND x.status = %s GROUP BY w.currency_id"
    )
    prefix = _prefix(partner)
    rows = _fetch(sql, [prefix, Deposit.COMPLETED, prefix, Withdrawal.PAID])
    sums: dict[str, dict[str, int]] = defaultdict(lambda: {"d": 0, "w": 0})
    for currency, what, amount in rows:
        sums[currency][what] += int(amount or 0)
    return [
        MoneyFlow(currency=code, deposits=s["d"], withdrawals=s["w"])
        for code, s in sorted(sums.items(), key=lambda item: (-item[1]["d"], item[0]))
    ]


def _merge_deals(snap: Snapshot, rows, last_trades: dict[int, datetime]) -> None:
    for day, lots in rows:
        if day is None:
            snap.lots_before += lots
        else:
            snap.lots_by_day[day] = snap.lots_by_day.get(day, Decimal(0)) + lots
    for client, closed in last_trades.items():
        if closed > snap.last_trade.get(client, closed - timedelta(seconds=1)):
            snap.last_trade[client] = closed


def _merge_commissions(snap: Snapshot, rows) -> None:
    for currency, day, amount in rows:
        if day is None:
            snap.commissions_before[currency] = snap.commissions_before.get(currency, 0) + amount
        else:
            days = snap.commissions_by_day.setdefault(currency, {})
            days[day] = days.get(day, 0) + amount


def snapshot_take(partner: Partner, *, stamp: Stamp | None = None) -> Snapshot:
    """The overview's sums from the tables, up to the stamp's ids (5 queries
    and the stamp's; about a second for 10,000 clients)."""
    stamp = stamp or activity_stamp()
    now = timezone.now()
    first_day = timezone.localdate(now) - timedelta(days=KEPT_DAYS - 1)
    snap = Snapshot(
        partner_id=partner.pk,
        path=partner.path,
        move_id=stamp.move_id,
        deal_id=stamp.deal_id,
        commission_id=stamp.commission_id,
        taken_at=now,
        first_day=first_day,
        lots_before=Decimal(0),
        lots_by_day={},
        last_trade={},
        commissions_before={},
        commissions_by_day={},
        flows=_flows(partner),
    )
    deals = _downline_deals_by_day(partner, first_day=first_day, after_id=0, upto_id=stamp.deal_id)
    trades = _downline_last_trades(
        partner, since=now - timedelta(days=ACTIVE_DAYS), after_id=0, upto_id=stamp.deal_id
    )
    _merge_deals(snap, deals, trades)
    _merge_commissions(
        snap,
        _commissions_by_day(partner, first_day=first_day, after_id=0, upto_id=stamp.commission_id),
    )
    return snap


# Bump when Snapshot's fields or what they count change: old pickles are
# ignored. 2: deals of demo accounts no longer count.
SNAPSHOT_SHAPE = 2


def _snapshot_key(partner_id: int) -> str:
    return f"ib:overview:snapshot:v{SNAPSHOT_SHAPE}:{partner_id}"


def overview_snapshot_refresh(partner_id: int) -> Snapshot | None:
    """Take a new snapshot of the partner's overview and keep it (the
    background refresh; also usable by hand)."""
    partner = Partner.objects.filter(pk=partner_id).first()
    if partner is None:
        return None
    snap = snapshot_take(partner)
    cache.set(_snapshot_key(partner_id), snap, SNAPSHOT_TTL)
    cache.delete(f"{_snapshot_key(partner_id)}:refreshing")
    return snap


def _schedule_refresh(partner_id: int) -> None:
    # One refresh at a time per partner (the flag expires if a worker dies).
    if cache.add(f"{_snapshot_key(partner_id)}:refreshing", 1, 300):
        from ..tasks import overview_refresh

        transaction.on_commit(lambda: overview_refresh.delay(partner_id))


def _usable(snap, partner: Partner, stamp: Stamp, now: datetime) -> bool:
    if not isinstance(snap, Snapshot):
        return False
    first_needed = min(
        timezone.localdate(now).replace(day=1),
        timezone.localdate(now) - timedelta(days=max(CHART_DAYS) - 1),
    )
    return (
        snap.partner_id == partner.pk
        and snap.path == partner.path
        and snap.move_id == stamp.move_id
        and snap.first_day <= first_needed
        and now - snap.taken_at < timedelta(days=ACTIVE_DAYS)
    )


def _counts(partner: Partner) -> tuple[int, int, int]:
    """Direct clients, downline clients, sub-partners: one query."""
    sql = (
        "SELECT COUNT(*), "  # noqa: S608 - names, not data
        "COALESCE(SUM(CASE WHEN r.partner_id = %s THEN 1 ELSE 0 END), 0), "
        f"(SELECT COUNT(*) FROM {_PARTNER} s WHERE s.path LIKE %s) "
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        "WHERE r.until IS NULL AND p.path LIKE %s"
    )
    total, direct, partners = _fetch(sql, [partner.pk, _prefix(partner), _prefix(partner)])[0]
    return int(direct), int(total), max(int(partners) - 1, 0)


def _signups_by_week(partner: Partner, today: date) -> list[tuple[date, int]]:
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=SIGNUP_WEEKS - 1)
    day, day_params = _day_sql("r.since")
    sql = (
        f"SELECT {day}, COUNT(*) FROM {_REFERRAL} r "  # noqa: S608 - names, not data
        f"JOIN {_PARTNER} p ON p.id = r.partner_id "
        "WHERE r.until IS NULL AND p.path LIKE %s AND r.since >= %s GROUP BY 1"
    )
    weeks: dict[date, int] = defaultdict(int)
    for day_value, n in _fetch(sql, [*day_params, _prefix(partner), _param(_start_of(first))]):
        joined = _as_date(day_value)
        weeks[joined - timedelta(days=joined.weekday())] += int(n)
    return [
        (first + timedelta(weeks=i), weeks.get(first + timedelta(weeks=i), 0))
        for i in range(SIGNUP_WEEKS)
    ]


def _overview_from(snap: Snapshot, partner: Partner, now: datetime) -> Overview:
    today = timezone.localdate(now)
    month_first = today.replace(day=1)
    chart_first = today - timedelta(days=max(CHART_DAYS) - 1)
    direct, total, sub_partners = _counts(partner)
    active_since = now - timedelta(days=ACTIVE_DAYS)
    totals = []
    currencies = set(snap.commissions_before) | set(snap.commissions_by_day)
    for currency in currencies:
        days = snap.commissions_by_day.get(currency, {})
        totals.append(
            CommissionTotals(
                currency=currency,
                today=days.get(today, 0),
                month=sum(v for d, v in days.items() if month_first <= d <= today),
                total=snap.commissions_before.get(currency, 0) + sum(days.values()),
            )
        )
    totals.sort(key=lambda t: (-t.total, t.currency))
    return Overview(
        clients_direct=direct,
        clients_total=total,
        sub_partners=sub_partners,
        active_traders=sum(1 for t in snap.last_trade.values() if t >= active_since),
        lots_month=sum(
            (v for d, v in snap.lots_by_day.items() if d >= month_first), Decimal(0)
        ).quantize(LOTS),
        lots_total=(snap.lots_before + sum(snap.lots_by_day.values(), Decimal(0))).quantize(LOTS),
        flows=snap.flows,
        commissions=totals,
        commissions_by_day={
            currency: sorted((d, v) for d, v in days.items() if d >= chart_first)
            for currency, days in snap.commissions_by_day.items()
        },
        signups_by_week=_signups_by_week(partner, today),
        today=today,
        computed_at=now,
    )


def overview_compute(partner: Partner, *, now: datetime | None = None) -> Overview:
    """The overview straight from the tables (no cache)."""
    now = now or timezone.now()
    return _overview_from(snapshot_take(partner), partner, now)


def overview_for(partner: Partner) -> Overview:
    """The overview from the partner's snapshot plus what came since, which
    is then added to the snapshot (a new snapshot when there is none or it no
    longer fits; a background refresh when it is older than
    :data:`SNAPSHOT_FRESH`)."""
    now = timezone.now()
    stamp = activity_stamp()
    key = _snapshot_key(partner.pk)
    snap = cache.get(key)
    if not _usable(snap, partner, stamp, now):
        snap = snapshot_take(partner, stamp=stamp)
        cache.set(key, snap, SNAPSHOT_TTL)
        return _overview_from(snap, partner, now)
    if now - snap.taken_at > timedelta(seconds=SNAPSHOT_FRESH):
        _schedule_refresh(partner.pk)
    changed = False
    if stamp.deal_id > snap.deal_id:
        # Bounded by the stamp: a row committed after it is the next view's.
        window = {"after_id": snap.deal_id, "upto_id": stamp.deal_id}
        _merge_deals(
            snap,
            _downline_deals_by_day(partner, first_day=snap.first_day, **window),
            _downline_last_trades(partner, since=now - timedelta(days=ACTIVE_DAYS), **window),
        )
        snap.deal_id, changed = stamp.deal_id, True
    if stamp.commission_id > snap.commission_id:
        window = {"after_id": snap.commission_id, "upto_id": stamp.commission_id}
        _merge_commissions(snap, _commissions_by_day(partner, first_day=snap.first_day, **window))
        snap.commission_id, changed = stamp.commission_id, True
    if changed:
        horizon = now - timedelta(days=ACTIVE_DAYS)
        snap.last_trade = {c: t for c, t in snap.last_trade.items() if t >= horizon}
        cache.set(key, snap, SNAPSHOT_TTL)
    return _overview_from(snap, partner, now)


# --- Clients ---------------------------------------------------------------------------

CLIENT_SORTS = {
    "newest": ("Newest first", ("-since", "-id")),
    "oldest": ("Oldest first", ("since", "id")),
    "name": ("Name", ("client__first_name", "client__last_name", "id")),
    "lots": ("Most lots", ("-lots_traded", "-id")),
}
CLIENTS_PAGE_SIZE = 25


@dataclass(frozen=True)
class ClientFilter:
    direct_only: bool = False
    country: str = ""
    traded: bool | None = None  # True: has traded; False: has not; None: either
    sort: str = "newest"


def _deals_since_referral() -> QuerySet[Deal]:
    return Deal.objects.filter(client_id=OuterRef("client_id"), close_time__gte=OuterRef("since"))


def _traded_since_referral() -> Exists:
    """Whether the referral's client has a deal on a live account since the
    referral. The demo check is per deal (a primary-key probe, as in
    :func:`_live_deal_sql`): EXISTS stops at the first live deal, and
    PostgreSQL runs it as a join probing each client's deals; the per-client
    form of the lots would make it hash the whole deal table."""
    demo = TradingAccount.objects.filter(pk=OuterRef("account_id"), is_demo=True)
    return Exists(_deals_since_referral().filter(~Exists(demo)))


def _lots_subquery() -> Subquery:
    """The referral's client's lots on live accounts since the referral (the
    client's demo accounts left out as in :func:`_live_client_deal_sql`)."""
    demo = TradingAccount.objects.filter(user_id=OuterRef(OuterRef("client_id")), is_demo=True)
    lots = (
        _deals_since_referral()
        .exclude(account_id__in=demo.values("id"))
        .order_by()
        .values("client_id")
        .annotate(total=Sum("volume"))
        .values("total")
    )
    return Subquery(lots)


def _clients_filtered(partner: Partner, filters: ClientFilter) -> QuerySet[Referral]:
    qs = downline_referrals(partner)
    if filters.direct_only:
        qs = qs.filter(partner=partner)
    if filters.country:
        qs = qs.filter(client__profile__country=filters.country)
    if filters.traded is not None:
        traded = _traded_since_referral()
        qs = qs.filter(traded if filters.traded else ~traded)
    return qs


def clients_count(partner: Partner, filters: ClientFilter) -> int:
    return _clients_filtered(partner, filters).count()


def clients_page(
    partner: Partner, filters: ClientFilter, *, offset: int, limit: int
) -> list[Referral]:
    """One page of the downline's current referrals, filtered and sorted,
    with the client's name, country and KYC level and ``lots_traded`` (since
    the referral). Two queries: the page's ids (sorting only the referrals,
    and the client's name or lots when sorted by them), then those rows."""
    _, order = CLIENT_SORTS.get(filters.sort, CLIENT_SORTS["newest"])
    ids_qs = _clients_filtered(partner, filters)
    if filters.sort == "lots":
        ids_qs = ids_qs.annotate(lots_traded=_lots_total())
    ids = list(ids_qs.order_by(*order).values_list("id", flat=True)[offset : offset + limit])
    if not ids:
        return []
    rows = (
        Referral.objects.filter(pk__in=ids)
        .select_related("client", "client__profile", "client__kyc__level", "partner__user")
        .only(
            "id",
            "since",
            "source",
            "partner_id",
            "client_id",
            "client__first_name",
            "client__last_name",
            "client__date_joined",
            "client__email",
            "client__profile__country",
            "client__profile__phone",
            "client__kyc__level__number",
            "client__kyc__level__name",
            "partner__id",
            "partner__path",
            "partner__user__first_name",
            "partner__user__last_name",
        )
        .annotate(lots_traded=_lots_total())
    )
    position = {pk: i for i, pk in enumerate(ids)}
    return sorted(rows, key=lambda r: position[r.pk])


def _lots_total() -> Coalesce:
    return Coalesce(
        _lots_subquery(),
        Value(Decimal(0)),
        output_field=DecimalField(max_digits=20, decimal_places=4),
    )


def downline_countries(partner: Partner) -> list[str]:
    """The countries of the downline's clients, for the filter."""
    rows = (
        downline_referrals(partner)
        .exclude(client__profile__country="")
        .values_list("client__profile__country", flat=True)
        .distinct()
        .order_by("client__profile__country")
    )
    return [c for c in rows if c]


def commissions_by_client(
    partner: Partner, client_ids: list[int]
) -> dict[int, list[tuple[str, int]]]:
    """What ``partner`` earned from each of these clients (deals and CPA),
    per currency: one query, each half on its partial unique index (deal
    rows through the clients' deals and ``(deal_id, partner)``, CPA rows on
    ``(client, partner)``)."""
    if not client_ids:
        return {}
    ids = [int(i) for i in client_ids]
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        "SELECT d.client_id, c.currency_id, SUM(c.amount) "  # noqa: S608 - names, not data
        f"FROM {_DEAL} d JOIN {_COMMISSION} c ON c.deal_id = d.id AND c.partner_id = %s "
        f"AND c.kind = %s WHERE d.client_id IN ({marks}) GROUP BY 1, 2 "
        "UNION ALL "
        f"SELECT c.client_id, c.currency_id, SUM(c.amount) FROM {_COMMISSION} c "
        f"WHERE c.partner_id = %s AND c.kind = %s AND c.client_id IN ({marks}) GROUP BY 1, 2"
    )
    params = [partner.pk, Commission.DEAL, *ids, partner.pk, Commission.CPA, *ids]
    sums: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for client_id, currency, amount in _fetch(sql, params):
        sums[int(client_id)][currency] += int(amount or 0)
    return {
        client_id: sorted(by_currency.items(), key=lambda item: (-item[1], item[0]))
        for client_id, by_currency in sums.items()
    }


# --- The tree --------------------------------------------------------------------------

TREE_PERIODS = {"30d": ("30 days", 30), "90d": ("90 days", 90), "all": ("All time", None)}
DEFAULT_TREE_PERIOD = "30d"


@dataclass
class Branch:
    """One child of the node being looked at, with its whole subtree."""

    partner: Partner
    sub_partners: int = 0
    clients: int = 0
    lots: Decimal = Decimal(0)
    commissions: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class TreeLevel:
    node: Partner
    direct: Branch  # the node's own clients (not a sub-partner)
    branches: list[Branch]
    ancestors: list[Partner]  # from the viewer down to the node's parent


def _branch_key_sql(length: int) -> str:
    return f"SUBSTR(p.path, 1, {int(length)})"


def tree_level(viewer: Partner, node: Partner, *, since: datetime | None) -> TreeLevel:
    """The children of ``node`` (inside ``viewer``'s subtree) with, per
    branch: sub-partners, clients, their lots since ``since`` (all time:
    None) and what ``viewer`` earned from them since then. A constant 5
    queries whatever the number of children."""
    if not node.path.startswith(viewer.path):
        raise Http404("No such sub-partner.")
    step = Partner.steplen
    key_len = len(node.path) + step
    children = list(
        Partner.objects.filter(path__startswith=node.path, depth=node.depth + 1)
        .select_related("user")
        .only(
            "id",
            "path",
            "depth",
            "numchild",
            "status",
            "created_at",
            "user__first_name",
            "user__last_name",
        )
        .order_by("path")
    )
    by_key = {c.path: Branch(partner=c) for c in children}
    direct = Branch(partner=node)
    prefix = _prefix(node)
    key = _branch_key_sql(key_len)

    def branch_for(path_key: str, depth_is_node: bool) -> Branch | None:
        return direct if depth_is_node else by_key.get(path_key)

    # Sub-partners per branch.
    for path_key, n in _fetch(
        f"SELECT {key}, COUNT(*) FROM {_PARTNER} p "  # noqa: S608 - names, not data
        "WHERE p.path LIKE %s AND p.depth > %s GROUP BY 1",
        [prefix, node.depth],
    ):
        if path_key in by_key:
            by_key[path_key].sub_partners = int(n) - 1

    # Clients and lots per branch (the node's own clients: key ''). Each
    # client's lots (live accounts) are summed on the covering deal index,
    # then per branch: no join row per deal to sort or hash.
    deal_time = "AND d.close_time >= %s " if since else ""
    deal_params = [_param(since)] if since else []
    rows = _fetch(
        "SELECT x.branch, COUNT(*), COALESCE(SUM(x.lots), 0) FROM ("  # noqa: S608 - names
        f"SELECT CASE WHEN p.depth = %s THEN '' ELSE {key} END AS branch, "
        f"(SELECT SUM(d.volume) FROM {_DEAL} d WHERE d.client_id = r.client_id "
        f"AND d.close_time >= r.since {deal_time}{_live_client_deal_sql('r.client_id')}) AS lots "
        f"FROM {_REFERRAL} r JOIN {_PARTNER} p ON p.id = r.partner_id "
        "WHERE r.until IS NULL AND p.path LIKE %s) x GROUP BY x.branch",
        [node.depth, *deal_params, prefix],
    )
    for path_key, clients, lots in rows:
        branch = branch_for(path_key, path_key == "")
        if branch is not None:
            branch.clients, branch.lots = int(clients), _lots(lots)

    # What the viewer earned from each branch's (current) clients.
    time_sql = "AND c.earned_at >= %s " if since else ""
    rows = _fetch(
        f"SELECT CASE WHEN p.depth = %s THEN '' ELSE {key} END, c.currency_id, SUM(c.amount) "  # noqa: S608 - names, not data
        f"FROM {_COMMISSION} c JOIN {_REFERRAL} r ON r.client_id = c.client_id "
        "AND r.until IS NULL "
        f"JOIN {_PARTNER} p ON p.id = r.partner_id "
        f"WHERE c.partner_id = %s AND c.kind IN (%s, %s) {time_sql}AND p.path LIKE %s "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        [node.depth, viewer.pk, Commission.DEAL, Commission.CPA, *deal_params, prefix],
    )
    for path_key, currency, amount in rows:
        branch = branch_for(path_key, path_key == "")
        if branch is not None:
            branch.commissions.append((currency, int(amount or 0)))

    ancestors = []
    if node.pk != viewer.pk:
        paths = [node.path[:n] for n in range(len(viewer.path), len(node.path), step)]
        ancestors = list(
            Partner.objects.filter(path__in=paths)
            .select_related("user")
            .only("id", "path", "user__first_name", "user__last_name")
            .order_by("path")
        )
    return TreeLevel(node=node, direct=direct, branches=list(by_key.values()), ancestors=ancestors)
