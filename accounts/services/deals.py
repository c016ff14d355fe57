"""Deals (closed trades) into our database: pulled from a platform's deal
feed (:func:`deals_sync_platform`; the beat runs :func:`deals_sync_all`) or
imported from a report file (:func:`deals_import_file`).

Every path ends in the same place. Each record's login is mapped to the
platform's :class:`~accounts.models.TradingAccount` (one query for the logins
of a batch), money is converted to the account's minor units (its
``currency_digits``, ROUND_HALF_EVEN), and the rows go through a temporary
staging table into ``accounts_deal`` with ``INSERT ... SELECT ... ON CONFLICT
(platform_id, ticket) DO NOTHING``: a deal already there is counted, never
written twice, so every ingest can safely be repeated. On PostgreSQL the
staging table is filled with ``COPY`` (psycopg2 ``copy_expert``): the Django
ORM saves a few thousand rows a second, multi-row INSERT ~27,000, COPY
~130,000 (shared/BASELINES.md). SQLite (the embedded default) fills it with
``executemany``; the SQL after that is the same.

Deals of logins we do not know are skipped and counted (and logged), never
attached to a guessed account. Ingests of one platform are serialised by a
lock on its :class:`~accounts.models.Platform` row, so the ``deals.imported``
event an ingest publishes, ``{platform, count, first_id, last_id}``, names an
id range that holds exactly that ingest's deals of that platform (other
platforms' deals may interleave: filter by platform too).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import islice
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from backoffice.events import publish

from ..models import Deal, Platform, TradingAccount, User
from ..platforms import GATEWAYS, gateway_for
from ..platforms.base import DealRecord, PlatformError, PlatformGateway
from ..platforms.files import ReportRefused, platform_timezone, read_report, report_kind

__all__ = [
    "ImportReport",
    "IngestResult",
    "ReportRefused",
    "RowError",
    "deals_import_file",
    "deals_ingest",
    "deals_sync_all",
    "deals_sync_platform",
]

log = logging.getLogger(__name__)

#: Records staged and inserted at a time by :func:`deals_ingest`.
DEFAULT_BATCH = 5_000
#: Deals asked of a platform per ``deals_since`` call.
SYNC_PAGE_SIZE = 10_000
#: Rows of a report file read (and checked) at a time: the memory an import
#: takes is about this many rows, whatever the file's size.
IMPORT_BATCH = 2_000
#: Staged rows of a report moved into the deal table at a time.
IMPORT_INSERT_ROWS = 10_000
#: A failed import's report lists this many problems (and counts them all).
MAX_REPORTED_ERRORS = 100
#: An ingest's result names this many of the unknown logins it skipped.
UNKNOWN_SAMPLE = 20

SIDES = frozenset((Deal.BUY, Deal.SELL))
BIGINT = 2**63 - 1
TEXT_LIMIT = 32
NUMBER_LIMIT = Decimal(10) ** 12  # volume and prices: numeric(16, 4) / numeric(20, 8)
_SCALE = {digits: Decimal(10) ** digits for digits in range(19)}
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

T = TypeVar("T")


# --- Results ----------------------------------------------------------------------


def _lower(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _upper(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class IngestResult:
    """What one ingest (or a sync of several pages) did.

    ``duplicates``: deals that were already there (or twice in the input);
    ``unknown_logins``: deals skipped because no account of the platform has
    their login (``unknown_login_sample`` names a few); ``invalid``: deals
    the platform sent that cannot be stored (a side other than buy/sell, ...),
    skipped and logged; ``first_id``..``last_id``: the ids of the deals added.
    """

    added: int = 0
    duplicates: int = 0
    unknown_logins: int = 0
    first_id: int | None = None
    last_id: int | None = None
    invalid: int = 0
    unknown_login_sample: tuple[str, ...] = ()

    def __add__(self, other: IngestResult) -> IngestResult:
        sample = dict.fromkeys(self.unknown_login_sample + other.unknown_login_sample)
        return IngestResult(
            added=self.added + other.added,
            duplicates=self.duplicates + other.duplicates,
            unknown_logins=self.unknown_logins + other.unknown_logins,
            first_id=_lower(self.first_id, other.first_id),
            last_id=_upper(self.last_id, other.last_id),
            invalid=self.invalid + other.invalid,
            unknown_login_sample=tuple(sample)[:UNKNOWN_SAMPLE],
        )

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        text = f"{self.added} added, {self.duplicates} already there"
        if self.unknown_logins:
            logins = ", ".join(self.unknown_login_sample)
            text += f", {self.unknown_logins} of unknown logins ({logins})"
        if self.invalid:
            text += f", {self.invalid} invalid"
        return text


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass
class ImportReport:
    """The outcome of a report file import: all of it saved, or nothing.

    ``duplicates``: rows whose ticket was imported before (by an earlier
    file or the platform's feed); ``errors``: the first
    :data:`MAX_REPORTED_ERRORS` problems by line, ``error_count`` all of them.
    """

    platform: str
    filename: str
    kind: str
    rows: int = 0
    added: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    first_id: int | None = None
    last_id: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def errors_not_shown(self) -> int:
        return self.error_count - len(self.errors)

    def summary(self) -> str:
        if not self.ok:
            bad = f"{self.error_count} bad row{'s' if self.error_count != 1 else ''}"
            return f"Nothing was imported: {bad} among {self.rows} rows."
        return f"{self.added} added, {self.duplicates} already imported."

    def add_error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line, message))


# --- The common path --------------------------------------------------------------


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _lock(platform: Platform) -> Platform:
    """The platform's row, locked until the transaction ends: one ingest of a
    platform at a time."""
    return Platform.objects.select_for_update().get(pk=platform.pk)


class _Accounts:
    """The platform's accounts by login: (account id, client id, currency
    digits). One query per batch for the logins not seen yet; forgets all
    when it grows past ``limit`` (a report of very many accounts)."""

    def __init__(self, platform_id: int, limit: int = 100_000) -> None:
        self.platform_id = platform_id
        self.limit = limit
        self.known: dict[str, tuple[int, int, int]] = {}
        self.unknown: set[str] = set()

    def lookup(self, logins: set[str]) -> None:
        if len(self.known) + len(self.unknown) + len(logins) > self.limit:
            self.known.clear()
            self.unknown.clear()
        todo = logins - self.known.keys() - self.unknown
        if not todo:
            return
        rows = TradingAccount.objects.filter(
            platform_id=self.platform_id, login__in=todo
        ).values_list("login", "id", "user_id", "currency_digits")
        for login, account_id, client_id, digits in rows:
            self.known[login] = (account_id, client_id, digits)
        self.unknown.update(todo - self.known.keys())


def _minor(value: Any, digits: int, name: str) -> int:
    """Major units → minor units of an account with ``digits`` decimals,
    ROUND_HALF_EVEN (the same as ``backoffice.money.to_minor(value, digits,
    rounding=ROUND_HALF_EVEN)``, without its checks on the hot path)."""
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    if not value.is_finite():
        raise ValueError(f"{name}: {value} is not an amount")
    minor = int((value * _SCALE[digits]).to_integral_value(ROUND_HALF_EVEN))
    if not -BIGINT <= minor <= BIGINT:
        raise ValueError(f"{name}: too large")
    return minor


def _number(value: Any, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    if not value.is_finite() or abs(value) >= NUMBER_LIMIT:
        raise ValueError(f"{name}: {value} is out of range")
    return value


def _moment(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{name}: not a date and time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # naive: UTC


def _stage_row(line: int, r: DealRecord, account: tuple[int, int, int]) -> tuple:
    """One staging row from a record; ValueError says what cannot be stored."""
    account_id, client_id, digits = account
    ticket = int(r.ticket)
    if not 0 < ticket <= BIGINT:
        raise ValueError(f"ticket: {ticket} is out of range")
    side = r.side.lower() if isinstance(r.side, str) else r.side
    if side not in SIDES:
        raise ValueError(f"side: unknown side {r.side!r} (buy or sell)")
    symbol = str(r.symbol).strip()
    if not symbol or len(symbol) > TEXT_LIMIT:
        raise ValueError(f"symbol: {symbol[:40]!r} is empty or too long")
    return (
        line,
        ticket,
        account_id,
        client_id,
        symbol,
        side,
        _number(r.volume, "volume"),
        _moment(r.open_time, "open_time"),
        _moment(r.close_time, "close_time"),
        _number(r.open_price, "open_price"),
        _number(r.close_price, "close_price"),
        _minor(r.profit, digits, "profit"),
        _minor(r.commission, digits, "commission"),
        _minor(r.swap, digits, "swap"),
    )


def _copy_line(row: tuple) -> str:
    """One row in COPY's text format. Times go as Unix time (seconds, a
    float: exact to the microsecond for dates before 2200), several
    times cheaper to write than ISO text; ``to_timestamp`` reads them."""
    line, ticket, account, client, symbol, side, volume, opened, closed, op, cp, p, c, s = row
    if "\\" in symbol or "\t" in symbol or "\n" in symbol or "\r" in symbol:
        symbol = symbol.translate(_COPY_ESCAPES)
    # !s: str() of a Decimal is three times quicker than its __format__.
    return (
        f"{line}\t{ticket}\t{account}\t{client}\t{symbol}\t{side}\t{volume!s}\t"
        f"{opened.timestamp()!r}\t{closed.timestamp()!r}\t{op!s}\t{cp!s}\t{p}\t{c}\t{s}\n"
    )


class _TempTable:
    """A temporary table of this transaction, created afresh (on PostgreSQL
    it also goes at commit), filled with ``COPY`` on PostgreSQL and
    ``executemany`` elsewhere."""

    NAME = ""
    #: (column, PostgreSQL type, SQLite type)
    COLUMNS: tuple[tuple[str, str, str], ...] = ()

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"
        columns = ", ".join(
            f"{name} {pg if self.postgres else lite}" for name, pg, lite in self.COLUMNS
        )
        schema = "pg_temp" if self.postgres else "temp"
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {schema}.{self.NAME}")
            cur.execute(
                f"CREATE TEMPORARY TABLE {self.NAME} ({columns})"
                + (" ON COMMIT DROP" if self.postgres else "")
            )
        self.rows = 0

    def copy_line(self, row: tuple) -> str:
        return "\t".join(map(str, row)) + "\n"

    def sqlite_row(self, row: tuple) -> tuple:
        return row

    def add(self, rows: list[tuple]) -> None:
        if not rows:
            return
        names = ", ".join(name for name, _, _ in self.COLUMNS)
        with connection.cursor() as cur:
            if self.postgres:
                # Bytes: a StringIO would hold the text again at 4 bytes a character.
                data = io.BytesIO("".join(map(self.copy_line, rows)).encode())
                cur.cursor.copy_expert(f"COPY {self.NAME} ({names}) FROM STDIN", data)
            else:
                marks = ", ".join(["%s"] * len(self.COLUMNS))
                cur.executemany(
                    f"INSERT INTO {self.NAME} ({names}) VALUES ({marks})",  # noqa: S608 - constants
                    list(map(self.sqlite_row, rows)),
                )
        self.rows += len(rows)

    def clear(self) -> None:
        with connection.cursor() as cur:
            cur.execute(f"{'TRUNCATE' if self.postgres else 'DELETE FROM'} {self.NAME}")
        self.rows = 0

    def drop(self) -> None:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE {self.NAME}")


class _Stage(_TempTable):
    """The rows on their way to the deal table: ``add`` them (COPY), then
    ``insert`` moves them into ``accounts_deal`` in one statement, skipping
    tickets already there."""

    NAME = "deal_ingest_stage"
    # Times as Unix time on PostgreSQL: see _copy_line.
    COLUMNS = (
        ("line", "bigint", "integer"),
        ("ticket", "bigint", "integer"),
        ("account_id", "bigint", "integer"),
        ("client_id", "bigint", "integer"),
        ("symbol", "text", "text"),
        ("side", "text", "text"),
        ("volume", "numeric", "decimal"),
        ("open_time", "double precision", "datetime"),
        ("close_time", "double precision", "datetime"),
        ("open_price", "numeric", "decimal"),
        ("close_price", "numeric", "decimal"),
        ("profit", "bigint", "integer"),
        ("commission", "bigint", "integer"),
        ("swap", "bigint", "integer"),
    )
    # The deal table's columns filled from the stage, in COLUMNS[1:] order.
    DEAL_FIELDS = tuple(name for name, _, _ in COLUMNS[1:])

    copy_line = staticmethod(_copy_line)

    def sqlite_row(self, r: tuple) -> tuple:
        adapt = connection.ops.adapt_datetimefield_value
        return (*r[:6], str(r[6]), adapt(r[7]), adapt(r[8]), str(r[9]), str(r[10]), *r[11:])

    def insert(self, platform_id: int, now: datetime) -> tuple[int, int | None, int | None]:
        """Move the staged rows into the deal table in their line order, skipping
        (platform, ticket) pairs already there: (added, first id, last id)."""
        if not self.rows:
            return 0, None, None
        opts = Deal._meta
        qn = connection.ops.quote_name
        column = {f: qn(opts.get_field(f.removesuffix("_id")).column) for f in self.DEAL_FIELDS}
        target = [qn(opts.get_field("platform").column), column["ticket"]]
        deal_columns = ", ".join(
            [target[0], *column.values(), qn(opts.get_field("imported_at").column)]
        )
        values = ", ".join(
            f"to_timestamp({name})" if self.postgres and name.endswith("_time") else name
            for name in self.DEAL_FIELDS
        )
        sql = (
            f"INSERT INTO {qn(opts.db_table)} ({deal_columns}) "  # noqa: S608 - names, not data
            f"SELECT %s, {values}, %s FROM {self.NAME} "
            # WHERE true: SQLite would read "ON CONFLICT" as a join's ON otherwise.
            f"WHERE true ORDER BY line "
            f"ON CONFLICT ({', '.join(target)}) DO NOTHING RETURNING {qn(opts.pk.column)}"
        )
        params = [platform_id, connection.ops.adapt_datetimefield_value(now)]
        with connection.cursor() as cur:
            if self.postgres:
                summary = "SELECT COUNT(*), MIN(id), MAX(id) FROM added"
                cur.execute(f"WITH added AS ({sql}) {summary}", params)  # noqa: S608
                return tuple(cur.fetchone())
            cur.execute(sql, params)
            added, first, last = 0, None, None
            for (pk,) in cur:  # one at a time: a big import's ids would fill memory
                added += 1
                first = pk if first is None or pk < first else first
                last = pk if last is None or pk > last else last
        return added, first, last


class _Tickets(_TempTable):
    """Every good row's (line, ticket) of a report file, to find a ticket
    that is in the file twice, and where it was first."""

    NAME = "deal_import_tickets"
    COLUMNS = (("line", "bigint", "integer"), ("ticket", "bigint", "integer"))

    def duplicates(self, limit: int) -> tuple[int, list[tuple[int, int, int]]]:
        """How many rows repeat a ticket of an earlier row, and the first
        ``limit`` of them as (line, ticket, line of its first occurrence)."""
        with connection.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) - COUNT(DISTINCT ticket) FROM {self.NAME}")  # noqa: S608
            count = cur.fetchone()[0]
            if not count:
                return 0, []
            cur.execute(
                "SELECT line, ticket, first_line FROM (SELECT line, ticket, "  # noqa: S608
                f"MIN(line) OVER (PARTITION BY ticket) AS first_line FROM {self.NAME}) s "
                "WHERE line > first_line ORDER BY line LIMIT %s",
                [limit],
            )
            return count, list(cur.fetchall())


def _announce(platform: Platform, result: IngestResult) -> None:
    if result.added:
        publish(
            "deals.imported",
            platform,
            {
                "platform": platform.identifier,
                "count": result.added,
                "first_id": result.first_id,
                "last_id": result.last_id,
            },
        )
    if result.unknown_logins:
        log.warning(
            "deals of %s: %d skipped, their logins are not accounts here (%s)",
            platform.identifier,
            result.unknown_logins,
            ", ".join(result.unknown_login_sample),
        )


def _ingest_locked(
    platform: Platform, records: Iterable[DealRecord], batch_size: int
) -> IngestResult:
    """Ingest with the platform's row already locked; no event."""
    accounts = _Accounts(platform.pk)
    stage = _Stage()
    now = timezone.now()
    total = IngestResult()
    seq = 0
    for batch in _batched(records, batch_size):
        accounts.lookup({r.login for r in batch})
        known = accounts.known
        rows = []
        unknown: dict[str, None] = {}
        skipped = invalid = 0
        for record in batch:
            account = known.get(record.login)
            if account is None:
                skipped += 1
                unknown.setdefault(str(record.login))
                continue
            try:
                rows.append(_stage_row(seq, record, account))
            except (ValueError, TypeError, ArithmeticError, AttributeError) as exc:
                invalid += 1
                log.warning(
                    "deal %r of %s cannot be stored: %s", record.ticket, platform.identifier, exc
                )
                continue
            seq += 1
        if stage.rows:
            stage.clear()
        stage.add(rows)
        added, first_id, last_id = stage.insert(platform.pk, now)
        total += IngestResult(
            added=added,
            duplicates=len(rows) - added,
            unknown_logins=skipped,
            first_id=first_id,
            last_id=last_id,
            invalid=invalid,
            unknown_login_sample=tuple(unknown)[:UNKNOWN_SAMPLE],
        )
    stage.drop()
    return total


