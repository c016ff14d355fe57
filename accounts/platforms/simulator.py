"""The market of the built-in demo platform: a simulator that trades its
accounts, so that a newcomer sees a populated trading history and so that
benchmarks have deals to read.

It is part of the demo platform (an outside system that lives in our
database), so it writes the platform's own tables only
(``DemoPlatformDeal``, and the balance, floating result and margin of
``DemoPlatformAccount``); our ``Deal`` rows come from the deal sync, which
reads the platform through its gateway like any other.

The market. Every instrument of :data:`MARKET` follows a random walk of its
log price on a five-minute grid, with its own yearly volatility, slowly
reverting to its starting level; markets other than crypto stand still over
the weekend. The market is a function of time alone (:class:`Walk`): every
account and every run (the demo seeding, the command, the beat's rounds)
trades the same prices at the same moment. A deal between two grid points
reads a Brownian bridge.

A trader. Each account gets a few favourite instruments (gold and EURUSD are
the most popular), a risk appetite and a size; a deal is held from minutes
to days, mostly small (0.01 to 2 lots, capped so that a usual move costs a
few per cent of the balance and the margin fits), bought a bit more often
than sold. Its result is the price move x contract size x lots, converted
to the account's currency at the walk's rates of the close, with a
commission per lot and side on FX and a swap for each rollover (21:00 UTC;
FX and CFDs charge three on Wednesday and none at the weekend).

Money is ``Decimal`` up to the account's minor units (``currency_digits``,
half-even). Deals are applied in close-time order; a balance never goes
negative: a loss beyond it is a stop-out, cut at the balance (its close
price moved back to match). An account without the margin for the smallest
deal does not trade.

``seed`` draws the traders: with one, the same accounts, ``end`` and
``days`` give the same deals.
Writing: PostgreSQL ``COPY`` (elsewhere ``bulk_create``) in batches of
:data:`BATCH`, one transaction per account with its row locked.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import accumulate
from operator import itemgetter

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import (
    DemoPlatformAccount,
    DemoPlatformDeal,
    Instrument,
    Platform,
    TradingAccount,
)
from .base import PlatformError

log = logging.getLogger(__name__)

BATCH = 5_000
YEAR = 365 * 86_400
MAX_STEPS = 320_000  # per instrument (about three years of five minutes)
ROLLOVER_HOUR = 21  # UTC: where a position held overnight pays its swap
MIN_LOT = Decimal("0.01")
ONE = Decimal(1)
POWERS = [10.0**d for d in range(19)]
MAX_LOTS = 2.0
# Commission on FX, per lot and side, in US dollars (converted to the
# account's currency): a raw-spread account's usual 3.5.
FX_COMMISSION_PER_LOT_SIDE = Decimal("3.5")
FX_GROUPS = {Instrument.FX_MAJORS, Instrument.FX_MINORS, Instrument.FX_EXOTICS}
# The beat task: how far back a round's deals open, how many accounts a
# round trades at most, and how many deals each gets.
ROUND_WINDOW = timedelta(hours=4)
ROUND_ACCOUNTS = 200
ROUND_DEALS = (0, 3)
# The market: the same prices for every run (see Walk).
MARKET_SEED = "demo-market-v1"
ANCHOR_DAY = 18_262  # 1 January 2020, in days since 1970
REVERSION = 1 / 120  # per day, of the log price towards the starting price
WRITER_LOCK = 0x53494D55  # "SIMU": the advisory lock class of deal writers


@dataclass(frozen=True)
class Market:
    """How one instrument moves and costs: a starting price, the yearly
    volatility of its log price, the spread (price units), the swap per
    night as a share of the notional (long, short), how often traders pick
    it, and whether it trades at the weekend."""

    start: float
    volatility: float
    spread: float
    swap_long: float
    swap_short: float
    popularity: int
    digits: int = 5  # of its quotes, where no instrument says otherwise
    weekend: bool = False


MARKET: dict[str, Market] = {
    "EURUSD": Market(1.0850, 0.07, 0.00002, -0.000055, 0.000015, 20),
    "GBPUSD": Market(1.2700, 0.08, 0.00003, -0.00005, 0.00001, 10),
    "USDJPY": Market(150.00, 0.10, 0.003, 0.00012, -0.00025, 8, digits=3),
    "USDCHF": Market(0.9000, 0.07, 0.00003, 0.00008, -0.00018, 3),
    "AUDUSD": Market(0.6600, 0.10, 0.00003, -0.00004, 0.000005, 4),
    "USDCAD": Market(1.3600, 0.06, 0.00004, 0.00001, -0.00006, 3),
    "EURGBP": Market(0.8550, 0.06, 0.00004, -0.00004, 0.000005, 2),
    "EURJPY": Market(162.50, 0.10, 0.005, 0.00008, -0.0002, 3, digits=3),
    "USDTRY": Market(32.500, 0.15, 0.003, 0.0008, -0.0012, 1),
    "XAUUSD": Market(2300.00, 0.15, 0.20, -0.00018, 0.00006, 15, digits=2),
    "XAGUSD": Market(27.500, 0.25, 0.02, -0.00018, 0.00006, 3, digits=3),
    "USOIL": Market(78.00, 0.35, 0.03, -0.0002, 0.00005, 4, digits=2),
    "US500": Market(5200.0, 0.15, 0.5, -0.00022, 0.00008, 6, digits=1),
    "GER40": Market(18200.0, 0.16, 1.0, -0.00018, 0.00005, 4, digits=1),
    "BTCUSD": Market(60000.00, 0.55, 15.0, -0.0006, -0.0003, 6, digits=2, weekend=True),
    "ETHUSD": Market(3000.00, 0.70, 1.5, -0.0006, -0.0003, 3, digits=2, weekend=True),
}
# US dollars per unit of a currency, read from the walk: (pair, USD quoted).
USD_RATES: dict[str, tuple[str, bool]] = {
    "EUR": ("EURUSD", True),
    "GBP": ("GBPUSD", True),
    "AUD": ("AUDUSD", True),
    "JPY": ("USDJPY", False),
    "CHF": ("USDCHF", False),
    "CAD": ("USDCAD", False),
    "TRY": ("USDTRY", False),
}
CONVERTIBLE = {"USD", *USD_RATES}


@dataclass(frozen=True)
class Traded:
    """What happened to one account."""

    deals: int = 0
    stop_outs: int = 0
    skipped: str = ""


@dataclass
class Simulation:
    """What a run did."""

    deals: int = 0
    accounts: int = 0
    stop_outs: int = 0
    skipped: list[str] = field(default_factory=list)  # accounts that could not trade
    seconds: float = 0.0

    def add(self, traded: Traded) -> None:
        self.deals += traded.deals
        self.accounts += bool(traded.deals)
        self.stop_outs += traded.stop_outs
        if traded.skipped:
            self.skipped.append(traded.skipped)

    @property
    def rate(self) -> float:
        return self.deals / self.seconds if self.seconds else 0.0


# --- The market: a random walk per instrument --------------------------------------------


class Walk:
    """Prices of every instrument of :data:`MARKET` on a five-minute grid
    covering the UTC days from ``start`` to ``end`` (epoch seconds).

    The market is a function of time alone: each day's move is the next
    draw of the instrument's own stream of daily shocks, counted from
    :data:`ANCHOR_DAY` (a log price that reverts slowly to the starting
    level, so that a price stays plausible however long the demo runs), and
    the day in between is a Brownian bridge drawn from the instrument and
    the day. Any two runs (seeding 90 days, a command, the beat's rounds)
    therefore see the same price at the same moment."""

    def __init__(self, *, start: int, end: int) -> None:
        first_day, last_day = start // 86_400, end // 86_400
        days = last_day - first_day + 1
        # Five minutes; periods of years get a coarser grid (a divisor of a day).
        per_day = next(n for n in (288, 144, 96, 48, 24, 12, 6, 4, 2, 1) if n * days <= MAX_STEPS)
        self.step = 86_400 // per_day
        self.start = first_day * 86_400
        self.steps = days * per_day + 1
        self.paths: dict[str, array] = {}
        self.sigma: dict[str, float] = {}  # of the log price, per step
        self._usd: dict[tuple[str, int], Decimal] = {}
        for symbol, spec in MARKET.items():
            sigma = self.sigma[symbol] = spec.volatility * math.sqrt(self.step / YEAR)
            levels = _daily_levels(symbol, spec, first_day, last_day + 1)
            path = array("d")
            for k in range(days):
                a, b = levels[k], levels[k + 1]
                if a == b:  # a weekend, for all but crypto
                    path.extend([spec.start * math.exp(a)] * per_day)
                    continue
                path.extend(_bridge(spec.start, a, b, per_day, sigma, symbol, first_day + k))
            path.append(spec.start * math.exp(levels[days]))
            self.paths[symbol] = path

    def index(self, ts: float) -> int:
        return min(int((ts - self.start) // self.step), self.steps - 2)

    def at(self, symbol: str, ts: float, rng: random.Random) -> float:
        """The price at ``ts`` between two grid points: a Brownian bridge."""
        i = self.index(ts)
        path = self.paths[symbol]
        a, b = path[i], path[i + 1]
        if a == b:
            return a
        f = (ts - self.start - i * self.step) / self.step
        noise = self.sigma[symbol] * a * math.sqrt(max(f * (1 - f), 0.0))
        return a + (b - a) * f + noise * rng.gauss(0.0, 1.0)

    def usd_per(self, currency: str, ts: float) -> float:
        """US dollars per unit of ``currency`` at ``ts`` (grid point)."""
        if currency == "USD":
            return 1.0
        pair, usd_quoted = USD_RATES[currency]
        price = self.paths[pair][self.index(ts)]
        return price if usd_quoted else 1.0 / price

    def usd_per_exact(self, currency: str, ts: float, digits: dict[str, int]) -> Decimal:
        """The same from the quoted price, as a Decimal (what results use)."""
        if currency == "USD":
            return ONE
        i = self.index(ts)
        rate = self._usd.get((currency, i))
        if rate is None:
            pair, usd_quoted = USD_RATES[currency]
            price = _price(self.paths[pair][i], digits.get(pair, MARKET[pair].digits))
            rate = self._usd[(currency, i)] = price if usd_quoted else 1 / price
        return rate


def _daily_levels(symbol: str, spec: Market, first_day: int, last_day: int) -> list[float]:
    """The log price (relative to the starting price) at the start of each
    UTC day from ``first_day`` to ``last_day``, from the instrument's stream
    of daily shocks since :data:`ANCHOR_DAY`."""
    rng = random.Random(f"{MARKET_SEED}:{symbol}:days")
    sigma = spec.volatility * math.sqrt(86_400 / YEAR)
    level, levels = 0.0, []
    for day in range(min(ANCHOR_DAY, first_day), last_day + 1):
        if day >= first_day:
            levels.append(level)
        shock = rng.gauss(0.0, 1.0)
        if spec.weekend or _weekday(day * 86_400) < 5:
            level = level * (1 - REVERSION) + sigma * shock
    return levels


def _bridge(
    start: float, a: float, b: float, steps: int, sigma: float, symbol: str, day: int
) -> list[float]:
    """One day's prices from log level ``a`` towards ``b``: a random walk of
    ``steps`` steps pinned to both ends (the last point is the next day's)."""
    gauss = random.Random(f"{MARKET_SEED}:{symbol}:{day}").gauss
    walk, w = [0.0], 0.0
    for _ in range(steps - 1):
        w += sigma * gauss(0.0, 1.0)
        walk.append(w)
    end = w + sigma * gauss(0.0, 1.0)
    exp = math.exp
    return [start * exp(a + (b - a - end) * i / steps + walk[i]) for i in range(steps)]


def _price(value: float, digits: int) -> Decimal:
    return Decimal(round(value * POWERS[digits])).scaleb(-digits)


# --- A trader -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tradable:
    symbol: str
    market: Market
    contract: Decimal
    digits: int
    currency: str  # the profit (quote) currency
    fx: bool
    swap_long: Decimal
    swap_short: Decimal


@dataclass
class Trader:
    favourites: list[Tradable]
    weights: list[int]  # cumulative
    risk: float  # share of the balance a usual move may cost
    size: float  # multiplies the drawn volume

    def pick(self, rng: random.Random) -> Tradable:
        return rng.choices(self.favourites, cum_weights=self.weights)[0]


def _trader(rng: random.Random, tradables: Sequence[Tradable]) -> Trader:
    count = min(len(tradables), rng.randint(3, 6))
    pool = list(tradables)
    favourites: list[Tradable] = []
    while len(favourites) < count:
        pick = rng.choices(pool, weights=[t.market.popularity for t in pool])[0]
        pool.remove(pick)
        favourites.append(pick)
    weights = [max(1, round(t.market.popularity * rng.uniform(0.5, 2.0))) for t in favourites]
    return Trader(
        favourites, list(accumulate(weights)), rng.uniform(0.01, 0.04), rng.uniform(0.5, 1.5)
    )


def _holding(rng: random.Random) -> float:
    """Seconds a position is held: scalps, intraday trades and swings."""
    r = rng.random()
    low, high = (120, 3_600) if r < 0.4 else (3_600, 43_200) if r < 0.8 else (43_200, 604_800)
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _lots(rng: random.Random) -> float:
    """A retail trader's volume: mostly small."""
    r = rng.random()
    if r < 0.30:
        return 0.01
    if r < 0.50:
        return rng.choice((0.02, 0.03, 0.04, 0.05))
    if r < 0.65:
        return 0.1
    if r < 0.85:
        return rng.uniform(0.1, 0.5)
    if r < 0.95:
        return rng.uniform(0.5, 1.0)
    return rng.uniform(1.0, MAX_LOTS)


def _weekday(ts: float) -> int:
    """Monday 0 ... Sunday 6, in UTC (1 January 1970 was a Thursday)."""
    return (int(ts) // 86_400 + 3) % 7


def _is_weekend(ts: float) -> bool:
    return _weekday(ts) >= 5


def _rollovers(open_ts: float, close_ts: float, *, weekend: bool) -> int:
    """Swap days charged between opening and closing: one per rollover,
    three on Wednesday and none at the weekend (crypto: one every day)."""
    rollover = int(open_ts) // 86_400 * 86_400 + ROLLOVER_HOUR * 3_600
    if rollover <= open_ts:
        rollover += 86_400
    nights = 0
    while rollover < close_ts:
        weekday = _weekday(rollover)
        if weekend or weekday in (0, 1, 3, 4):
            nights += 1
        elif weekday == 2:
            nights += 3
        rollover += 86_400
    return nights


# --- One account ---------------------------------------------------------------------------


@dataclass
class Account:
    """The platform account being traded, with what the run decides."""

    row: DemoPlatformAccount
    balance: int
    quantum: Decimal
    rows: list[tuple] = field(default_factory=list)
    stop_outs: int = 0
    trader: Trader | None = None


def _minor(amount: Decimal, quantum: Decimal, digits: int) -> int:
    return int(amount.quantize(quantum, rounding=ROUND_HALF_EVEN).scaleb(digits))


class Trading:
    """Deals for accounts on one platform, over one period of one walk."""

    def __init__(
        self,
        *,
        platform: Platform,
        walk: Walk,
        start: int,
        end: int,
        seed: object,
        tradables: Sequence[Tradable],
        closes_from: int | None = None,
    ) -> None:
        self.platform = platform
        self.closes_from = closes_from
        self.walk = walk
        self.start = start
        self.end = end
        self.seed = seed
        self.tradables = tradables
        self.digits = {t.symbol: t.digits for t in tradables}

    def rng_for(self, login: str) -> random.Random:
        if self.seed is None:
            return random.Random()
        return random.Random(f"{self.seed}:{self.platform.pk}:{login}")

    def trade(self, account: Account, count: int, rng: random.Random) -> None:
        trader = account.trader = _trader(rng, self.tradables)
        drafts = (self._draft(trader, rng) for _ in range(count))
        for close_ts, open_ts, tradable, buy, lots in sorted(
            filter(None, drafts), key=itemgetter(0, 1)
        ):
            self._deal(account, trader, rng, open_ts, close_ts, tradable, buy, lots)

    def _draft(self, trader: Trader, rng: random.Random):
        """A deal to be: (close, open, instrument, buy, lots); None when its
        market is closed (a weekend) all the time it could open."""
        tradable = trader.pick(rng)
        span = self.end - self.start
        hold = _holding(rng)
        if hold >= span:
            hold = span * rng.uniform(0.1, 0.9)
        if self.closes_from is not None:  # the beat: deals that closed just now
            close_ts = int(self.closes_from + rng.random() * (self.end - self.closes_from))
            open_ts = min(max(self.start, close_ts - int(hold)), close_ts - 1)
            if not tradable.market.weekend and _is_weekend(open_ts):
                return None
            return close_ts, open_ts, tradable, rng.random() < 0.55, self._lots(trader, rng)
        open_ts = int(self.start + rng.random() * (span - hold))
        if not tradable.market.weekend and _is_weekend(open_ts):
            # Markets other than crypto open on weekdays: on the Friday
            # before, or the Monday after.
            weekday = _weekday(open_ts)
            friday = open_ts - (weekday - 4) * 86_400
            open_ts = friday if friday >= self.start else open_ts + (7 - weekday) * 86_400
            if open_ts >= self.end:
                return None
        close_ts = min(open_ts + max(int(hold), 1), self.end)
        return close_ts, open_ts, tradable, rng.random() < 0.55, self._lots(trader, rng)

    @staticmethod
    def _lots(trader: Trader, rng: random.Random) -> float:
        return min(MAX_LOTS, max(0.01, _lots(rng) * trader.size))

    def _capped(
        self,
        account: Account,
        trader: Trader,
        tradable: Tradable,
        price: float,
        hold: float,
        lots: float,
        ts: float,
    ) -> Decimal | None:
        """The volume a trader with this balance takes, or None (no margin)."""
        row = account.row
        balance = account.balance / POWERS[row.currency_digits]
        to_account = 1.0
        if tradable.currency != row.currency:
            walk = self.walk
            to_account = walk.usd_per(tradable.currency, ts) / walk.usd_per(row.currency, ts)
        notional = float(tradable.contract) * price * to_account  # one lot
        usual_move = notional * tradable.market.volatility * math.sqrt(max(hold, 60) / YEAR)
        by_margin = 0.5 * balance * row.leverage / notional
        if by_margin < 0.01:
            return None
        lots = min(lots, by_margin, max(0.01, trader.risk * balance / usual_move))
        return Decimal(int(lots * 100 + 1e-9)).scaleb(-2)

    def _deal(self, account, trader, rng, open_ts, close_ts, tradable, buy, lots) -> None:
        if account.balance <= 0:
            return
        walk, row = self.walk, account.row
        mid_open = walk.at(tradable.symbol, open_ts, rng)
        mid_close = walk.at(tradable.symbol, close_ts, rng)
        volume = self._capped(
            account, trader, tradable, mid_open, close_ts - open_ts, lots, open_ts
        )
        if volume is None:
            return
        half = tradable.market.spread / 2
        sign = 1 if buy else -1
        open_price = _price(mid_open + sign * half, tradable.digits)
        close_price = _price(mid_close - sign * half, tradable.digits)
        rate = self._rate(tradable.currency, row.currency, close_ts)
        move = close_price - open_price if buy else open_price - close_price
        profit = _minor(
            move * tradable.contract * volume * rate, account.quantum, row.currency_digits
        )
        commission = swap = 0
        if tradable.fx:
            usd_to_account = 1 / walk.usd_per_exact(row.currency, close_ts, self.digits)
            commission = -_minor(
                FX_COMMISSION_PER_LOT_SIDE * 2 * volume * usd_to_account,
                account.quantum,
                row.currency_digits,
            )
        nights = _rollovers(open_ts, close_ts, weekend=tradable.market.weekend)
        if nights:
            share = tradable.swap_long if buy else tradable.swap_short
            notional = (
                open_price
                * tradable.contract
                * volume
                * self._rate(tradable.currency, row.currency, open_ts)
            )
            swap = _minor(notional * share * nights, account.quantum, row.currency_digits)
        if account.balance + profit + commission + swap < 0:
            # Stop-out: the position is closed where the loss takes the whole
            # balance (the close price moved back to match).
            need = -account.balance
            if commission + swap < need:  # charges alone would take more
                commission = max(commission, need)
                swap = need - commission
            cut = need - commission - swap
            if profit:
                moved = (close_price - open_price) * Decimal(cut) / Decimal(profit)
                close_price = (open_price + moved).quantize(close_price)
            profit = cut
            account.stop_outs += 1
        account.balance += profit + commission + swap
        account.rows.append(
            (
                row.login,
                tradable.symbol,
                "buy" if buy else "sell",
                volume,
                int(open_ts),
                int(close_ts),
                open_price,
                close_price,
                profit,
                commission,
                swap,
            )
        )

    def _rate(self, currency: str, account_currency: str, ts: float) -> Decimal:
        """Units of the account's currency per unit of ``currency`` at ``ts``."""
        if currency == account_currency:
            return ONE
        walk = self.walk
        return walk.usd_per_exact(currency, ts, self.digits) / walk.usd_per_exact(
            account_currency, ts, self.digits
        )

    def open_positions(self, account: Account, rng: random.Random) -> tuple[int, int]:
        """(floating, margin) of a few positions still open at the end: about
        two accounts in three hold one to three."""
        if account.balance <= 0 or rng.random() > 0.65:
            return 0, 0
        row, trader = account.row, account.trader or _trader(rng, self.tradables)
        floating = margin = Decimal(0)
        balance = Decimal(account.balance).scaleb(-row.currency_digits)
        for _ in range(rng.randint(1, 3)):
            tradable = trader.pick(rng)
            opened = self.end - min(_holding(rng), self.end - self.start)
            price = self.walk.at(tradable.symbol, opened, rng)
            volume = self._capped(
                account, trader, tradable, price, self.end - opened, _lots(rng), opened
            )
            if volume is None:
                continue
            sign = 1 if rng.random() < 0.55 else -1
            rate = self._rate(tradable.currency, row.currency, self.end)
            now = _price(self.walk.at(tradable.symbol, self.end, rng), tradable.digits)
            then = _price(price, tradable.digits)
            used = now * tradable.contract * volume * rate / row.leverage
            if margin + used > balance * Decimal("0.6"):
                continue
            margin += used
            floating += (now - then) * sign * tradable.contract * volume * rate
        floating = max(floating, -balance / 2)
        return (
            _minor(floating, account.quantum, row.currency_digits),
            _minor(margin, account.quantum, row.currency_digits),
        )


# --- Writing -------------------------------------------------------------------------------

COLUMNS = (
    "platform_id",
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
)


def _when(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _write(platform_id: int, rows: list[tuple]) -> None:
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        if connection.vendor == "postgresql":
            _copy(platform_id, batch)
        else:
            DemoPlatformDeal.objects.bulk_create(
                [
                    DemoPlatformDeal(
                        platform_id=platform_id,
                        login=r[0],
                        symbol=r[1],
                        side=r[2],
                        volume=r[3],
                        open_time=_when(r[4]),
                        close_time=_when(r[5]),
                        open_price=r[6],
                        close_price=r[7],
                        profit=r[8],
                        commission=r[9],
                        swap=r[10],
                    )
                    for r in batch
                ]
            )


def _copy(platform_id: int, rows: list[tuple]) -> None:
    """PostgreSQL's COPY, text format. Logins and symbols are the platform's
    own (digits, letters): nothing to escape, but a tab or a backslash would
    be refused rather than written wrongly."""
    buffer = io.StringIO()
    write = buffer.write
    prefix = f"{platform_id}\t"
    days: dict[int, str] = {}

    def stamp(ts: int) -> str:
        day, second = divmod(ts, 86_400)
        date = days.get(day)
        if date is None:
            date = days[day] = _when(day * 86_400).date().isoformat()
        hours, second = divmod(second, 3_600)
        return f"{date} {hours:02d}:{second // 60:02d}:{second % 60:02d}+00"

    names = {row[0] for row in rows} | {row[1] for row in rows}
    for name in names:
        if any(char in name for char in "\t\n\r\\"):
            raise ValueError(f"Cannot copy the login or symbol {name!r}.")
    for login, symbol, side, volume, opened, closed, o, c, profit, commission, swap in rows:
        write(
            f"{prefix}{login}\t{symbol}\t{side}\t{volume}\t{stamp(opened)}\t{stamp(closed)}\t"
            f"{o}\t{c}\t{profit}\t{commission}\t{swap}\n"
        )
    buffer.seek(0)
    table = DemoPlatformDeal._meta.db_table
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN", buffer, size=1 << 20
        )


# --- The entry points ----------------------------------------------------------------------


def _tradables() -> list[Tradable]:
    return [
        Tradable(
            symbol=i.symbol,
            market=MARKET[i.symbol],
            contract=i.contract_size,
            digits=i.digits,
            currency=i.profit_currency or "USD",
            fx=i.group in FX_GROUPS,
            swap_long=Decimal(str(MARKET[i.symbol].swap_long)),
            swap_short=Decimal(str(MARKET[i.symbol].swap_short)),
        )
        for i in Instrument.objects.filter(is_active=True, symbol__in=MARKET).order_by("symbol")
        if (i.profit_currency or "USD") in CONVERTIBLE and i.contract_size > 0
    ]


def _platforms(platform: Platform | None) -> list[Platform]:
    if platform is not None:
        if platform.kind != "demo":
            raise ValueError(f"{platform} is not a demo platform: the simulator trades only those.")
        return [platform]
    return list(Platform.objects.filter(kind="demo", enabled=True).order_by("pk"))


def _logins(accounts: Iterable | None) -> set[str] | None:
    if accounts is None:
        return None
    return {a.login if isinstance(a, DemoPlatformAccount) else str(a) for a in accounts}


def _timestamp(value: datetime) -> int:
    if timezone.is_naive(value):
        raise ValueError("end must be an aware datetime.")
    return int(value.timestamp())


def run(
    *,
    platform: Platform | None = None,
    accounts: Iterable | None = None,
    counts: dict[str, int] | int,
    days: float,
    end: datetime | None = None,
    seed: object = None,
    closed_after: datetime | None = None,
) -> Simulation:
    """Trade the demo platform's accounts that hold money (all, or those of
    ``accounts``: logins or rows) over the ``days`` before ``end``: ``counts``
    deals each (a number, or one per login); with ``closed_after``, deals
    that close after it (opened within the period). Returns what it did."""
    if days <= 0:
        raise ValueError("days must be positive.")
    started = time.perf_counter()
    end_ts = _timestamp(end or timezone.now())
    start_ts = end_ts - int(days * 86_400)
    walk = Walk(start=start_ts, end=end_ts)
    tradables = _tradables()
    wanted = _logins(accounts)
    result = Simulation()
    if not tradables:
        result.skipped.append("no active instrument the simulator knows")
        return result
    jobs: list[tuple[Trading, int, str, int]] = []
    for target in _platforms(platform):
        trading = Trading(
            platform=target,
            walk=walk,
            start=start_ts,
            end=end_ts,
            seed=seed,
            tradables=tradables,
            closes_from=None if closed_after is None else _timestamp(closed_after),
        )
        rows = DemoPlatformAccount.objects.filter(platform=target, balance__gt=0)
        if wanted is not None:
            rows = rows.filter(login__in=wanted)
        for pk, login in rows.order_by("pk").values_list("pk", "login"):
            count = counts if isinstance(counts, int) else counts.get(login, 0)
            if count < 0:
                raise ValueError("The number of deals cannot be negative.")
            jobs.append((trading, pk, login, count))
    for job in jobs:  # every count was checked before anything is written
        result.add(_trade_account(*job))
    result.seconds = time.perf_counter() - started
    return result


def _one_writer(platform_id: int) -> None:
    """Wait until no other simulator writes deals on this platform.

    The deal sync reads the platform's deals after the last id it saw. Two
    transactions writing at once could commit their ids out of order, and a
    sync between the two commits would step over the later commit's lower
    ids for good. One writer at a time (this lock, held to the commit) keeps
    ids in commit order. SQLite serialises writers by itself."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [WRITER_LOCK, platform_id])


@transaction.atomic
def _trade_account(trading: Trading, pk: int, login: str, count: int) -> Traded:
    _one_writer(trading.platform.pk)
    row = DemoPlatformAccount.objects.select_for_update().get(pk=pk)
    if row.balance <= 0:
        return Traded()
    if row.currency not in CONVERTIBLE:
        return Traded(skipped=f"{login}: no rates for {row.currency}")
    quantum = Decimal(1).scaleb(-row.currency_digits)
    account = Account(row=row, balance=row.balance, quantum=quantum)
    rng = trading.rng_for(login)
    trading.trade(account, count, rng)
    floating, margin = trading.open_positions(account, rng)
    _write(trading.platform.pk, account.rows)
    DemoPlatformAccount.objects.filter(pk=pk).update(
        balance=account.balance, floating=floating, margin=margin
    )
    return Traded(len(account.rows), account.stop_outs)


def simulate(
    *,
    platform: Platform | None = None,
    accounts: Iterable | None = None,
    deals_per_account: int,
    days: float,
    end: datetime | None = None,
    seed: object = None,
) -> int:
    """Write about ``deals_per_account`` deals for each account of the demo
    platform(s) that holds money, closed over the ``days`` before ``end``
    (now); fewer when an account runs out of margin. Returns how many."""
    if deals_per_account < 0:
        raise ValueError("The number of deals cannot be negative.")
    return run(
        platform=platform,
        accounts=accounts,
        counts=deals_per_account,
        days=days,
        end=end,
        seed=seed,
    ).deals


def market_simulate_round(*, seed: object = None, now: datetime | None = None) -> int:
    """The beat task (every ``MARKET_SIMULATOR_INTERVAL`` seconds): 0 to 3
    new deals, closed since the previous round, for each account of every
    enabled demo platform that holds money (at most :data:`ROUND_ACCOUNTS`
    a round); then the deal sync of that platform. Returns how many deals
    were written."""
    rng = random.Random(seed) if seed is not None else random.Random()
    end = now or timezone.now()
    # New deals close between the previous round and now, so that they come
    # on top of the history; they opened up to ROUND_WINDOW before.
    interval = timedelta(seconds=settings.MARKET_SIMULATOR_INTERVAL or 300)
    window = max(ROUND_WINDOW, 2 * interval)
    written = 0
    for platform in _platforms(None):
        # Accounts archived on our side stop trading (their traders would).
        archived = TradingAccount.objects.filter(
            platform=platform, status=TradingAccount.ARCHIVED
        ).values("login")
        logins = list(
            DemoPlatformAccount.objects.filter(platform=platform, balance__gt=0)
            .exclude(login__in=archived)
            .order_by("pk")
            .values_list("login", flat=True)
        )
        if len(logins) > ROUND_ACCOUNTS:
            logins = rng.sample(logins, ROUND_ACCOUNTS)
        counts = {login: rng.randint(*ROUND_DEALS) for login in logins}
        result = run(
            platform=platform,
            accounts=[login for login, n in counts.items() if n],
            counts=counts,
            days=window.total_seconds() / 86_400,
            end=end,
            seed=None if seed is None else f"{seed}:{end.isoformat()}",
            closed_after=end - interval,
        )
        written += result.deals
        if result.deals:
            try:
                deals_sync(platform)
            except PlatformError as exc:  # kept on the platform's row; the beat syncs again
                log.warning("deal sync of %s after a round failed: %s", platform.identifier, exc)
    return written


def deals_sync(platform: Platform):
    """Pull the platform's new deals into our history (the deal sync
    service), or None when that service is not installed."""
    try:
        from ..services.deals import deals_sync_platform
    except ImportError as exc:
        if exc.name != "accounts.services.deals":
            raise
        log.info("The deal sync is not available: deals stay on the platform.")
        return None
    return deals_sync_platform(platform=platform)
