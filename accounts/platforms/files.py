"""Deal reports from files: the ``file`` gateway and a streaming reader.

A platform of kind ``file`` (:class:`FileImportGateway`) is reached by no
network: its deals arrive only as report files (CSV or XLSX) that staff
upload in the admin; ``accounts.services.deals.deals_import_file`` checks
and saves them. The same import works for any platform (a historical report
of a MetaTrader server, say): deals are idempotent by (platform, ticket).

How django-import-export is and is not used
-------------------------------------------
- ``accounts.resources.DealResource`` is the definition of a report's
  columns (:data:`~accounts.resources.DealResource.REPORT_COLUMNS`); the
  admin's export of deals goes through it (``ExportMixin``), so an exported
  file can be imported back. Numbers that are not plain decimals get a
  second chance through its ``DecimalWidget`` (locale separators).
- The import does **not** go through ``Resource.import_data``: that reads the
  whole file into a tablib ``Dataset`` in memory, then saves (and, for its
  preview, diffs) row by row through the ORM: hundreds of rows a second, and
  a 200 MB report would take gigabytes. Here the file is read as a stream,
  one row at a time (the ``csv`` module over the upload in text mode;
  openpyxl in read-only mode for XLSX), and the service writes in batches
  (``COPY`` on PostgreSQL). Memory stays at one batch, whatever the size.

The reader refuses a file by its content, not its name: an XLSX workbook is a
ZIP archive holding ``xl/workbook.xml``; anything else must be UTF-8 text
without NUL bytes whose first line names the report's columns. A file whose
name says one format while its content is the other is refused too.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..resources import DealResource
from .base import DealsPage, PlatformError, PlatformGateway

CSV = "csv"
XLSX = "xlsx"

COLUMNS = DealResource.REPORT_COLUMNS
OPTIONAL = frozenset(DealResource.OPTIONAL_COLUMNS)
SIDES = ("buy", "sell")
MAX_TICKET = 2**63 - 1
# The deal table's columns: max_digits / decimal_places.
VOLUME_PLACES, PRICE_PLACES = 4, 8
VOLUME_LIMIT, PRICE_LIMIT = Decimal(10) ** 12, Decimal(10) ** 12
MONEY_LIMIT = Decimal(10) ** 15
TEXT_LIMIT = 32  # symbol and login
SNIFF_BYTES = 64 * 1024
# An XLSX unpacks to many times its size; more than this many bytes per byte
# of the size cap is a ZIP bomb, not a deal report.
UNPACKED_RATIO = 20

_MAGIC = {
    b"MZ": "a Windows program",
    b"\x7fELF": "a program",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) or Office file: save it as .xlsx or CSV",
    b"\x89PNG": "an image",
    b"\xff\xd8\xff": "an image",
    b"GIF8": "an image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


class ReportRefused(Exception):
    """The file as a whole cannot be read as a deal report (wrong type, too
    large, no header with the report's columns, ...); nothing was saved."""


class FileImportGateway(PlatformGateway):
    """A platform whose deals come only from report files uploaded in the
    admin. Accounts cannot be opened or funded through it, and it has no
    deal feed to pull (``deals_sync_all`` skips it)."""

    label = "File import of deal reports (CSV or XLSX)"
    live_operations = False
    #: No feed to pull: ``deals_since`` is always empty.
    deals_feed = False

    def _refuse(self, *args, **kwargs):
        raise PlatformError(
            "This platform only receives deal reports from files; it has no accounts "
            "to open or fund.",
            permanent=True,
        )

    account_create = _refuse
    leverage_change = _refuse
    password_change = _refuse
    balance_operation = _refuse
    account_state = _refuse

    def balance_operation_find(self, *, login: str, key: str) -> str | None:
        return None  # nothing is ever credited or debited here

    def deals_since(self, cursor: str, *, limit: int = 10_000) -> DealsPage:
        return DealsPage([], cursor=cursor, more=False)


# --- What kind of file ------------------------------------------------------------


def _raw(file):
    """The binary stream under a Django ``File``/``UploadedFile``."""
    return getattr(file, "file", file)


def report_kind(file, filename: str, *, max_bytes: int) -> str:
    """``"csv"`` or ``"xlsx"`` by the file's content; :class:`ReportRefused`
    for anything else, for a name that contradicts the content, and for a
    file (or an XLSX unpacked) larger than the cap."""
    size = getattr(file, "size", None)
    if size is None:
        raw = _raw(file)
        raw.seek(0, io.SEEK_END)
        size = raw.tell()
    if size > max_bytes:
        raise ReportRefused(
            f"The file is {_megabytes(size)}; at most {_megabytes(max_bytes)} can be imported."
        )
    if size == 0:
        raise ReportRefused("The file is empty.")
    raw = _raw(file)
    raw.seek(0)
    head = raw.read(SNIFF_BYTES)
    raw.seek(0)
    kind = _kind_of(raw, head, max_bytes)
    named = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if named in (CSV, XLSX) and named != kind:
        content = "an XLSX workbook" if kind == XLSX else "CSV text"
        raise ReportRefused(
            f"The file is named .{named} but it is {content}; nothing was imported."
        )
    return kind


def _kind_of(raw, head: bytes, max_bytes: int) -> str:
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(raw) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ReportRefused("The file is a damaged ZIP archive, not an XLSX workbook.") from exc
        finally:
            raw.seek(0)
        names = {info.filename for info in infos}
        if "xl/workbook.xml" not in names or "[Content_Types].xml" not in names:
            raise ReportRefused("The file is a ZIP archive, not an XLSX workbook.")
        if sum(info.file_size for info in infos) > max_bytes * UNPACKED_RATIO:
            raise ReportRefused("The workbook unpacks to far more than a deal report could.")
        return XLSX
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise ReportRefused(f"The file is {what}, not a CSV or XLSX deal report.")
    if b"\x00" in head:
        raise ReportRefused(
            "The file is not text (it holds NUL bytes): not a CSV or XLSX deal report. "
            "From Excel, save it as “CSV UTF-8” or .xlsx."
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise ReportRefused(
            "The file is not UTF-8 text. From Excel, save it as “CSV UTF-8” or .xlsx."
        ) from exc
    return CSV


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MB"


def platform_timezone(platform) -> tzinfo:
    """The time zone of naive times in the platform's reports: its
    ``timezone`` setting (e.g. ``Europe/Athens``, a MetaTrader server's
    time), UTC by default."""
    name = (platform.settings or {}).get("timezone") or "UTC"
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportRefused(
            f"The platform's timezone setting {name!r} is not a time zone."
        ) from exc


# --- Reading rows -----------------------------------------------------------------


def _column_key(name: Any) -> str:
    return str(name or "").strip().lower().replace(" ", "_").replace("-", "_")


def _positions(header: list[Any]) -> list[int | None]:
    """For each report column, its index in the file's header (``None`` for
    an absent optional column); :class:`ReportRefused` for a missing one."""
    keys = [_column_key(h) for h in header]
    positions: list[int | None] = []
    missing = []
    for column in COLUMNS:
        if column in keys:
            positions.append(keys.index(column))
        elif column in OPTIONAL:
            positions.append(None)
        else:
            missing.append(column)
    if missing:
        raise ReportRefused(
            f"Line 1: the header has no column {', '.join(missing)}. A deal report's columns "
            f"are: {', '.join(COLUMNS)} (commission and swap may be left out)."
        )
    return positions


def _csv_rows(file) -> Iterator[tuple[int, list[Any]]]:
    text = io.TextIOWrapper(_raw(file), encoding="utf-8-sig", newline="")
    try:
        header_line = text.readline()
        delimiter = max(",;\t", key=lambda d: sum(k in COLUMNS for k in _split(header_line, d)))
        reader = csv.reader(itertools.chain([header_line], text), delimiter=delimiter)
        try:
            header = next(reader)
            yield 1, header
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise ReportRefused(
                f"Line {reader.line_num + 1}: the file is not UTF-8 text from here on; "
                "nothing was imported."
            ) from exc
        except csv.Error as exc:
            raise ReportRefused(f"Line {reader.line_num}: {exc}; nothing was imported.") from exc
    finally:
        if not text.buffer.closed:
            text.detach()  # the upload stays open for its owner


def _split(line: str, delimiter: str) -> list[str]:
    return [_column_key(cell) for cell in next(csv.reader([line], delimiter=delimiter), [])]


def _xlsx_rows(file) -> Iterator[tuple[int, tuple[Any, ...]]]:
    import openpyxl  # a heavy import, only when an XLSX comes

    raw = _raw(file)
    raw.seek(0)
    try:
        workbook = openpyxl.load_workbook(raw, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken workbook
        raise ReportRefused(f"The XLSX workbook cannot be read ({exc}).") from exc
    try:
        sheet = workbook.worksheets[0]
        # Read-only mode yields empty rows for gaps, so the count is the line.
        yield from enumerate(sheet.iter_rows(values_only=True), start=1)
    finally:
        workbook.close()


#: A row's values in :class:`DealRecord` field order (``DealRecord(*values)``):
#: a tuple, because a frozen dataclass costs microseconds a row to build.
Values = tuple


def read_report(file, kind: str, *, tz: tzinfo) -> Iterator[tuple[int, Values | str]]:
    """Each data row of a deal report, in order: ``(line, values)`` (checked,
    in :class:`DealRecord` field order) or ``(line, "what is wrong with it")``.
    Blank rows are skipped. Raises :class:`ReportRefused` for a file that is
    not a report (checked before the first row is yielded) or that breaks
    off unreadably."""
    rows = _xlsx_rows(file) if kind == XLSX else _csv_rows(file)
    try:
        yield from _report_rows(rows, kind, tz)
    finally:
        rows.close()  # now, while the file is still open


def _report_rows(rows: Iterator, kind: str, tz: tzinfo) -> Iterator[tuple[int, Values | str]]:
    for _line, header in rows:
        positions = _positions(list(header))
        break
    else:
        raise ReportRefused("The file is empty.")
    present = [i for i in positions if i is not None]
    pick = itemgetter(*present)
    absent = [n for n, i in enumerate(positions) if i is None]
    fast = kind == CSV  # every cell is text: the quick parser first
    # Naive times in UTC parse quickest with the offset written on.
    suffix = "+00:00" if tz is UTC else ""
    for line, cells in rows:
        try:
            values = pick(cells)
        except IndexError:  # a short row: the careful parser says what is missing
            values = tuple(
                cells[i] if i is not None and i < len(cells) else None for i in positions
            )
        else:
            if absent:
                values = list(values)
                for n in absent:
                    values.insert(n, None)
        if fast:
            try:
                parsed = _parse_text_row(values, tz, suffix)
            except _SLOW_PATH:
                pass
            else:
                yield line, parsed
                continue
        if all(_blank(c) for c in cells):
            continue
        yield line, parse_row(values, tz)


_SIDE_TEXT = {
    "buy": "buy",
    "sell": "sell",
    "Buy": "buy",
    "Sell": "sell",
    "BUY": "buy",
    "SELL": "sell",
}
_ZERO = Decimal(0)


def _parse_text_row(v, tz: tzinfo, suffix: str) -> Values:
    """The quick parser for a row of text cells that is entirely right: any
    exception sends the row to :func:`parse_row`, which says what is wrong
    (or accepts what this one is too strict for, such as spaces)."""
    ticket_text = v[0]
    if not ticket_text.isdigit():
        raise ValueError
    ticket = int(ticket_text)
    login, symbol = v[1], v[2]
    if not (0 < ticket <= MAX_TICKET and 0 < len(login) <= TEXT_LIMIT >= len(symbol) > 0):
        raise ValueError
    if login != login.strip() or symbol != symbol.strip():
        raise ValueError
    side = _SIDE_TEXT[v[3]]
    volume, open_price, close_price = Decimal(v[4]), Decimal(v[7]), Decimal(v[8])
    if not (
        _ZERO < volume < VOLUME_LIMIT
        and _ZERO < open_price < PRICE_LIMIT
        and _ZERO < close_price < PRICE_LIMIT
        and volume.quantize(_QUANTA[VOLUME_PLACES]) == volume
        and open_price.quantize(_QUANTA[PRICE_PLACES]) == open_price
        and close_price.quantize(_QUANTA[PRICE_PLACES]) == close_price
    ):
        raise ValueError
    opened, closed = v[5], v[6]
    if opened[4:5] == ".":
        opened = f"{opened[:4]}-{opened[5:7]}-{opened[8:]}"
    if closed[4:5] == ".":
        closed = f"{closed[:4]}-{closed[5:7]}-{closed[8:]}"
    if suffix:  # an aware time ("...Z", "...+02:00") fails here: the careful parser takes it
        open_time = datetime.fromisoformat(opened + suffix)
        close_time = datetime.fromisoformat(closed + suffix)
    else:
        open_time = datetime.fromisoformat(opened)
        close_time = datetime.fromisoformat(closed)
        if open_time.tzinfo is None:
            open_time = open_time.replace(tzinfo=tz)
        if close_time.tzinfo is None:
            close_time = close_time.replace(tzinfo=tz)
    if close_time < open_time:
        raise ValueError
    profit = Decimal(v[9])
    commission = Decimal(v[10]) if v[10] else _ZERO
    swap = Decimal(v[11]) if v[11] else _ZERO
    if not (
        abs(profit) < MONEY_LIMIT and abs(commission) < MONEY_LIMIT and abs(swap) < MONEY_LIMIT
    ):
        raise ValueError
    return (
        ticket,
        login,
        symbol,
        side,
        volume,
        open_time,
        close_time,
        open_price,
        close_price,
        profit,
        commission,
        swap,
    )


# --- Values -----------------------------------------------------------------------


class _Bad(ValueError):
    pass


# What the quick parser raises on a row it cannot take as it is.
_SLOW_PATH = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError)


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


_WIDGETS = DealResource.report_widgets()
_QUANTA = {places: Decimal(1).scaleb(-places) for places in (VOLUME_PLACES, PRICE_PLACES)}


def _decimal(raw: Any, column: str) -> Decimal:
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, bool):
        raise _Bad("not a number")
    elif isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        value = Decimal(repr(raw))  # what the cell shows, not the binary double
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            value = Decimal(text)
        except InvalidOperation:
            try:  # the widget knows the locale's separators
                value = _WIDGETS[column].clean(text)
            except (InvalidOperation, ValueError, TypeError):
                raise _Bad(f"{text[:40]!r} is not a number") from None
    else:
        raise _Bad("not a number")
    if value is None or not value.is_finite():
        raise _Bad(f"{str(raw)[:40]!r} is not a number")
    return value


def _bounded(value: Decimal, places: int, limit: Decimal, column: str) -> Decimal:
    if value <= 0:
        raise _Bad("must be more than zero")
    if value >= limit:
        raise _Bad("too large")
    if value.quantize(_QUANTA[places], rounding=ROUND_HALF_EVEN) != value:
        raise _Bad(f"more than {places} decimal places")
    return value


def _ticket(raw: Any) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise _Bad(f"{str(raw)[:40]!r} is not a whole number")
    if not 0 < value <= MAX_TICKET:
        raise _Bad("out of range")
    return value


def _text(raw: Any, column: str) -> str:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # a login typed as a number in a spreadsheet
    value = str(raw).strip()
    if not value:
        raise _Bad("missing")
    if len(value) > TEXT_LIMIT:
        raise _Bad(f"longer than {TEXT_LIMIT} characters")
    return value


def _side(raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in SIDES:
        raise _Bad(f"unknown side {str(raw)[:20]!r} (buy or sell)")
    return value


def _time(raw: Any, tz: tzinfo) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        value = datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str):
        text = raw.strip()
        if len(text) >= 10 and text[4] == "." and text[7] == ".":
            text = f"{text[:4]}-{text[5:7]}-{text[8:]}"  # MetaTrader's 2024.01.31 23:59:59
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(
                f"{raw[:40]!r} is not a date and time (2024-01-31 23:59:59, ISO 8601)"
            ) from None
    else:
        raise _Bad("not a date and time")
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def parse_row(values, tz: tzinfo) -> Values | str:
    """One row's cells (in :data:`COLUMNS` order, ``None`` when absent) as
    checked values in :class:`DealRecord` field order, or the row's problems
    in words. Careful and slow: cells of any type (XLSX), every problem named."""
    problems: list[str] = []
    out: list[Any] = []
    for column, raw in zip(COLUMNS, values, strict=True):
        if _blank(raw):
            if column in OPTIONAL:
                out.append(Decimal(0))
            else:
                problems.append(f"{column}: missing")
            continue
        try:
            if column == "ticket":
                out.append(_ticket(raw))
            elif column in ("login", "symbol"):
                out.append(_text(raw, column))
            elif column == "side":
                out.append(_side(raw))
            elif column == "volume":
                out.append(_bounded(_decimal(raw, column), VOLUME_PLACES, VOLUME_LIMIT, column))
            elif column in ("open_price", "close_price"):
                out.append(_bounded(_decimal(raw, column), PRICE_PLACES, PRICE_LIMIT, column))
            elif column in ("open_time", "close_time"):
                out.append(_time(raw, tz))
            else:  # profit, commission, swap: any sign
                value = _decimal(raw, column)
                if abs(value) >= MONEY_LIMIT:
                    raise _Bad("too large")
                out.append(value)
        except _Bad as exc:
            problems.append(f"{column}: {exc}")
    if problems:
        return "; ".join(problems)
    if out[6] < out[5]:
        return "close_time: before open_time (the deal closes before it opens)"
    return tuple(out)
