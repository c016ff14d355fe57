"""The trader's trading history (deals of all their accounts, filters, keyset
pages, CSV export) and analytics (results of a period on one account or all
accounts of a currency, with server-rendered SVG charts).

Account ids from a request are only ever chosen from the trader's own
accounts (the forms' choices), and every read starts from the trader's own
deals (``selectors.deals``): another trader's account id is a form error.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.forms.utils import flatatt
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.dates import MONTHS_3
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from backoffice.charts import MINUS, bar_chart, format_decimal, line_chart
from backoffice.money import from_minor
from backoffice.spreadsheets import Echo, csv_safe

from ..models import Deal, TradingAccount
from ..selectors import deals as selectors
from ..selectors.deals import Analytics, DealCursor, DealFilter

NBSP = "\u00a0"
# Symbols as platforms write them: "EURUSD", "EURUSD.m", "US500#", "BRK-B".
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}")
# The bar charts show this many instruments; the rest are summed as "Others".
CHART_INSTRUMENTS = 10


# --- Formatting ----------------------------------------------------------------------


def money_text(minor: int, account_or_digits, currency: str = "", *, signed=False) -> str:
    """Minor units as "−1,234.56 USD" (the currency when given)."""
    if isinstance(account_or_digits, TradingAccount):
        digits, currency = account_or_digits.currency_digits, account_or_digits.currency
    else:
        digits = account_or_digits
    # Integer arithmetic on the minor units: exact, and several times cheaper
    # than a Decimal round trip for the hundreds of amounts on a page.
    minor = int(minor)
    sign = MINUS if minor < 0 else "+" if signed and minor > 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    text = f"{sign}{whole:,}.{fraction:0{digits}d}" if digits else f"{sign}{whole:,}"
    return f"{text}{NBSP}{currency}" if currency else text


def price_text(price: Decimal, digits: int | None) -> str:
    """A price with the instrument's decimals, or as stored without trailing zeros."""
    if digits is not None:
        return format(price.quantize(Decimal(1).scaleb(-digits)), "f")
    text = format(price, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def lots_text(volume: Decimal) -> str:
    """Lots with at least two decimals: 1 → "1.00", 0.015 → "0.015"."""
    value = volume.normalize()
    if -value.as_tuple().exponent < 2:
        value = value.quantize(Decimal("0.01"))
    return format_decimal(value)


def duration_text(delta: timedelta | None) -> str:
    """A holding time: "45s", "12m", "3h 05m", "2d 4h"."""
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _with_query(url: str, params: dict) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _partial(request: HttpRequest) -> bool:
    # The filter form and the paging links swap only the results when htmx is
    # there; a history restore (the back button) wants the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


# --- Forms ---------------------------------------------------------------------------


class QuickSelect(forms.Select):
    """A select rendered in Python: the same markup as Django's template-based
    widget (with the attributes the bound field adds: id, aria-describedby,
    aria-invalid) at a fraction of its cost, which on these pages was more
    than the queries'."""

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        final = self.build_attrs(self.attrs, attrs)
        chosen = set(self.format_value(value))
        options = [
            format_html(
                '<option value="{}"{}>{}</option>',
                key,
                mark_safe(" selected") if str(key) in chosen else "",  # noqa: S308 - constant
                label,
            )
            for key, label in self.choices
        ]
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(final),
            mark_safe("".join(options)),  # noqa: S308 - each is format_html's output
        )


def _account_label(account: TradingAccount) -> str:
    kind = "demo" if account.is_demo else "live"
    return f"{account.login} · {account.currency} {kind}"


