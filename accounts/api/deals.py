"""The trading history and analytics for the mobile app: the same reads as
``/room/history/`` and ``/room/history/analytics/`` (``accounts.selectors.deals``).

Every read starts from the client's own deals; an account id in a filter
that is not the client's is a 404. Deals come in keyset pages, newest first
(``next_cursor`` → ``before``); money is a decimal string in the account's
currency with its digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from ..models import Deal, TradingAccount
from ..selectors import deals as selectors
from ..selectors.deals import Analytics, DealCursor, DealFilter, InstrumentResult
from ..views.history import (
    CUSTOM,
    DEFAULT_PERIOD,
    PERIOD_DAYS,
    PERIODS,
    Scope,
    analytics_scopes,
)
from .common import SYMBOL, errors, money, not_found, number

DEALS_LIMIT = selectors.HISTORY_PAGE_SIZE
MAX_DEALS_LIMIT = 200


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class _PeriodQuery(serializers.Serializer):
    date_from = serializers.DateField(
        required=False, help_text="From this day (YYYY-MM-DD, the broker's time zone)."
    )
    date_to = serializers.DateField(required=False, help_text="Up to and including this day.")

    def validate(self, data: dict) -> dict:
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise serializers.ValidationError({"date_to": "The end date is before the start date."})
        return data

    @staticmethod
    def period(data: dict) -> tuple[datetime | None, datetime | None]:
        """[since, until) of whole days, "to" inclusive (as the page counts)."""
        start, end = data.get("date_from"), data.get("date_to")
        since = _start_of(start) if start else None
        until = _start_of(end + timedelta(days=1)) if end and end < date.max else None
        return since, until


def _own_account(accounts: Sequence[TradingAccount], account_id: int) -> TradingAccount:
    for account in accounts:
        if account.pk == account_id:
            return account
    raise not_found("No such trading account.")


# --- Deals ----------------------------------------------------------------------------


class DealsQuery(_PeriodQuery):
    account = serializers.IntegerField(required=False, help_text="One of your account ids.")
    symbol = serializers.CharField(required=False, max_length=32, help_text="e.g. EURUSD.")
    side = serializers.ChoiceField(choices=[Deal.BUY, Deal.SELL], required=False)
    before = serializers.CharField(
        required=False, max_length=60, help_text="next_cursor of the previous page."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_DEALS_LIMIT, default=DEALS_LIMIT
    )

    def validate_symbol(self, value: str) -> str:
        value = value.strip()
        if value and not SYMBOL.fullmatch(value):
            raise serializers.ValidationError("Not an instrument symbol.")
        return value

    def validate_before(self, value: str) -> DealCursor | None:
        if not value:
            return None
        cursor = DealCursor.decode(value)
        if cursor is None:
            raise serializers.ValidationError("Send next_cursor of the previous page as it came.")
        return cursor


class DealSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticket = serializers.IntegerField(help_text="The platform's deal id.")
    account = serializers.IntegerField(source="account_id")
    login = serializers.CharField(source="account.login")
    currency = serializers.CharField(source="account.currency", help_text="Of the money.")
    symbol = serializers.CharField()
    side = serializers.CharField(help_text="buy or sell.")
    volume = serializers.SerializerMethodField(help_text="Lots.")
    open_time = serializers.DateTimeField()
    close_time = serializers.DateTimeField()
    open_price = serializers.SerializerMethodField()
    close_price = serializers.SerializerMethodField()
    profit = serializers.SerializerMethodField()
    commission = serializers.SerializerMethodField()
    swap = serializers.SerializerMethodField()
    net = serializers.SerializerMethodField(help_text="profit + commission + swap.")

    def _price(self, deal: Deal, price) -> str:
        digits = self.context["digits"].get(deal.symbol)
        if digits is not None:
            return format(price.quantize(Decimal(1).scaleb(-digits)), "f")
        return number(price)

    def get_volume(self, deal: Deal) -> str:
        return number(deal.volume)

    def get_open_price(self, deal: Deal) -> str:
        return self._price(deal, deal.open_price)

    def get_close_price(self, deal: Deal) -> str:
        return self._price(deal, deal.close_price)

    def get_profit(self, deal: Deal) -> str:
        return money(deal.profit, deal.account.currency_digits)

    def get_commission(self, deal: Deal) -> str:
        return money(deal.commission, deal.account.currency_digits)

    def get_swap(self, deal: Deal) -> str:
        return money(deal.swap, deal.account.currency_digits)

    def get_net(self, deal: Deal) -> str:
        return money(deal.net, deal.account.currency_digits)


class DealsPageSerializer(serializers.Serializer):
    deals = DealSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Send as `before` for the next (older) page; null: no more."
    )


@extend_schema(
    parameters=[DealsQuery],
    responses={200: DealsPageSerializer, **errors(400, 401, 404)},
    summary="Your deals (closed trades), newest first, in keyset pages",
)
@api_view(["GET"])
def deal_list(request):
    query = DealsQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    accounts = selectors.trading_accounts_for_user(user=request.user)
    chosen = (_own_account(accounts, data["account"]),) if "account" in data else ()
    since, until = _PeriodQuery.period(data)
    filters = DealFilter(
        accounts=chosen,
        symbol=data.get("symbol") or "",
        side=data.get("side") or "",
        since=since,
        until=until,
    )
    if not accounts:
        return Response({"deals": [], "next_cursor": None})
    page = selectors.deals_page(
        user=request.user,
        filters=filters,
        accounts=accounts,
        before=data.get("before"),
        limit=data["limit"],
    )
    digits = selectors.instrument_digits() if page.deals else {}
    body = DealsPageSerializer(
        {
            "deals": page.deals,
            "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
        },
        context={"digits": digits},
    )
    return Response(body.data)


# --- Analytics ------------------------------------------------------------------------


class AnalyticsQuery(_PeriodQuery):
    account = serializers.CharField(
        required=False,
        max_length=20,
        help_text='An account id, or a scope key such as "all-USD" (all your USD accounts); '
        "the first scope when left out.",
    )
    period = serializers.ChoiceField(
        choices=[*PERIODS, CUSTOM],
        required=False,
        help_text=f"{', '.join(PERIODS)} (days back from today), or custom "
        f"(date_from, date_to); {DEFAULT_PERIOD} when left out. Dates win over the period.",
    )

    def validate(self, data: dict) -> dict:
        data = super().validate(data)
        if data.get("date_from") or data.get("date_to"):
            data["period"] = CUSTOM
        data.setdefault("period", DEFAULT_PERIOD)
        return data


class ScopeSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="What to send as `account`.")
    label = serializers.CharField()
    currency = serializers.CharField()
    accounts = serializers.SerializerMethodField()

    def get_accounts(self, scope: Scope) -> list[int]:
        return [a.pk for a in scope.accounts]


def _seconds(delta: timedelta | None) -> int | None:
    return None if delta is None else round(delta.total_seconds())


class SummarySerializer(serializers.Serializer):
    trades = serializers.IntegerField()
    wins = serializers.IntegerField(help_text="Trades with a net result above zero.")
    losses = serializers.IntegerField()
    win_rate = serializers.SerializerMethodField(help_text="Percent (null: no trades).")
    profit_factor = serializers.SerializerMethodField(
        help_text="Gross profit / gross loss (null: no losing trade)."
    )
    net = serializers.SerializerMethodField()
    gross_profit = serializers.SerializerMethodField()
    gross_loss = serializers.SerializerMethodField(help_text="Zero or negative.")
    average = serializers.SerializerMethodField(help_text="Net result per trade.")
    best = serializers.SerializerMethodField()
    worst = serializers.SerializerMethodField()
    average_holding_seconds = serializers.SerializerMethodField()
    volume = serializers.SerializerMethodField(help_text="Lots.")

    def get_win_rate(self, result: Analytics) -> str | None:
        return number(result.win_rate) if result.win_rate is not None else None

    def get_profit_factor(self, result: Analytics) -> str | None:
        factor = result.profit_factor
        return format(factor, "f") if factor is not None else None

    def get_net(self, result: Analytics) -> str:
        return money(result.net, result.digits)

    def get_gross_profit(self, result: Analytics) -> str:
        return money(result.gross_profit, result.digits)

    def get_gross_loss(self, result: Analytics) -> str:
        return money(result.gross_loss, result.digits)

    def get_average(self, result: Analytics) -> str | None:
        average = result.average
        return format(average, "f") if average is not None else None

    def get_best(self, result: Analytics) -> str | None:
        return money(result.best, result.digits)

    def get_worst(self, result: Analytics) -> str | None:
        return money(result.worst, result.digits)

    def get_average_holding_seconds(self, result: Analytics) -> int | None:
        return _seconds(result.average_holding)

    def get_volume(self, result: Analytics) -> str:
        return number(result.volume)


class InstrumentSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    win_rate = serializers.SerializerMethodField(help_text="Percent.")
    volume = serializers.SerializerMethodField(help_text="Lots.")
    net = serializers.SerializerMethodField()
    gross_profit = serializers.SerializerMethodField()
    gross_loss = serializers.SerializerMethodField()
    best = serializers.SerializerMethodField()
    worst = serializers.SerializerMethodField()
    average_holding_seconds = serializers.SerializerMethodField()

    def _money(self, minor: int) -> str:
        return money(minor, self.context["digits"])

    def get_win_rate(self, row: InstrumentResult) -> str:
        rate = (Decimal(100 * row.wins) / row.trades).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
        return number(rate)

    def get_volume(self, row: InstrumentResult) -> str:
        return number(row.volume)

    def get_net(self, row: InstrumentResult) -> str:
        return self._money(row.net)

    def get_gross_profit(self, row: InstrumentResult) -> str:
        return self._money(row.gross_profit)

    def get_gross_loss(self, row: InstrumentResult) -> str:
        return self._money(row.gross_loss)

    def get_best(self, row: InstrumentResult) -> str:
        return self._money(row.best)

    def get_worst(self, row: InstrumentResult) -> str:
        return self._money(row.worst)

    def get_average_holding_seconds(self, row: InstrumentResult) -> int:
        return _seconds(row.holding / row.trades)


class DaySerializer(serializers.Serializer):
    day = serializers.DateField()
    trades = serializers.IntegerField()
    net = serializers.SerializerMethodField(help_text="The day's net result.")
    cumulative = serializers.SerializerMethodField(help_text="Since the period's start.")

    def get_net(self, row) -> str:
        return money(row.net, self.context["digits"])

    def get_cumulative(self, row) -> str:
        return money(row.cumulative, self.context["digits"])


class AnalyticsSerializer(serializers.Serializer):
    scopes = ScopeSerializer(many=True, help_text="What `account` may be.")
    scope = ScopeSerializer(allow_null=True, help_text="What the figures cover (null: no account).")
    period = serializers.CharField()
    date_from = serializers.DateField(allow_null=True, help_text="null: since the first deal.")
    date_to = serializers.DateField(allow_null=True, help_text="Inclusive; null: up to now.")
    currency = serializers.CharField(allow_null=True)
    summary = SummarySerializer(allow_null=True, help_text="null: no account.")
    by_instrument = InstrumentSerializer(many=True, help_text="Most traded volume first.")
    equity_curve = DaySerializer(many=True, help_text="One point per day with deals.")


def _analytics_period(data: dict) -> tuple[datetime | None, datetime | None]:
    period = data["period"]
    if period == CUSTOM:
        return _PeriodQuery.period(data)
    if period not in PERIOD_DAYS:  # "all"
        return None, None
    today = timezone.localdate()
    return _start_of(today - timedelta(days=PERIOD_DAYS[period] - 1)), None


def _scope(scopes: list[Scope], key: str | None) -> Scope | None:
    if not key:
        return scopes[0] if scopes else None
    for scope in scopes:
        if scope.key == key:
            return scope
    if key.isdigit():
        raise not_found("No such trading account.")
    raise serializers.ValidationError(
        {"account": "Send an account id, or a scope key from `scopes`."}
    )


@extend_schema(
    parameters=[AnalyticsQuery],
    responses={200: AnalyticsSerializer, **errors(400, 401, 404)},
    summary="The results of a period: trades, win rate, profit factor, equity curve...",
    description="The figures of the analytics page, for one account or all your accounts "
    "of one currency. Money is a decimal string in `currency`.",
)
@api_view(["GET"])
def trading_analytics(request):
    query = AnalyticsQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    accounts = selectors.trading_accounts_for_user(user=request.user)
    scopes = analytics_scopes(accounts)
    scope = _scope(scopes, data.get("account"))
    since, until = _analytics_period(data)
    body = {
        "scopes": scopes,
        "scope": scope,
        "period": data["period"],
        "date_from": timezone.localtime(since).date() if since else None,
        "date_to": (timezone.localtime(until) - timedelta(days=1)).date() if until else None,
        "currency": None,
        "summary": None,
        "by_instrument": [],
        "equity_curve": [],
    }
    digits = 2
    if scope is not None:
        result = selectors.deal_analytics(
            user=request.user,
            accounts=scope.accounts,
            since=since,
            until=until,
            all_accounts=len(scope.accounts) == len(accounts),
        )
        digits = result.digits
        body.update(
            currency=result.currency,
            summary=result,
            by_instrument=result.by_instrument,
            equity_curve=result.by_day,
        )
    return Response(AnalyticsSerializer(body, context={"digits": digits}).data)