@transaction.atomic
def deals_ingest(
    *, platform: Platform, records: Iterable[DealRecord], batch_size: int = DEFAULT_BATCH
) -> IngestResult:
    """Store the platform's deals ``records`` (idempotent by ticket) and
    publish one ``deals.imported`` event for those added.

    Holds the platform's row lock until the caller's transaction ends."""
    platform = _lock(platform)
    result = _ingest_locked(platform, records, batch_size)
    _announce(platform, result)
    return result


# --- The platforms' deal feeds ----------------------------------------------------


def _note_error(platform: Platform, message: str) -> None:
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S UTC")
    Platform.objects.filter(pk=platform.pk).update(last_error=f"{stamp}: {message}"[:2000])


def deals_sync_platform(*, platform: Platform, page_size: int = SYNC_PAGE_SIZE) -> IngestResult:
    """Pull the platform's new deals page by page from its stored cursor
    until the platform says there is no more.

    The gateway is called outside any transaction (a network call must not
    hold our locks); each page's deals, the new cursor and ``deals_synced_at``
    are then saved in one transaction, so a crash between pages loses
    nothing and repeats nothing. If another sync moved the cursor meanwhile,
    this one stops (its page is that sync's to save). A
    :class:`PlatformError` is written to ``platform.last_error`` and raised;
    a successful page clears it."""
    gateway = gateway_for(platform)
    cursor = Platform.objects.filter(pk=platform.pk).values_list("deals_cursor", flat=True).get()
    total = IngestResult()
    while True:
        try:
            page = gateway.deals_since(cursor, limit=page_size)
            if len(page.cursor) > Platform._meta.get_field("deals_cursor").max_length:
                raise PlatformError(f"The platform's deal cursor is too long: {page.cursor[:40]}…")
            if page.more and page.cursor == cursor:
                raise PlatformError(
                    "The platform says there are more deals but its cursor did not move."
                )
        except PlatformError as exc:
            _note_error(platform, str(exc))
            raise
        with transaction.atomic():
            locked = _lock(platform)
            if locked.deals_cursor != cursor:
                log.info(
                    "deals of %s: another sync moved the cursor; stopping", platform.identifier
                )
                break
            # The page is one batch: its size is the platform's to choose.
            result = _ingest_locked(locked, page.deals, max(len(page.deals), 1))
            _announce(locked, result)
            now = timezone.now()
            Platform.objects.filter(pk=locked.pk).update(
                deals_cursor=page.cursor, deals_synced_at=now, last_error=""
            )
        platform.deals_cursor, platform.deals_synced_at, platform.last_error = page.cursor, now, ""
        total += result
        cursor = page.cursor
        if not page.more:
            break
    return total


