"""Importing a platform's deal report (CSV or XLSX): every bad row reported
with its line and reason and nothing saved, the same file twice adds nothing,
files refused by their content, and a huge file streamed in little memory."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Deal, Platform, TradingAccount
from accounts.platforms import gateway_for
from accounts.platforms.base import PlatformError
from accounts.platforms.files import FileImportGateway
from accounts.roles import FINANCE
from accounts.services.deals import (
    MAX_REPORTED_ERRORS,
    ReportRefused,
    deals_import_file,
    deals_ingest,
)
from backoffice.models import Event
from tests.accounts.test_deal_ingest import record
from tests.factories import StaffFactory, open_trading_account

pytestmark = pytest.mark.django_db

HEADER = [
    "ticket",
    "login",
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
]


@pytest.fixture
def demo() -> Platform:
    return Platform.objects.get(identifier="demo")


@pytest.fixture
def account(trader) -> TradingAccount:
    return open_trading_account(trader)


@pytest.fixture
def finance():
    return StaffFactory(roles=[FINANCE])


def row(ticket, login, **changes) -> list:
    values = {
        "ticket": str(ticket),
        "login": login,
        "symbol": "EURUSD",
        "side": "buy",
        "volume": "0.10",
        "open_time": "2026-02-02 10:00:00",
        "close_time": "2026-02-02 10:30:00",
        "open_price": "1.08500",
        "close_price": "1.08620",
        "profit": "12.00",
        "commission": "-0.70",
        "swap": "0",
    }
    values.update(changes)
    return [values[c] for c in HEADER]


def csv_file(rows, *, header=HEADER, name="deals.csv", delimiter=",") -> SimpleUploadedFile:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return SimpleUploadedFile(name, buffer.getvalue().encode(), content_type="text/csv")


def xlsx_file(rows, *, header=HEADER, name="deals.xlsx") -> SimpleUploadedFile:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for r in rows:
        sheet.append(r)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return SimpleUploadedFile(name, buffer.getvalue())


def run(actor, platform, upload):
    return deals_import_file(actor=actor, platform=platform, file=upload, filename=upload.name)


# --- Valid files ------------------------------------------------------------------


def test_a_valid_csv_is_imported_whole(finance, demo, account, trader):
    upload = csv_file([row(n, account.login, profit=f"{n}.25") for n in (101, 102, 103)])
    report = run(finance, demo, upload)
    assert report.ok and (report.rows, report.added, report.duplicates) == (3, 3, 0)
    assert report.summary() == "3 added, 0 already imported."
    deal = Deal.objects.get(ticket=102)
    assert (deal.account, deal.client, deal.platform) == (account, trader, demo)
    assert (deal.profit, deal.commission, deal.swap) == (10225, -70, 0)
    assert deal.open_time == datetime(2026, 2, 2, 10, tzinfo=UTC)
    assert deal.volume == Decimal("0.1") and deal.close_price == Decimal("1.0862")

    imported = Event.objects.get(name="deals.imported")
    assert imported.payload == {
        "platform": "demo",
        "count": 3,
        "first_id": report.first_id,
        "last_id": report.last_id,
    }
    audit = Event.objects.get(name="deals.file_imported")
    assert audit.actor == finance
    assert audit.payload["filename"] == "deals.csv" and audit.payload["added"] == 3


def test_a_valid_xlsx_with_typed_cells_is_imported(finance, demo, account):
    opened = datetime(2026, 2, 3, 8, 15)
    rows = [
        # numbers and dates as the spreadsheet keeps them
        [201, int(account.login), "XAUUSD", "Sell", 0.5, opened, opened + timedelta(hours=2)]
        + [2310.15, 2301.4, 437.5, -3.5, -1.25],
        # the same as text
        row(202, account.login),
    ]
    report = run(finance, demo, xlsx_file(rows))
    assert report.ok and report.added == 2 and report.kind == "xlsx"
    deal = Deal.objects.get(ticket=201)
    assert (deal.side, deal.profit, deal.commission, deal.swap) == ("sell", 43750, -350, -125)
    assert deal.open_price == Decimal("2310.15") and deal.close_time == datetime(
        2026, 2, 3, 10, 15, tzinfo=UTC
    )


def test_headers_are_matched_loosely_and_metatrader_dates_read(finance, demo, account):
    header = ["Ticket", "LOGIN", "Symbol", "Side", "Volume", "Open Time", "Close-Time"]
    header += ["Open Price", "close_price", "Profit", "Comment"]  # no commission/swap, an extra
    rows = [
        [301, account.login, "GBPUSD", "sell", "1", "2026.01.30 23:59:58", "2026.01.31 00:00:01"]
        + ["1.27001", "1.26990", "11.00", "from MT5"]
    ]
    report = run(finance, demo, csv_file(rows, header=header, delimiter=";"))
    assert report.ok, report.errors
    deal = Deal.objects.get(ticket=301)
    assert (deal.commission, deal.swap) == (0, 0)
    assert deal.close_time == datetime(2026, 1, 31, 0, 0, 1, tzinfo=UTC)


def test_a_large_upload_kept_on_disk_by_django_is_read_the_same(finance, demo, account):
    from django.core.files.uploadedfile import TemporaryUploadedFile

    content = csv_file([row(n, account.login) for n in (1, 2)]).read()
    upload = TemporaryUploadedFile("deals.csv", "text/csv", len(content), "utf-8")
    upload.write(content)
    upload.seek(0)
    try:
        assert run(finance, demo, upload).added == 2
        upload.seek(0)
        assert upload.read() == content  # still open and whole for its owner
    finally:
        upload.close()


def test_naive_times_are_in_the_platforms_time_zone(finance, demo, account):
    Platform.objects.filter(pk=demo.pk).update(settings={"timezone": "Europe/Athens"})
    demo.refresh_from_db()
    rows = [row(1, account.login), row(2, account.login, close_time="2026-02-02T08:40:00Z")]
    run(finance, demo, csv_file(rows))
    assert Deal.objects.get(ticket=1).open_time == datetime(2026, 2, 2, 8, tzinfo=UTC)
    assert Deal.objects.get(ticket=2).close_time == datetime(2026, 2, 2, 8, 40, tzinfo=UTC)


def test_a_file_platform_takes_reports_and_nothing_else(finance, trader, account):
    reports = Platform.objects.create(identifier="reports", kind="file", name="Broker reports")
    TradingAccount.objects.create(
        user=trader,
        platform=reports,
        account_type=account.account_type,
        login="70001",
        currency="USD",
        leverage=100,
    )
    gateway = gateway_for(reports)
    assert isinstance(gateway, FileImportGateway) and not gateway.live_operations
    assert gateway.deals_since("", limit=10).deals == []
    with pytest.raises(PlatformError):
        gateway.balance_operation(login="70001", amount=Decimal(1), comment="", key="k")
    assert run(finance, reports, csv_file([row(1, "70001")])).added == 1


# --- Bad rows: all reported, nothing saved ---------------------------------------


def test_each_bad_row_is_reported_with_its_line_and_nothing_is_saved(finance, demo, account):
    login = account.login
    rows = [
        row(1, login),  # line 2: fine
        row(2, login, volume="abc"),  # 3
        row(3, login, side="hold"),  # 4
        row(4, login, close_time="2026-02-02 09:00:00"),  # 5: closes before it opens
        row(5, "999999"),  # 6
        row(1, login),  # 7: ticket of line 2 again
        row(7, login, symbol=""),  # 8
        row(8, login, profit="12,5x"),  # 9
        row(9, login, open_time="yesterday"),  # 10
        row(10, login, volume="0.12345"),  # 11
        row("x11", login),  # 12
        row(12, login, open_price="-1"),  # 13
        ["13", login, "EURUSD"],  # 14: a short row
        row(14, login),  # 15: fine
    ]
    report = run(finance, demo, csv_file(rows))
    assert not report.ok and report.added == 0
    by_line = {e.line: e.message for e in report.errors}
    assert sorted(by_line) == list(range(3, 15))
    assert by_line[3] == "volume: 'abc' is not a number"
    assert by_line[4] == "side: unknown side 'hold' (buy or sell)"
    assert "before open_time" in by_line[5]
    assert by_line[6] == "login: no account '999999' on Demo platform (built-in)"
    assert by_line[7] == "ticket: 1 is already on line 2 of this file"
    assert by_line[8] == "symbol: missing"
    assert by_line[9] == "profit: '12,5x' is not a number"
    assert by_line[10].startswith("open_time: 'yesterday' is not a date and time")
    assert by_line[11] == "volume: more than 4 decimal places"
    assert by_line[12] == "ticket: 'x11' is not a whole number"
    assert by_line[13] == "open_price: must be more than zero"
    assert by_line[14].startswith("side: missing; volume: missing; open_time: missing")
    assert report.error_count == 12
    assert report.summary() == "Nothing was imported: 12 bad rows among 14 rows."
    assert not Deal.objects.exists()
    assert not Event.objects.filter(name__startswith="deals.").exists()


def test_a_bad_row_after_rows_already_saved_undoes_them_all(finance, demo, account, monkeypatch):
    from accounts.services import deals as deal_services

    monkeypatch.setattr(deal_services, "IMPORT_BATCH", 2)
    monkeypatch.setattr(deal_services, "IMPORT_INSERT_ROWS", 3)
    good = [row(n, account.login) for n in range(1, 12)]
    report = run(finance, demo, csv_file([*good, row(99, account.login, side="?")]))
    assert [e.line for e in report.errors] == [13] and report.added == 0
    assert not Deal.objects.exists()
    assert not Event.objects.filter(name__startswith="deals.").exists()

    report = run(finance, demo, csv_file(good))
    assert (report.added, report.duplicates) == (11, 0)
    ids = list(Deal.objects.order_by("ticket").values_list("id", flat=True))
    assert ids == sorted(ids) and (report.first_id, report.last_id) == (ids[0], ids[-1])
    assert run(finance, demo, csv_file(good)).duplicates == 11


def test_line_numbers_count_blank_rows_and_quoted_newlines(finance, demo, account):
    text = (
        ",".join(HEADER)
        + "\n"
        + ",".join(row(1, account.login))
        + "\n\n"  # line 3 is blank
        + ",".join(row(2, account.login, symbol='"EUR\nUSD"'))  # lines 4-5
        + "\n"
        + ",".join(row(3, account.login, side="flat"))  # line 6
        + "\n"
    )
    report = run(finance, demo, SimpleUploadedFile("d.csv", text.encode()))
    assert [e.line for e in report.errors] == [6]

    xlsx_rows = [row(1, account.login), [], row(2, account.login, side="flat")]
    report = run(finance, demo, xlsx_file(xlsx_rows))
    assert [(e.line, e.message) for e in report.errors] == [
        (4, "side: unknown side 'flat' (buy or sell)")
    ]


def test_the_report_lists_the_first_problems_and_counts_them_all(finance, demo, account):
    rows = [row(n, account.login, side="?") for n in range(1, MAX_REPORTED_ERRORS + 51)]
    report = run(finance, demo, csv_file(rows))
    assert report.error_count == MAX_REPORTED_ERRORS + 50
    assert len(report.errors) == MAX_REPORTED_ERRORS and report.errors_not_shown == 50
    assert report.errors[0].line == 2 and report.errors[-1].line == MAX_REPORTED_ERRORS + 1


def test_a_header_without_a_needed_column_is_refused(finance, demo, account):
    header = [c for c in HEADER if c != "profit"]
    with pytest.raises(ReportRefused, match="Line 1: the header has no column profit"):
        run(finance, demo, csv_file([row(1, account.login)[:-3]], header=header))
    assert not Deal.objects.exists()


# --- Duplicates across imports ----------------------------------------------------


def test_the_same_file_twice_adds_nothing(finance, demo, account):
    rows = [row(n, account.login) for n in range(1, 6)]
    first = run(finance, demo, csv_file(rows))
    again = run(finance, demo, csv_file(rows))
    assert (first.added, first.duplicates) == (5, 0)
    assert (again.added, again.duplicates) == (0, 5)
    assert again.summary() == "0 added, 5 already imported."
    assert Deal.objects.count() == 5
    assert Event.objects.filter(name="deals.imported").count() == 1
    assert Event.objects.filter(name="deals.file_imported").count() == 2


def test_deals_already_pulled_from_the_platform_count_as_imported(finance, demo, account):
    deals_ingest(platform=demo, records=[record(1, account.login), record(2, account.login)])
    report = run(finance, demo, xlsx_file([row(n, account.login) for n in (1, 2, 3)]))
    assert (report.added, report.duplicates) == (1, 2)


# --- Files refused by their content ----------------------------------------------


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("deals.csv", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 200, "a Windows program"),
        (
            "deals.csv",
            zip_bytes({"deals.csv": b"ticket,login\n1,2\n"}),
            "a ZIP archive, not an XLSX",
        ),
        ("deals.xlsx", b"ticket,login,symbol\n1,2,EURUSD\n", "named .xlsx but it is CSV text"),
        ("deals.xlsx", os.urandom(1) + b"\x00\x01\x02" + os.urandom(500), "not text"),
        ("deals.csv", "ticket,login\n".encode("utf-16"), "not text"),
        ("deals.csv", "ticket;login;côté\n".encode("latin-1"), "not UTF-8"),
        ("deals.csv", b"%PDF-1.7\n...", "a PDF document"),
        ("deals.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel"),
        ("deals.csv", b"", "empty"),
        (
            "deals.csv",
            b"ticket,login,symbol,side,volume,open_time,close_time,open_price,close_price,profit\n",
            "only a header",
        ),
    ],
)
def test_a_file_that_is_not_a_deal_report_is_refused(finance, demo, name, content, reason):
    with pytest.raises(ReportRefused, match=reason):
        run(finance, demo, SimpleUploadedFile(name, content))
    assert not Deal.objects.exists()


def test_an_xlsx_renamed_csv_is_refused_but_the_content_decides_otherwise(finance, demo, account):
    workbook = xlsx_file([row(1, account.login)])
    with pytest.raises(ReportRefused, match="named .csv but it is an XLSX workbook"):
        run(finance, demo, SimpleUploadedFile("deals.csv", workbook.read()))
    workbook.seek(0)
    report = run(finance, demo, SimpleUploadedFile("deals-export.dat", workbook.read()))
    assert report.kind == "xlsx" and report.added == 1


def test_a_file_larger_than_the_cap_is_refused_before_reading(finance, demo, account, settings):
    settings.DEAL_IMPORT_MAX_BYTES = 1024
    rows = [row(n, account.login) for n in range(1, 40)]
    with pytest.raises(ReportRefused, match="at most 0.0 MB|at most"):
        run(finance, demo, csv_file(rows))
    assert not Deal.objects.exists()


def test_a_zip_bomb_posing_as_a_workbook_is_refused(finance, demo, settings):
    settings.DEAL_IMPORT_MAX_BYTES = 50_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * 2_000_000)
    with pytest.raises(ReportRefused, match="unpacks to far more"):
        run(finance, demo, SimpleUploadedFile("deals.xlsx", buffer.getvalue()))


def test_a_broken_workbook_is_refused(finance, demo):
    content = zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<not xml"})
    with pytest.raises(ReportRefused, match="cannot be read"):
        run(finance, demo, SimpleUploadedFile("deals.xlsx", content))


# --- A huge file ------------------------------------------------------------------

HUGE_ROWS = 200_000


@pytest.mark.timeout(900)  # tracemalloc makes every allocation slower
def test_a_huge_csv_is_streamed_in_little_memory(finance, demo, account, tmp_path):
    path = tmp_path / "huge.csv"
    opened = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n in range(1, HUGE_ROWS + 1):
            at = opened + timedelta(seconds=n * 60)
            writer.writerow(
                [n, account.login, "EURUSD", "buy" if n % 2 else "sell", "0.10"]
                + [at.strftime("%Y-%m-%d %H:%M:%S"), (at + timedelta(seconds=45)).isoformat()]
                + ["1.08500", "1.08620", f"{(n % 2000) - 1000}.{n % 100:02d}", "-0.70", "0"]
            )
    size = path.stat().st_size
    with path.open("rb") as handle:
        tracemalloc.start()
        try:
            report = run(finance, demo, File(handle, name="huge.csv"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert report.ok and report.added == HUGE_ROWS, report.errors[:3]
    assert Deal.objects.count() == HUGE_ROWS
    # The file is ~21 MB, and a row in Python objects takes ten times its
    # text: a batch of rows at a time, never the file.
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