class _PeriodMixin(forms.Form):
    date_from = forms.DateField(
        label="From",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )
    date_to = forms.DateField(
        label="To",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def period(self) -> tuple[datetime | None, datetime | None]:
        """[since, until) of the dates: whole days, "to" inclusive, in the
        site's time zone."""
        start, end = self.cleaned_data.get("date_from"), self.cleaned_data.get("date_to")
        since = _start_of(start) if start else None
        until = _start_of(end + timedelta(days=1)) if end and end < date.max else None
        return since, until


class DealHistoryForm(_PeriodMixin):
    """The history filters and the keyset cursor, from the query string."""

    account = forms.ChoiceField(
        label="Account",
        required=False,
        widget=QuickSelect,
        error_messages={"invalid_choice": "Choose one of your trading accounts."},
    )
    instrument = forms.CharField(
        label="Instrument",
        required=False,
        max_length=32,
        widget=QuickSelect,
        error_messages={"max_length": "Choose an instrument from the list."},
    )
    side = forms.ChoiceField(
        label="Side",
        required=False,
        widget=QuickSelect,
        choices=[("", "Buy and sell"), (Deal.BUY, "Buy"), (Deal.SELL, "Sell")],
        error_messages={"invalid_choice": "Choose buy or sell."},
    )
    before = forms.CharField(required=False, max_length=60, widget=forms.HiddenInput)

    field_order = ["account", "instrument", "side", "date_from", "date_to", "before"]
    FILTERS = ("account", "instrument", "side", "date_from", "date_to")

    def __init__(
        self, *args, accounts: Sequence[TradingAccount], symbols: Sequence[str], **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.accounts = {str(a.pk): a for a in accounts}
        self.fields["account"].choices = [("", "All accounts")] + [
            (key, _account_label(a)) for key, a in self.accounts.items()
        ]
        self.symbols = list(symbols)
        self._set_symbol_choices(self.symbols)

    def _set_symbol_choices(self, symbols: list[str]) -> None:
        self.fields["instrument"].widget.choices = [("", "All instruments")] + [
            (s, s) for s in symbols
        ]

    def clean_instrument(self) -> str:
        symbol = self.cleaned_data["instrument"].strip()
        if symbol and not _SYMBOL.fullmatch(symbol):
            raise forms.ValidationError("Choose an instrument from the list.")
        if symbol and symbol not in self.symbols:  # a platform's own symbol: keep it shown
            self._set_symbol_choices(sorted([*self.symbols, symbol]))
        return symbol

    def clean_before(self) -> DealCursor | None:
        text = self.cleaned_data["before"]
        if not text:
            return None
        cursor = DealCursor.decode(text)
        if cursor is None:
            raise forms.ValidationError("This page link is not valid.")
        return cursor

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in self.FILTERS)

    def filter_params(self) -> dict[str, str]:
        """The valid filters (no cursor), for links that keep them."""
        params = {}
        for name in self.FILTERS:
            value = self.cleaned_data.get(name)
            if value:
                params[name] = value.isoformat() if isinstance(value, date) else value
        return params

    def deal_filter(self) -> DealFilter:
        since, until = self.period()
        account = self.accounts.get(self.cleaned_data.get("account") or "")
        return DealFilter(
            accounts=(account,) if account else (),
            symbol=self.cleaned_data.get("instrument") or "",
            side=self.cleaned_data.get("side") or "",
            since=since,
            until=until,
        )


PERIODS = {"30d": "30 days", "90d": "90 days", "year": "12 months", "all": "All time"}
PERIOD_DAYS = {"30d": 30, "90d": 90, "year": 365}
DEFAULT_PERIOD = "90d"
CUSTOM = "custom"


@dataclass(frozen=True)
class Scope:
    """What the analytics cover: one account, or all the trader's accounts of
    one currency."""

    key: str
    label: str
    accounts: tuple[TradingAccount, ...]
    currency: str


def analytics_scopes(accounts: Sequence[TradingAccount]) -> list[Scope]:
    """An "All USD accounts" scope for each currency with several accounts (kept with
    the same precision), then each account."""
    by_currency: dict[str, list[TradingAccount]] = {}
    for account in accounts:
        by_currency.setdefault(account.currency, []).append(account)
    scopes = []
    for currency, group in by_currency.items():
        if len(group) > 1 and len({a.currency_digits for a in group}) == 1:
            scopes.append(
                Scope(f"all-{currency}", f"All {currency} accounts", tuple(group), currency)
            )
    scopes += [Scope(str(a.pk), _account_label(a), (a,), a.currency) for a in accounts]
    return scopes


class AnalyticsForm(_PeriodMixin):
    account = forms.ChoiceField(
        label="Accounts",
        required=False,
        widget=QuickSelect,
        error_messages={"invalid_choice": "Choose one of your trading accounts."},
    )
    period = forms.ChoiceField(
        label="Period",
        required=False,
        widget=QuickSelect,
        choices=[*PERIODS.items(), (CUSTOM, "Custom")],
        error_messages={"invalid_choice": "Choose a period from the list."},
    )

    field_order = ["account", "period", "date_from", "date_to"]

    def __init__(self, *args, accounts: Sequence[TradingAccount], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.all_accounts = list(accounts)
        self.scopes = {s.key: s for s in analytics_scopes(accounts)}
        self.fields["account"].choices = [(k, s.label) for k, s in self.scopes.items()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("date_from") or data.get("date_to"):
            data["period"] = CUSTOM  # dates typed in win over the preset the form carries
        if not data.get("period"):
            data["period"] = DEFAULT_PERIOD
        return data

    def scope(self) -> Scope | None:
        key = self.cleaned_data.get("account") or ""
        if key in self.scopes:
            return self.scopes[key]
        return next(iter(self.scopes.values()), None)  # the first: all of a currency

    def analytics_period(self) -> tuple[datetime | None, datetime | None]:
        period = self.cleaned_data["period"]
        if period == CUSTOM:
            return self.period()
        if period == "all":
            return None, None
        today = timezone.localdate()
        return _start_of(today - timedelta(days=PERIOD_DAYS[period] - 1)), None

    def params(self, **changes: str) -> dict[str, str]:
        """The query of this form (the chosen scope and period), changed."""
        params = {"account": self.scope().key if self.scope() else ""}
        period = self.cleaned_data.get("period") or DEFAULT_PERIOD
        params["period"] = period
        if period == CUSTOM:
            for name in ("date_from", "date_to"):
                if self.cleaned_data.get(name):
                    params[name] = self.cleaned_data[name].isoformat()
        params.update(changes)
        if params.get("period") != CUSTOM:
            params.pop("date_from", None)
            params.pop("date_to", None)
        return {k: v for k, v in params.items() if v}


# --- The history ---------------------------------------------------------------------


# One deal's table row. The rows are built here rather than in the template:
# a page of 50 deals has some 900 template variables, which cost more CPU
# than the rest of the request (see the trading-history section of
# docs/PERFORMANCE.md). The text that comes from outside (login, symbol) is
# escaped; the rest is numbers and dates we format ourselves.
_ROW = (
    '<tr><td class="c-time"><time datetime="{}">{}</time></td>'
    '<td class="c-account">{}</td><td class="c-symbol">{}</td>'
    '<td class="c-side"><span class="side side-{}">{}</span></td>'
    '<td class="num c-volume">{}<span class="unit"> lots</span></td>'
    '<td class="num c-open">{}</td><td class="num c-close">{}</td>'
    '<td class="num c-held" title="Opened {}">{}</td>'
    '<td class="num c-profit">{}</td>'
    '<td class="num c-commission{}">{}</td><td class="num c-swap{}">{}</td>'
    '<td class="num c-net amount{}">{}</td></tr>'
)
_SIDES = dict(Deal.SIDES)


def _moment(local: datetime, months: list[str]) -> str:
    """As the ``date:"j M Y, H:i"`` filter writes it, without its per-call cost."""
    return f"{local.day} {months[local.month - 1]} {local.year}, {local:%H:%M}"


def _tone(minor: int) -> str:
    return " credit" if minor > 0 else " debit" if minor < 0 else ""


def deal_rows_html(deals: list[Deal], digits: dict[str, int]) -> SafeString:
    """The table rows of ``deals`` (each with its ``account`` set), money in
    the account's currency, prices with the instrument's digits."""
    months = [str(MONTHS_3[m]).title() for m in range(1, 13)]  # in the active language
    zone = timezone.get_current_timezone()
    rows = []
    for deal in deals:
        account = deal.account
        places = account.currency_digits
        symbol_digits = digits.get(deal.symbol)
        net = deal.net
        side = escape(deal.side)
        closed = deal.close_time.astimezone(zone)
        rows.append(
            _ROW.format(
                closed.isoformat(),
                _moment(closed, months),
                escape(account.login),
                escape(deal.symbol),
                side,
                escape(_SIDES.get(deal.side, deal.side).capitalize()),
                lots_text(deal.volume),
                price_text(deal.open_price, symbol_digits),
                price_text(deal.close_price, symbol_digits),
                _moment(deal.open_time.astimezone(zone), months),
                duration_text(deal.close_time - deal.open_time),
                money_text(deal.profit, places, signed=True),
                "" if deal.commission else " zero",
                money_text(deal.commission, places),
                "" if deal.swap else " zero",
                money_text(deal.swap, places),
                _tone(net),
                money_text(net, account, signed=True),
            )
        )
    return mark_safe("".join(rows))  # noqa: S308 - outside text escaped above


@login_required
@require_GET
def trading_history(request: HttpRequest) -> HttpResponse:
    accounts = selectors.trading_accounts_for_user(user=request.user)
    digits = selectors.instrument_digits()
    form = DealHistoryForm(request.GET, accounts=accounts, symbols=sorted(digits))
    return _history_response(request, form, accounts, digits)


def _history_response(
    request: HttpRequest,
    form: DealHistoryForm,
    accounts: list[TradingAccount],
    digits: dict[str, int],
) -> HttpResponse:
    base = reverse("room:trading_history")
    partial = _partial(request)
    context: dict[str, Any] = {
        "form": form,
        "accounts": accounts,
        "base_url": base,
        "nav_active": "trading_history",
        "tab": "deals",
    }
    status = 200
    canonical = ""
    if form.is_valid() and accounts:
        page = selectors.deals_page(
            user=request.user,
            filters=form.deal_filter(),
            accounts=accounts,
            before=form.cleaned_data.get("before"),
        )
        params = form.filter_params()
        cursor = form.cleaned_data.get("before")
        canonical = _with_query(base, {**params, "before": cursor.encode()} if cursor else params)
        context.update(
            rows_html=deal_rows_html(page.deals, digits),
            page=page,
            filtered=form.is_filtered,
            paged=form.cleaned_data.get("before") is not None,
            newest_url=_with_query(base, params),
            older_url=_with_query(base, {**params, "before": page.next_cursor.encode()})
            if page.next_cursor
            else "",
            export_url=_with_query(reverse("room:trading_history_csv"), params),
        )
    elif accounts and not partial:
        status = 400  # htmx swaps only successful responses; the errors are in the part
    template = "accounts/history/_deals.html" if partial else "accounts/history/history.html"
    response = render(request, template, context, status=status)
    if partial and canonical:  # the address bar without the empty filters of the form
        response["HX-Push-Url"] = canonical
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- CSV export ----------------------------------------------------------------------

CSV_HEADER = [
    "ticket",
    "account",
    "currency",
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
    "net",
]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _plain(minor: int, places: int) -> str:
    return format(from_minor(int(minor), places), "f")  # "-0.01", never "-1E-2"


def _csv_rows(
    user, deal_filter: DealFilter, accounts: list[TradingAccount], digits: dict[str, int]
) -> Iterator[list[str]]:
    yield CSV_HEADER
    by_id = {a.pk: a for a in accounts}
    for row in selectors.deals_export_rows(user=user, filters=deal_filter):
        (_, ticket, account_id, symbol, side, volume, opened, closed) = row[:8]
        open_price, close_price, profit, commission, swap = row[8:]
        account = by_id.get(account_id) or _account_of_deal(by_id, account_id)
        places = account.currency_digits
        symbol_digits = digits.get(symbol)
        yield [
            str(ticket),
            csv_safe(account.login),
            csv_safe(account.currency),
            csv_safe(symbol),
            side,
            format(volume.normalize(), "f"),
            _iso(opened),
            _iso(closed),
            price_text(open_price, symbol_digits),
            price_text(close_price, symbol_digits),
            _plain(profit, places),
            _plain(commission, places),
            _plain(swap, places),
            _plain(profit + commission + swap, places),
        ]


def _account_of_deal(by_id: dict[int, TradingAccount], account_id: int) -> TradingAccount:
    """An account that is not (any longer) among the user's own, for a deal
    that is theirs (``Deal.client``): read once."""
    by_id[account_id] = TradingAccount.objects.get(pk=account_id)
    return by_id[account_id]


@login_required
@require_GET
def trading_history_csv(request: HttpRequest) -> HttpResponse:
    """The filtered deals as CSV, streamed in keyset chunks (all of them: a
    page cursor in the query is ignored)."""
    accounts = selectors.trading_accounts_for_user(user=request.user)
    digits = selectors.instrument_digits()
    form = DealHistoryForm(request.GET, accounts=accounts, symbols=sorted(digits))
    if not form.is_valid():
        return _history_response(request, form, accounts, digits)
    writer = csv.writer(Echo())
    rows = (
        writer.writerow(row)
        for row in _csv_rows(request.user, form.deal_filter(), accounts, digits)
    )
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="trading-history-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- Analytics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    label: str
    value: str
    note: str = ""
    tone: str = ""  # "up", "down" or ""


def _stats(result: Analytics) -> list[Stat]:
    cur, places = result.currency, result.digits

    def tone(minor: int | Decimal | None) -> str:
        if not minor:
            return ""
        return "up" if minor > 0 else "down"

    factor = result.profit_factor
    average = result.average
    return [
        Stat("Net result", money_text(result.net, places, cur, signed=True), tone=tone(result.net)),
        Stat("Trades", format_decimal(result.trades), f"{result.wins} won, {result.losses} lost"),
        Stat("Win rate", f"{result.win_rate} %" if result.win_rate is not None else "—"),
        Stat(
            "Profit factor",
            format_decimal(factor) if factor is not None else "—",
            f"{money_text(result.gross_profit, places)} / "
            f"{money_text(-result.gross_loss, places)} {cur}"
            if result.gross_loss
            else "No losing trades",
        ),
        Stat(
            "Average trade",
            f"{format_decimal(average, places, signed=True)}{NBSP}{cur}" if average else "—",
            tone=tone(average),
        ),
        Stat(
            "Best trade",
            money_text(result.best, places, cur, signed=True) if result.best is not None else "—",
            tone=tone(result.best),
        ),
        Stat(
            "Worst trade",
            money_text(result.worst, places, cur, signed=True) if result.worst is not None else "—",
            tone=tone(result.worst),
        ),
        Stat("Average holding time", duration_text(result.average_holding)),
        Stat("Volume", f"{lots_text(result.volume)} lots"),
    ]


@dataclass(frozen=True)
class Chart:
    wide: str
    narrow: str = ""  # a drawing for phones, when the wide one would be too small there


def _both(render_chart, *, narrow: int = 330, wide: int = 760, **kwargs) -> Chart:
    """A chart drawn for phones (about 330 pixels of card) and for wider
    screens: SVG text scales with its drawing, so one drawing cannot be
    readable at both sizes."""
    return Chart(
        narrow=render_chart(width=narrow, **kwargs), wide=render_chart(width=wide, **kwargs)
    )


# The bar charts sit in half-width cards on wide screens.
BAR_WIDE = 480


def _charts(result: Analytics, since: datetime | None) -> dict[str, Chart]:
    cur, places = result.currency, result.digits

    def money_fmt(value: Decimal) -> str:
        return f"{format_decimal(value, places, signed=True)}{NBSP}{cur}"

    points = [(d.day, from_minor(d.cumulative, places)) for d in result.by_day]
    first = result.by_day[0].day
    start = timezone.localtime(since).date() if since else first - timedelta(days=1)
    if start < first:
        points.insert(0, (start, Decimal(0)))
    equity = _both(
        line_chart,
        points=points,
        title=f"Cumulative net result per day, {cur}",
        value_format=money_fmt,
        height=260,
    )
    instruments = result.by_instrument[:CHART_INSTRUMENTS]
    rest = result.by_instrument[CHART_INSTRUMENTS:]
    volume_bars = [(r.symbol, r.volume) for r in instruments]
    result_bars = [(r.symbol, from_minor(r.net, places)) for r in instruments]
    if rest:
        label = f"{len(rest)} others"
        volume_bars.append((label, sum((r.volume for r in rest), Decimal(0))))
        result_bars.append((label, from_minor(sum(r.net for r in rest), places)))
    return {
        "equity": equity,
        "volume": _both(
            bar_chart,
            wide=BAR_WIDE,
            bars=volume_bars,
            title="Volume by instrument, lots",
            value_format=lots_text,
            signed_colors=False,
        ),
        "result": _both(
            bar_chart,
            wide=BAR_WIDE,
            bars=result_bars,
            title=f"Net result by instrument, {cur}",
            value_format=lambda v: format_decimal(v, places, signed=True),
        ),
    }


@dataclass(frozen=True)
class InstrumentRow:
    symbol: str
    trades: int
    win_rate: str
    volume: str
    net: str
    net_minor: int
    history_url: str


def _instrument_rows(result: Analytics, scope_key: str) -> list[InstrumentRow]:
    base = reverse("room:trading_history")
    rows = []
    for r in result.by_instrument:
        params = {"instrument": r.symbol}
        if scope_key.isdigit():
            params = {"account": scope_key, **params}
        rate = (Decimal(100 * r.wins) / r.trades).quantize(Decimal("0.1"))
        rows.append(
            InstrumentRow(
                symbol=r.symbol,
                trades=r.trades,
                win_rate=f"{rate} %",
                volume=lots_text(r.volume),
                net=money_text(r.net, result.digits, signed=True),
                net_minor=r.net,
                history_url=_with_query(base, params),
            )
        )
    return rows


@login_required
@require_GET
def trading_analytics(request: HttpRequest) -> HttpResponse:
    accounts = selectors.trading_accounts_for_user(user=request.user)
    form = AnalyticsForm(request.GET, accounts=accounts)
    base = reverse("room:trading_analytics")
    partial = _partial(request)
    context: dict[str, Any] = {
        "form": form,
        "accounts": accounts,
        "base_url": base,
        "nav_active": "trading_history",
        "tab": "analytics",
    }
    status = 200
    canonical = ""
    if form.is_valid() and accounts:
        scope = form.scope()
        canonical = _with_query(base, form.params())
        since, until = form.analytics_period()
        result = selectors.deal_analytics(
            user=request.user,
            accounts=scope.accounts,
            since=since,
            until=until,
            all_accounts=len(scope.accounts) == len(accounts),
        )
        context.update(
            scope=scope,
            result=result,
            period=form.cleaned_data["period"],
            since=since,
            until=until - timedelta(days=1) if until else None,
            presets=[
                (key, label, _with_query(base, form.params(period=key)))
                for key, label in PERIODS.items()
            ],
            history_url=_with_query(
                reverse("room:trading_history"),
                {"account": scope.key} if scope.key.isdigit() else {},
            ),
        )
        if result.trades:
            context.update(
                stats=_stats(result),
                charts=_charts(result, since),
                instrument_rows=_instrument_rows(result, scope.key),
            )
    elif accounts and not partial:
        status = 400
    template = "accounts/history/_analytics.html" if partial else "accounts/history/analytics.html"
    response = render(request, template, context, status=status)
    if partial and canonical:  # dates typed in make the period "custom" in the address bar
        response["HX-Push-Url"] = canonical
    patch_vary_headers(response, ["HX-Request"])
    return response