def _has_deal_feed(gateway_class: type[PlatformGateway]) -> bool:
    if not getattr(gateway_class, "deals_feed", True):
        return False  # the file gateway: deals come only from uploaded reports
    return (
        gateway_class.live_operations
        or gateway_class.deals_since is not PlatformGateway.deals_since
    )


def deals_sync_all() -> dict[str, str]:
    """Sync every enabled platform that has a deal feed, each from its own
    cursor; one platform's failure is recorded on its row and never stops
    the others. Returns ``{identifier: "ok: ..." or "error: ..."}``."""
    outcome: dict[str, str] = {}
    for platform in Platform.objects.filter(enabled=True).order_by("identifier"):
        try:
            if not _has_deal_feed(GATEWAYS.get(platform.kind)):
                continue
            result = deals_sync_platform(platform=platform)
        except PlatformError as exc:  # already on the platform's row
            outcome[platform.identifier] = f"error: {exc}"
        except Exception as exc:
            log.exception("deal sync of %s failed", platform.identifier)
            _note_error(platform, f"internal error: {exc}")
            outcome[platform.identifier] = f"error: {exc}"
        else:
            outcome[platform.identifier] = f"ok: {result.describe()}"
    return outcome


# --- Report files -----------------------------------------------------------------


def deals_import_file(*, actor: User, platform: Platform, file, filename: str) -> ImportReport:
    """Import a deal report (CSV or XLSX, see ``accounts.platforms.files``)
    for ``platform``: all of it or nothing.

    The file is read as a stream and every row checked (columns, numbers,
    side, times, login known on the platform, ticket not twice in the
    file); one transaction holds the whole import.
    While no row was bad, each batch is saved as it comes, tickets imported
    before counted and skipped (the same file twice adds nothing); the
    first bad row stops the saving, the rest is only checked, and the
    transaction is rolled back: the report lists the first problems by line.
    A successful import publishes ``deals.imported`` and
    ``deals.file_imported`` (with the actor). A file that is not a deal
    report at all (its content, not its name, decides; larger than
    ``DEAL_IMPORT_MAX_BYTES``; no header) raises :class:`ReportRefused`."""
    started = time.monotonic()
    kind = report_kind(file, filename, max_bytes=settings.DEAL_IMPORT_MAX_BYTES)
    tz = platform_timezone(platform)
    report = ImportReport(platform=platform.identifier, filename=filename, kind=kind)
    with transaction.atomic():
        locked = _lock(platform)
        stage, tickets = _Stage(), _Tickets()
        accounts = _Accounts(locked.pk)
        now = timezone.now()
        saved = IngestResult()

        def save_staged() -> None:
            nonlocal saved
            added, first_id, last_id = stage.insert(locked.pk, now)
            saved += IngestResult(added, stage.rows - added, 0, first_id, last_id)
            stage.clear()

        for batch in _batched(read_report(file, kind, tz=tz), IMPORT_BATCH):
            rows = _checked_report_rows(batch, accounts, report, locked)
            tickets.add([row[:2] for row in rows])
            if report.ok:  # so far: saved as we go, rolled back if a later row is bad
                stage.add(rows)
                if stage.rows >= IMPORT_INSERT_ROWS:
                    save_staged()
        if report.ok and stage.rows:
            save_staged()
        if not report.rows:
            raise ReportRefused("The file holds no deals, only a header.")
        extra, duplicated = tickets.duplicates(MAX_REPORTED_ERRORS)
        if extra:
            _merge_duplicates(report, extra, duplicated)
        if not report.ok:
            transaction.set_rollback(True)
        else:
            stage.drop()
            tickets.drop()
            report.added, report.duplicates = saved.added, saved.duplicates
            report.first_id, report.last_id = saved.first_id, saved.last_id
            _announce(locked, saved)
            publish(
                "deals.file_imported",
                locked,
                {
                    "platform": locked.identifier,
                    "filename": filename[:200],
                    "format": kind,
                    "rows": report.rows,
                    "added": report.added,
                    "duplicates": report.duplicates,
                    "first_id": report.first_id,
                    "last_id": report.last_id,
                },
                actor=actor,
            )
    report.seconds = time.monotonic() - started
    return report


def _checked_report_rows(
    batch: list[tuple[int, tuple | str]],
    accounts: _Accounts,
    report: ImportReport,
    platform: Platform,
) -> list[tuple]:
    """One batch of a report's rows checked against the platform's accounts
    (their values were checked by the reader): the staging rows of the good
    ones; the bad ones go into the report."""
    accounts.lookup({values[1] for _, values in batch if not isinstance(values, str)})
    known = accounts.known
    rows = []
    append = rows.append
    for line, values in batch:
        if isinstance(values, str):
            report.add_error(line, values)
            continue
        ticket, login, symbol, side, volume, opened, closed, op, cp, profit, commission, swap = (
            values
        )
        account = known.get(login)
        if account is None:
            report.add_error(line, f"login: no account {login!r} on {platform.name}")
            continue
        account_id, client_id, digits = account
        # _minor() inlined: this loop runs once per row of a file of millions.
        scale = _SCALE[digits]
        profit = int((profit * scale).to_integral_value(ROUND_HALF_EVEN))
        commission = (
            int((commission * scale).to_integral_value(ROUND_HALF_EVEN)) if commission else 0
        )
        swap = int((swap * scale).to_integral_value(ROUND_HALF_EVEN)) if swap else 0
        if (
            -BIGINT <= profit <= BIGINT
            and -BIGINT <= commission <= BIGINT
            and -BIGINT <= swap <= BIGINT
        ):
            append(
                (
                    line,
                    ticket,
                    account_id,
                    client_id,
                    symbol,
                    side,
                    volume,
                    opened,
                    closed,
                    op,
                    cp,
                    profit,
                    commission,
                    swap,
                )
            )
        else:
            report.add_error(
                line, "profit, commission or swap: too large for the account's currency"
            )
    report.rows += len(batch)
    return rows


def _merge_duplicates(
    report: ImportReport, extra: int, duplicated: list[tuple[int, int, int]]
) -> None:
    """Add the in-file duplicate tickets to the report's errors, in line order."""
    errors = report.errors + [
        RowError(line, f"ticket: {ticket} is already on line {first} of this file")
        for line, ticket, first in duplicated
    ]
    report.errors = sorted(errors, key=lambda e: e.line)[:MAX_REPORTED_ERRORS]
    report.error_count += extra
