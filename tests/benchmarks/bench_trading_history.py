"""Benchmark: the trading history and analytics pages with 1,000,000 deals.

Run from the project root (not part of the test suite)::

    .venv/bin/python tests/benchmarks/bench_trading_history.py

What it does, all on loopback:

1. drops and re-creates the PostgreSQL database ``backoffice_trading_history_bench``
   and migrates it;
2. opens three trading accounts for one trader through the service (two in
   USD, one in EUR), adds 1,900 other traders with an account each, and
   loads 1,000,000 deals with ``COPY`` over two years, in closing order (as
   a platform reports them), 50,000 of them the trader's, spread among the
   others'; then ``VACUUM ANALYZE``;
3. signs the trader in (session in the database and Redis, as in
   production), counts the SQL queries of each page in-process and records
   the plans of its deal queries (``EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)``:
   per-node timing would inflate the aggregates' times several-fold);
4. starts gunicorn (3 sync workers, DEBUG off, REDIS_URL set) and, for each
   page (history: the newest deals, a deep page near the oldest, EURUSD buys
   in one month a year ago; analytics for 12 months: all USD accounts, one
   account), checks that it answers 200 with the trader's data, then runs
   with the session cookie one round of ``wrk -t1 -c1 -d5s --latency`` (one
   user alone: the latency of the page itself), one round at as many
   connections as the machine has cores (``-t2 -c2 -d10s``) and two rounds
   of ``wrk -t2 -c8 -d10s``, recording the server's CPU time per request and
   other load meanwhile; it also times one CSV export of all 50,000 deals;
   all with the indexes exactly as the migrations create them (the history
   index ``deal_client_time`` covering the analytics' columns);
5. replaces ``deal_client_time`` by the previous, non-covering index on the
   same key (no ``INCLUDE``), measures every page again, for comparison (what
   the covering index buys), and puts the migration's index back;
6. prints the tables and writes the section between
   ``<!-- trading-history:start -->`` and ``<!-- trading-history:end -->`` of
   docs/PERFORMANCE.md (appended when the markers are absent; nothing else
   in the file is touched).

With ``BENCH_REUSE_DB=1`` a database loaded by an earlier run is reused,
which skips step 2, but only when the deal table's indexes are exactly those
the current migrations define (a database loaded before a migration changed
them, or left with the comparison's index by an interrupted run, is dropped
and loaded afresh).

Exit status 1 when a goal is missed with the project's own indexes at
8 connections (history p99 under 150 ms, analytics for a year under 300 ms);
the section states the verdict at 1, 2 and 8 connections.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make tests.benchmarks importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.common import (  # noqa: E402
    CORES,
    DOC,
    HOST,
    PG_PORT,
    PG_USER,
    VENV_BIN,
    log,
)

START_MARK = "<!-- trading-history:start -->"
END_MARK = "<!-- trading-history:end -->"

BENCH_DB = "backoffice_trading_history_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"
TRADER_EMAIL = "trader@history.bench"

DEALS = 1_000_000
TRADER_DEALS = 50_000
OTHER_TRADERS = 1_900
# The trader's accounts: (account type, share of the trader's deals).
TRADER_ACCOUNTS = [("Standard USD", 0.5), ("Standard USD", 0.3), ("Standard EUR", 0.2)]
YEARS = 2
WORKERS = 3
WRK_THREADS = 2
WRK_CONNECTIONS = 8
CORE_CONNECTIONS = CORES  # one round at as many connections as cores
WRK_SECONDS = 10
WARMUP_SECONDS = 2
ROUNDS = 2
SINGLE_SECONDS = 5
# This machine is shared: a round during which everything else used more
# than this share of the CPU is excluded and repeated, up to MAX_ROUNDS.
OTHER_LOAD_LIMIT = 15.0
MAX_ROUNDS = 5
GOAL_HISTORY_P99_MS = 150.0
GOAL_ANALYTICS_P99_MS = 300.0

# The comparison measured in step 5: the history index as it was before the
# migration made it covering (same key, no INCLUDE: the analytics read the heap).
PREVIOUS_INDEX = (
    'CREATE INDEX "deal_client_time" ON "accounts_deal" ("client_id", "close_time" DESC, "id" DESC)'
)
INDEX_NAME = "deal_client_time"

SYMBOLS = {  # symbol: (weight, price, digits)
    "EURUSD": (30, 1.08, 5),
    "GBPUSD": (14, 1.27, 5),
    "USDJPY": (12, 151.0, 3),
    "XAUUSD": (14, 2300.0, 2),
    "US500": (7, 5200.0, 1),
    "GER40": (5, 18000.0, 1),
    "BTCUSD": (5, 64000.0, 2),
    "USDCHF": (4, 0.90, 5),
    "AUDUSD": (4, 0.66, 5),
    "EURJPY": (3, 163.0, 3),
    "USOIL": (2, 78.0, 2),
}
LOTS = ["0.01", "0.02", "0.05", "0.10", "0.20", "0.50", "1.00", "2.00"]

DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    "ENVIRONMENT": "development",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "*",
    "DATABASE_URL": f"postgres://{PG_USER}@{HOST}:{PG_PORT}/{BENCH_DB}",
    "REDIS_URL": REDIS_URL,
    "EMAIL_URL": "dummymail://",
    "LOG_LEVEL": "WARNING",
}
# Removed so that the settings' defaults apply (CONN_MAX_AGE=600, a real broker).
UNSET = (
    "CONN_MAX_AGE",
    "CELERY_TASK_ALWAYS_EAGER",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ROOT_URLCONF",
)


# --- Database ----------------------------------------------------------------------


def setup_django() -> None:
    # Opening accounts runs event subscribers in this process, not on a worker.
    common.setup_django({**DJANGO_ENV, "CELERY_TASK_ALWAYS_EAGER": "1"}, UNSET)


@dataclass
class Loaded:
    trader_id: int
    account_ids: list[int]
    deals: int
    trader_deals: int
    seconds: float
    deep_cursor: str = ""
    month_start: dt.date | None = None
    month_end: dt.date | None = None
    session_key: str = ""


def seed() -> Loaded:
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import AccountType, User
    from accounts.services.trading import trading_account_open

    call_command("migrate", verbosity=0, interactive=False)
    trader = User.objects.create_user(TRADER_EMAIL, first_name="Bench", last_name="Trader")
    accounts = []
    for type_name, _ in TRADER_ACCOUNTS:
        account_type = AccountType.objects.get(platform__identifier="demo", name=type_name)
        accounts.append(trading_account_open(user=trader, account_type=account_type).account)
    others = other_accounts()
    started = time.monotonic()
    trader_deals = bulk_load(trader.pk, accounts, others)
    seconds = time.monotonic() - started
    with connection.cursor() as cur:  # for a later run with BENCH_REUSE_DB=1
        cur.execute(f"COMMENT ON TABLE accounts_deal IS 'loaded in {seconds:.1f}'")
    loaded = Loaded(trader.pk, [a.pk for a in accounts], DEALS, trader_deals, seconds)
    return finish_seed(trader, loaded)


def other_accounts() -> list[tuple[int, int]]:
    """(user id, account id) of the other traders: rows made directly, since
    only their deals matter here."""
    from accounts.models import AccountType, TradingAccount, User

    users = User.objects.bulk_create(
        User(email=f"other{i}@history.bench", password="!", first_name="Other", last_name=str(i))
        for i in range(OTHER_TRADERS)
    )
    account_type = AccountType.objects.get(platform__identifier="demo", name="Standard USD")
    accounts = TradingAccount.objects.bulk_create(
        TradingAccount(
            user=user,
            platform_id=account_type.platform_id,
            account_type=account_type,
            login=f"9{i:06d}",
            currency="USD",
            currency_digits=2,
            leverage=100,
        )
        for i, user in enumerate(users)
    )
    return [(a.user_id, a.pk) for a in accounts]


def bulk_load(trader_id: int, accounts, others: list[tuple[int, int]]) -> int:
    """COPY the deals, oldest first, the trader's spread among the others';
    returns how many are the trader's."""
    from django.db import connection, transaction

    rng = random.Random(20261125)  # noqa: S311 - benchmark data
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=365 * YEARS)
    step = (now - start).total_seconds() / DEALS
    symbols = list(SYMBOLS)
    weights = [SYMBOLS[s][0] for s in symbols]
    trader_rows = set(rng.sample(range(DEALS), TRADER_DEALS))
    account_weights = [share for _, share in TRADER_ACCOUNTS]
    platform_id = accounts[0].platform_id
    imported = now.isoformat()
    mine = 0
    with tempfile.TemporaryFile("w+") as rows:
        for i in range(DEALS):
            if i in trader_rows:
                account = rng.choices(accounts, account_weights)[0]
                client_id, account_id = trader_id, account.pk
                mine += 1
            else:
                client_id, account_id = others[rng.randrange(len(others))]
            symbol = rng.choices(symbols, weights)[0]
            _, base, digits = SYMBOLS[symbol]
            lots = rng.choice(LOTS)
            closed = start + dt.timedelta(seconds=int(i * step))  # whole seconds: ties happen
            held = dt.timedelta(seconds=int(rng.expovariate(1 / 10800)) + 5)
            price = base * (1 + rng.gauss(0, 0.03))
            moved = price * (1 + rng.gauss(0.0002, 0.003))
            volume = float(lots)
            profit = int(rng.gauss(4, 60) * volume * 100)
            commission = -int(700 * volume)
            swap = -int(held.total_seconds() // 86400 * 120 * volume)
            rows.write(
                f"{i + 1}\t{platform_id}\t{10_000_000 + i}\t{account_id}\t{client_id}\t{symbol}\t"
                f"{'buy' if rng.random() < 0.52 else 'sell'}\t{lots}\t"
                f"{(closed - held).isoformat()}\t{closed.isoformat()}\t"
                f"{price:.{digits}f}\t{moved:.{digits}f}\t{profit}\t{commission}\t{swap}\t"
                f"{imported}\n"
            )
        rows.seek(0)
        log(f"generated {DEALS:,} deals ({mine:,} the trader's); COPY")
        with transaction.atomic(), connection.cursor() as cur:
            cur.cursor.copy_expert(
                "COPY accounts_deal (id, platform_id, ticket, account_id, client_id, symbol, "
                "side, volume, open_time, close_time, open_price, close_price, profit, "
                "commission, swap, imported_at) FROM STDIN",
                rows,
            )
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('accounts_deal', 'id'), "
                "(SELECT MAX(id) FROM accounts_deal))"
            )
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE accounts_deal")
    return mine


# An index as (name or None when Django generates it, unique, key columns with
# DESC, included columns, partial).
IndexSig = tuple[str | None, bool, tuple[tuple[str, bool], ...], tuple[str, ...], bool]


def migration_deal_model():
    """accounts.Deal as the migration files on disk define it (not as the
    database's django_migrations table remembers them)."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    state = MigrationLoader(connection, ignore_no_migrations=True).project_state()
    return state.apps.get_model("accounts", "Deal")


def expected_deal_indexes() -> list[IndexSig] | None:
    """The deal table's indexes the migrations create; None when they use
    something this comparison does not model (then the database is not reused)."""
    model = migration_deal_model()
    meta = model._meta
    sigs: list[IndexSig] = []
    if meta.unique_together or getattr(meta, "index_together", None):
        return None
    for f in meta.local_fields:
        if f.primary_key or f.unique:
            sigs.append((None, True, ((f.column, False),), (), False))
            if not f.primary_key and f.get_internal_type() in ("CharField", "TextField"):
                return None  # Django adds a *_like pattern index
        elif f.db_index:
            sigs.append((None, False, ((f.column, False),), (), False))
            if f.get_internal_type() in ("CharField", "TextField"):
                return None
    for index in meta.indexes:
        if index.expressions or index.opclasses or type(index).__name__ != "Index":
            return None
        keys = tuple(
            (meta.get_field(name).column, order == "DESC") for name, order in index.fields_orders
        )
        include = tuple(meta.get_field(name).column for name in index.include)
        sigs.append((index.name, False, keys, include, index.condition is not None))
    for constraint in meta.constraints:
        if type(constraint).__name__ != "UniqueConstraint" or constraint.expressions:
            return None
        if constraint.opclasses or constraint.deferrable:
            return None
        keys = tuple((meta.get_field(name).column, False) for name in constraint.fields)
        include = tuple(meta.get_field(name).column for name in constraint.include)
        sigs.append((constraint.name, True, keys, include, constraint.condition is not None))
    return sorted(sigs, key=repr)


def database_deal_indexes() -> list[IndexSig]:
    """The deal table's indexes in the database, in the same form; indexes
    Django names itself (a primary key, a foreign key's) without their names."""
    from django.db import connection

    meta = migration_deal_model()._meta
    named = {i.name for i in meta.indexes} | {c.name for c in meta.constraints}
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.relname, i.indisunique, i.indnkeyatts,
                   array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         ORDER BY k.n),
                   i.indoption::int2[], i.indpred IS NOT NULL, i.indexprs IS NOT NULL
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = 'accounts_deal'::regclass
            """
        )
        rows = cur.fetchall()
    sigs: list[IndexSig] = []
    for name, unique, nkey, columns, options, partial, expressions in rows:
        keys = tuple(
            (col, bool(opt & 1)) for col, opt in zip(columns[:nkey], options, strict=False)
        )
        sigs.append(
            (
                name if name in named else None,
                unique,
                keys,
                tuple(columns[nkey:]),
                partial or expressions,
            )
        )
    return sorted(sigs, key=repr)


def reuse() -> Loaded | None:
    """The database a previous run loaded, if its deal table has exactly the
    indexes the current migrations create; None otherwise."""
    from django.db import connection

    from accounts.models import Deal, TradingAccount, User

    try:
        trader = User.objects.filter(email=TRADER_EMAIL).first()
    except Exception:  # noqa: BLE001 - no database, or not migrated
        return None
    if trader is None or Deal.objects.filter(client=trader).count() != TRADER_DEALS:
        return None
    expected, found = expected_deal_indexes(), database_deal_indexes()
    if expected is None or found != expected:
        log(
            f"not reusing {BENCH_DB}: its deal indexes differ from the migrations'\n"
            f"  found:    {found}\n  expected: {expected}"
        )
        connection.close()
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT obj_description('accounts_deal'::regclass)")
        seconds = float((cur.fetchone()[0] or "0").split()[-1])
    log(f"reusing {BENCH_DB} (BENCH_REUSE_DB=1): its indexes are the migrations'")
    accounts = TradingAccount.objects.filter(user=trader).order_by("id")
    loaded = Loaded(trader.pk, [a.pk for a in accounts], DEALS, TRADER_DEALS, seconds)
    return finish_seed(trader, loaded)


def finish_seed(trader, loaded: Loaded) -> Loaded:
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client

    from accounts.models import Deal
    from accounts.selectors.deals import DealCursor
    from backoffice.models import Brand

    deals = Deal.objects.filter(client=trader)
    count = deals.count()
    if count != loaded.trader_deals:
        raise RuntimeError(f"the trader has {count} deals, expected {loaded.trader_deals}")
    # A cursor near the oldest deal: the page before it holds the 150th..101st oldest.
    oldest = deals.order_by("close_time", "id").values_list("close_time", "id")[100]
    loaded.deep_cursor = DealCursor(*oldest).encode()
    newest = deals.order_by("-close_time").values_list("close_time", flat=True).first()
    loaded.month_start = (newest - dt.timedelta(days=365)).date().replace(day=1)
    loaded.month_end = (loaded.month_start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(
        days=1
    )
    cache.delete(Brand.CACHE_KEY)  # the brand of this database, not of another run
    client = Client()
    client.force_login(trader)
    loaded.session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    log(
        f"loaded {loaded.deals:,} deals in {loaded.seconds:.1f} s "
        f"({loaded.deals / loaded.seconds:,.0f} rows/s, with the table's indexes); "
        f"the trader has {count:,} on {len(loaded.account_ids)} accounts"
    )
    return loaded


# --- Pages ---------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    path: str
    kind: str  # "history" or "analytics"
    queries: int = 0
    plans: list[str] = field(default_factory=list)
    results: dict[str, list[Result]] = field(default_factory=dict)  # by variant
    single: dict[str, list[Result]] = field(default_factory=dict)  # one connection, by variant
    cores: dict[str, list[Result]] = field(default_factory=dict)  # CORE_CONNECTIONS, by variant

    @property
    def goal_ms(self) -> float:
        return GOAL_HISTORY_P99_MS if self.kind == "history" else GOAL_ANALYTICS_P99_MS

    def counted(self, variant: str) -> list[Result]:
        """The rounds not excluded for other load (all of them if none is clean)."""
        clean = [r for r in self.results[variant] if not r.excluded]
        return clean or self.results[variant]

    def p99_ms(self, variant: str) -> float:
        """The best counted round's p99: other people's load only ever adds latency."""
        return min(r.p99_ms for r in self.counted(variant))

    def alone_ms(self, variant: str) -> float:
        return best_p99(self.single[variant])

    def cores_ms(self, variant: str) -> float:
        return best_p99(self.cores[variant])

    def by_connections(self, variant: str) -> list[tuple[int, float]]:
        """(connections, the best counted round's p99) at 1, the cores, 8."""
        return [
            (1, self.alone_ms(variant)),
            (CORE_CONNECTIONS, self.cores_ms(variant)),
            (WRK_CONNECTIONS, self.p99_ms(variant)),
        ]


def counted_rounds(page: Page, variant: str, connections: int) -> list[Result]:
    """The rounds a verdict is drawn from: those not excluded (all when none is clean)."""
    if connections == WRK_CONNECTIONS:
        return page.counted(variant)
    rounds = page.single[variant] if connections == 1 else page.cores[variant]
    return [r for r in rounds if not r.excluded] or rounds


def missed_rounds(page: Page, variant: str, connections: int) -> tuple[list[float], int]:
    """The p99s of the counted rounds that missed the goal, and how many were counted."""
    rounds = counted_rounds(page, variant, connections)
    return [r.p99_ms for r in rounds if r.p99_ms >= page.goal_ms], len(rounds)


def best_p99(rounds: list[Result]) -> float:
    """The best p99 of the rounds not excluded for other load (of all rounds
    when every one was excluded)."""
    clean = [r for r in rounds if not r.excluded]
    return min(r.p99_ms for r in clean or rounds)


def pages_for(loaded: Loaded) -> list[Page]:
    history = "/room/history/"
    analytics = "/room/history/analytics/"
    month = f"date_from={loaded.month_start.isoformat()}&date_to={loaded.month_end.isoformat()}"
    return [
        Page("history: first page", history, "history"),
        Page("history: deep page (near the oldest)", f"{history}?before={loaded.deep_cursor}",
             "history"),
        Page("history: EURUSD buys in one month a year ago",
             f"{history}?instrument=EURUSD&side=buy&{month}", "history"),
        Page("analytics: 12 months, all USD accounts", f"{analytics}?period=year", "analytics"),
        Page("analytics: 12 months, one account",
             f"{analytics}?account={loaded.account_ids[0]}&period=year", "analytics"),
    ]  # fmt: skip


def measure_queries(pages: list[Page], session_key: str) -> None:
    """Count each page's SQL queries and EXPLAIN ANALYZE its deal queries."""
    from django.conf import settings
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    for page in pages:
        client.get(page.path)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(page.path)
        if response.status_code != 200:
            raise RuntimeError(f"{page.path} answered {response.status_code}")
        page.queries = len(ctx.captured_queries)
        page.plans = []
        for query in ctx.captured_queries:
            if 'FROM "accounts_deal"' not in query["sql"]:
                continue
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) " + query["sql"])
                plan = "\n".join(row[0] for row in cur.fetchall())
            page.plans.append(f"{common.shorten_sql(query['sql'], 400)}\n\n{plan}")
    connections.close_all()


def index_sizes() -> str:
    """The sizes of the deal table's indexes, e.g. "deal_client_time 30 MB, ..."."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexrelid::regclass::text, pg_size_pretty(pg_relation_size(indexrelid)) "
            "FROM pg_index WHERE indrelid = 'accounts_deal'::regclass ORDER BY 1"
        )
        return ", ".join(f"`{name}` {size}" for name, size in cur.fetchall())


def use_previous_index() -> None:
    """Step 5: the history index as it was before it became covering."""
    from django.db import connection, connections

    with connection.cursor() as cur:
        cur.execute(f'DROP INDEX "{INDEX_NAME}"')
        cur.execute(PREVIOUS_INDEX)
        cur.execute("VACUUM ANALYZE accounts_deal")
    connections.close_all()


def restore_migration_index() -> None:
    """Put back the history index exactly as the migration creates it (the
    schema editor's SQL for the migration state's index), so that the
    database may be reused."""
    from django.db import connection, connections

    model = migration_deal_model()
    index = next(i for i in model._meta.indexes if i.name == INDEX_NAME)
    with connection.cursor() as cur:
        cur.execute(f'DROP INDEX "{INDEX_NAME}"')
    with connection.schema_editor() as editor:
        editor.add_index(model, index)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE accounts_deal")
    if database_deal_indexes() != expected_deal_indexes():
        raise RuntimeError("the deal indexes differ from the migrations' after the comparison")
    connections.close_all()


# --- Server and wrk --------------------------------------------------------------------


def server_env() -> dict[str, str]:
    env = common.child_env(DJANGO_ENV, UNSET)
    env["PYTHONPATH"] = str(ROOT)
    return env


def gunicorn_command(port: int) -> list[str]:
    return common.gunicorn_command(port, WORKERS)


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str
    server_cpu_ms: float = 0.0  # gunicorn workers + PostgreSQL backends, per request
    others_cpu_pct: float = 0.0  # CPU of everything else on the machine, % of all cores

    @property
    def excluded(self) -> bool:
        return self.others_cpu_pct > OTHER_LOAD_LIMIT


def wrk_command(url: str, cookie: str, seconds: int, connections: int = WRK_CONNECTIONS):
    threads = min(WRK_THREADS, connections)
    return common.wrk_command(url, cookie, seconds, threads, connections)


def run_wrk(url: str, cookie: str, seconds: int, connections: int = WRK_CONNECTIONS) -> Result:
    command = wrk_command(url, cookie, seconds, connections)
    out = common.parse_wrk(common.wrk_output(command, seconds))
    return Result(out.rps, out.p50_ms, out.p99_ms, out.requests, out.errors)


def server_pids(master_pid: int) -> list[int]:
    """The gunicorn workers and the PostgreSQL backends of the bench database."""
    return common.children_of(master_pid) + common.database_backends(BENCH_DB)


def server_cpu_s(pids: list[int]) -> dict[int, float | None]:
    return {p: common.process_cpu_s(p) for p in pids}


def measured(
    url: str, cookie: str, seconds: int, master_pid: int, connections: int = WRK_CONNECTIONS
) -> Result:
    """wrk on one URL, with the server's CPU time per request and the load of
    everything else (not the server, not wrk) meanwhile. The server's
    processes are listed anew each round (a PostgreSQL backend may have been
    replaced); one that ends during the round is left out of both sums."""
    pids = server_pids(master_pid)
    wrk_before = os.times()
    before = (time.monotonic(), server_cpu_s(pids), common.machine_busy_s())
    result = run_wrk(url, cookie, seconds, connections)
    after = (time.monotonic(), server_cpu_s(pids), common.machine_busy_s())
    wrk_after = os.times()
    wrk_s = (wrk_after.children_user + wrk_after.children_system) - (
        wrk_before.children_user + wrk_before.children_system
    )
    server_s = sum(
        max(end - start, 0.0)
        for p, start in before[1].items()
        if start is not None and (end := after[1].get(p)) is not None
    )
    others_s = (after[2] - before[2]) - server_s - wrk_s
    result.server_cpu_ms = server_s / max(result.requests, 1) * 1000
    result.others_cpu_pct = max(others_s, 0.0) / ((after[0] - before[0]) * CORES) * 100
    return result


def check_page(base: str, page: Page, cookie: str) -> None:
    status, body = common.fetch(base + page.path, cookie, timeout=30)
    marker = "<tbody" if page.kind == "history" else 'role="img"'
    if status != 200 or marker not in body:
        raise RuntimeError(f"{page.path} answered {status} without the trader's data")


def measure_pages(base: str, pages: list[Page], cookie: str, master_pid: int, variant: str):
    for page in pages:
        check_page(base, page, cookie)
        run_wrk(base + page.path, cookie, WARMUP_SECONDS)
    for page in pages:
        rounds = page.results.setdefault(variant, [])
        while sum(not r.excluded for r in rounds) < ROUNDS and len(rounds) < MAX_ROUNDS:
            r = measured(base + page.path, cookie, WRK_SECONDS, master_pid)
            rounds.append(r)
            log(
                f"{variant}, round {len(rounds)}, {page.name}: {r.rps:,.0f} req/s, "
                f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
                f"server CPU {r.server_cpu_ms:.2f} ms/request, other load "
                f"{r.others_cpu_pct:.0f} %{' (excluded)' if r.excluded else ''}"
                f"{', ' + r.errors if r.errors else ''}"
            )
        for connections, seconds, store in (
            (1, SINGLE_SECONDS, page.single),
            (CORE_CONNECTIONS, WRK_SECONDS, page.cores),
        ):
            runs = store.setdefault(variant, [])
            while not any(not r.excluded for r in runs) and len(runs) < MAX_ROUNDS - 2:
                r = measured(base + page.path, cookie, seconds, master_pid, connections)
                runs.append(r)
                log(
                    f"{variant}, {connections} connection(s), {page.name}: {r.rps:,.0f} req/s, "
                    f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
                    f"server CPU {r.server_cpu_ms:.2f} ms/request, "
                    f"other load {r.others_cpu_pct:.0f} %{' (excluded)' if r.excluded else ''}"
                )


@dataclass
class Export:
    seconds: float
    rows: int
    size: int


def time_export(base: str, cookie: str, expected: int) -> Export:
    started = time.monotonic()
    status, body = common.fetch(base + "/room/history/export.csv", cookie, timeout=120)
    seconds = time.monotonic() - started
    rows = body.count("\n") - 1
    if status != 200 or rows != expected:
        raise RuntimeError(f"the export answered {status} with {rows} rows, not {expected}")
    return Export(seconds, rows, len(body.encode()))


# --- Report --------------------------------------------------------------------------


def plan_summary(plan: str) -> str:
    """The statement, then the plan's node lines, and its execution time."""
    sql, _, body = plan.partition("\n\n")
    lines = [
        line.rstrip()
        for line in body.splitlines()
        if "->" in line
        or line.lstrip().startswith(
            ("Index Cond", "Filter", "Rows Removed", "Heap Fetches", "Heap Blocks")
        )
        or line.startswith(("Limit", "Sort", "GroupAggregate", "HashAggregate", "Aggregate"))
        or line.startswith("Execution Time")
    ]
    return sql + "\n\n" + "\n".join(lines)


def results_table(pages: list[Page], variant: str) -> str:
    rows = []
    for page in pages:
        runs = [(1, n, r) for n, r in enumerate(page.single[variant], 1)]
        runs += [(CORE_CONNECTIONS, n, r) for n, r in enumerate(page.cores[variant], 1)]
        runs += [(WRK_CONNECTIONS, n, r) for n, r in enumerate(page.results[variant], 1)]
        for connections, n, r in runs:
            ok = "yes" if r.p99_ms < page.goal_ms else "**no**"
            label = f"{n} (excluded)" if r.excluded else str(n)
            rows.append(
                f"| {page.name} | {connections} | {label} | {page.queries} | {r.rps:,.0f} "
                f"| {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | {ok} (< {page.goal_ms:.0f} ms) "
                f"| {r.server_cpu_ms:.2f} ms | {r.others_cpu_pct:.0f} % | {r.errors or 'none'} |"
            )
    head = (
        "| page | connections | round | SQL queries | requests/s | p50 | p99 | p99 goal "
        "| server CPU / request | other load | errors |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    return head + "\n" + "\n".join(rows)


def index_definitions() -> list[str]:
    """The deal table's indexes as PostgreSQL reports them."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'accounts_deal'::regclass ORDER BY indexrelid::regclass::text"
        )
        return [row[0].replace("public.", "") for row in cur.fetchall()]


def deal_query_ms(page_plans: list[str]) -> float:
    """The summed execution time of a page's deal queries (EXPLAIN ANALYZE)."""
    return sum(
        float(t) for plan in page_plans for t in re.findall(r"Execution Time: ([\d.]+) ms", plan)
    )


def verdict_at(pages: list[Page], variant: str, connections: int) -> str:
    missed = [p.name for p in pages if dict(p.by_connections(variant))[connections] >= p.goal_ms]
    where = "alone (1 connection)" if connections == 1 else f"at {connections} connections"
    shaky = []
    for p in pages:
        misses, counted = missed_rounds(p, variant, connections)
        if p.name not in missed and misses:
            shaky.append(
                f"{p.name} missed it in {len(misses)} of its {counted} counted rounds "
                f"(p99 {', '.join(f'{ms:.1f}' for ms in misses)} ms)"
            )
    if not missed:
        if shaky:
            return f"{where}: **met** by every page in its best round, but " + "; ".join(shaky)
        return f"{where}: **met** by every page"
    return (
        f"{where}: **missed** by {', '.join(missed)}; met by the others"
        if len(missed) < len(pages)
        else f"{where}: **missed** by every page"
    )


def render_section(
    info: dict[str, str],
    loaded: Loaded,
    pages: list[Page],
    plans: dict[str, list[list[str]]],
    sizes: dict[str, str],
    definitions: list[str],
    export: Export,
    port: int,
    started: str,
) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in DJANGO_ENV.items() if k != "EMAIL_URL")
    gunicorn = " ".join(shlex.quote(p) for p in gunicorn_command(port)).replace(
        str(VENV_BIN), ".venv/bin"
    )
    wrk = " ".join(
        shlex.quote(p)
        for p in wrk_command(
            f"http://{HOST}:{port}<URL>", "sessionid=<the trader's session>", WRK_SECONDS
        )
    )
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    levels = (1, CORE_CONNECTIONS, WRK_CONNECTIONS)
    headline = "\n".join(f"- {verdict_at(pages, 'base', c)}" for c in levels)

    def verdict(page: Page, variant: str, connections: int, ms: float) -> str:
        if ms >= page.goal_ms:
            return "**missed**"
        misses, counted = missed_rounds(page, variant, connections)
        if misses:
            others = ", ".join(f"{m:.1f} ms" for m in misses)
            return f"met; **missed** in {len(misses)} of {counted} rounds: {others}"
        return "met"

    def per_level(page: Page, variant: str) -> str:
        return ", ".join(
            f"{ms:.1f} ms "
            + ("alone" if c == 1 else f"at {c}")
            + f" ({verdict(page, variant, c, ms)})"
            for c, ms in page.by_connections(variant)
        )

    verdicts = "\n".join(
        f"- {p.name} (`{p.path.split('/room/', 1)[1]}`), goal {p.goal_ms:.0f} ms: "
        f"{per_level(p, 'base')}; with the previous index {per_level(p, 'previous')}"
        for p in pages
    )

    def cpu(page: Page, variant: str) -> float:
        return min(r.server_cpu_ms for r in page.counted(variant))

    bought = "\n".join(
        f"| {p.name} | {deal_query_ms(base_plans):.1f} ms | {deal_query_ms(prev_plans):.1f} ms "
        f"| {cpu(p, 'base'):.1f} ms | {cpu(p, 'previous'):.1f} ms "
        f"| {p.p99_ms('base'):.1f} ms | {p.p99_ms('previous'):.1f} ms |"
        for p, base_plans, prev_plans in zip(pages, plans["base"], plans["previous"], strict=True)
    )
    cores_wrk = f"wrk -t{min(WRK_THREADS, CORE_CONNECTIONS)} -c{CORE_CONNECTIONS} -d{WRK_SECONDS}s"
    bought_head = (
        "| page | deal queries (EXPLAIN ANALYZE), covering | previous "
        f"| server CPU / request at {WRK_CONNECTIONS}, covering | previous "
        f"| p99 at {WRK_CONNECTIONS}, covering | previous |\n"
        "| --- | --- | --- | --- | --- | --- | --- |"
    )
    analytics = [i for i, p in enumerate(pages) if p.kind == "analytics"]
    prev_blocks = [
        int(n)
        for i in analytics
        for plan in plans["previous"][i]
        for n in re.findall(r"Heap Blocks: exact=(\d+)", plan)
    ]
    heap_blocks = f"up to {max(prev_blocks):,}" if prev_blocks else "thousands of"
    base_analytics = [plan for i in analytics for plan in plans["base"][i]]
    index_only = sum("Index Only Scan" in plan for plan in base_analytics)
    fetches = [int(n) for plan in base_analytics for n in re.findall(r"Heap Fetches: (\d+)", plan)]
    fetch_note = f" (`Heap Fetches` at most {max(fetches):,})" if fetches else ""
    plan_text = []
    for variant, label in (("base", "with the project's indexes"), ("previous", "with the "
                           "previous, non-covering index")):  # fmt: skip
        for page, page_plans in zip(pages, plans[variant], strict=True):
            body = "\n\n".join(plan_summary(p) for p in page_plans)
            plan_text.append(f"{page.name}, {label}:\n\n```\n{body}\n```")
    project_indexes = "\n".join(f"    {d};" for d in definitions)
    return f"""{START_MARK}
## Trading history and analytics with 1,000,000 deals

The trader's history (`/room/history/`, 50 deals a page, keyset paging on
(close time, id): no OFFSET, no COUNT) and analytics (`/room/history/analytics/`,
aggregates in SQL: one query grouped by instrument, one by day) with
{loaded.deals:,} deals in the table, {loaded.trader_deals:,} of them one trader's on
{len(loaded.account_ids)} accounts (two USD, one EUR) over {YEARS} years, spread
among {OTHER_TRADERS:,} other traders' deals in closing order, loaded with `COPY`
in {loaded.seconds:.0f} s (with the table's indexes and foreign keys) and
`VACUUM ANALYZE`d. Goals: history p99 under {GOAL_HISTORY_P99_MS:.0f} ms, analytics
for a year under {GOAL_ANALYTICS_P99_MS:.0f} ms. With the project's indexes (as the
migrations create them), on {CORES} cores:

{headline}

Run {started} by

    .venv/bin/python tests/benchmarks/bench_trading_history.py

which re-creates the database `{BENCH_DB}` (or reuses it with `BENCH_REUSE_DB=1`
only when its deal indexes are exactly the current migrations'), loads the data,
starts

    {env} \\
      {gunicorn}

and measures each page in turn, after a {WARMUP_SECONDS} s warm-up: one round alone,
`wrk -t1 -c1 -d{SINGLE_SECONDS}s` (the latency of the page itself), one round at as
many connections as cores, `{cores_wrk}`, and {ROUNDS} rounds of

    {wrk}

then replaces the history index by the previous, non-covering one (the same key,
without `INCLUDE`; nothing else changed), measures again, and puts the migration's
index back:

    DROP INDEX "{INDEX_NAME}";
    {PREVIOUS_INDEX};
    VACUUM ANALYZE accounts_deal;

The deal table's indexes as the migrations create them (the foreign keys
`platform`, `account` and `client` have `db_index=False`: each leads a composite
index, and every index is written for every imported deal):

{project_indexes}

Machine:

{machine}

With the project's indexes:

{results_table(pages, "base")}

With the previous, non-covering `{INDEX_NAME}` instead (for comparison):

{results_table(pages, "previous")}

A round during which other load exceeded {OTHER_LOAD_LIMIT:.0f} % is marked *excluded* and
repeated (at most {MAX_ROUNDS} rounds of {WRK_CONNECTIONS} connections and {MAX_ROUNDS - 2} of 1 or
{CORE_CONNECTIONS} a page). Per page and concurrency, the best counted round's p99, or the
best of all its rounds when every one was excluded (other people's load only
adds latency):

{verdicts}

**What the covering index buys.** With the previous index each analytics query
reads the trader's deals of the year from the table ({heap_blocks} heap pages,
`Heap Blocks` in the plans below); with the covering `{INDEX_NAME}`
{index_only} of the {len(base_analytics)} analytics deal queries are index-only
scans{fetch_note}. The history pages read 50 rows either way. Side by side (the
deal queries' execution time from the plans below; server CPU and p99 from
the best counted rounds at {WRK_CONNECTIONS} connections):

{bought_head}
{bought}

Index sizes with the project's indexes: {sizes["base"]}; with the previous
index: {sizes["previous"]}.

The CSV export of all {export.rows:,} deals (streamed in keyset chunks of
2,000) took {export.seconds:.1f} s for {export.size / 1e6:.1f} MB
({export.rows / export.seconds:,.0f} rows/s), one request with nothing else of ours running.

*Server CPU / request* is the CPU time of the gunicorn workers and their
PostgreSQL backends divided by the requests served (from /proc); *other load*
is the CPU used meanwhile by everything else on the machine, as a share of
all cores. At {CORE_CONNECTIONS} connections on {CORES} cores each request has about a
core (gunicorn and PostgreSQL share them); at {WRK_CONNECTIONS} the server is saturated
and requests queue, so latency is about connections ÷ requests/s: a page that
costs c ms of server CPU cannot answer {WRK_CONNECTIONS} concurrent users in much less
than {WRK_CONNECTIONS} × c ÷ {CORES} ms.

SQL queries per request, counted in-process: the user (the session comes
from Redis), the trader's accounts, the instruments' digits (history only),
then the deals: one page (history), or one query grouped by instrument and
one by day (analytics). The plans of the deal queries (`EXPLAIN (ANALYZE,
BUFFERS, TIMING OFF)` on the loaded database):

{chr(10).join(plan_text)}

Figures on this machine vary by about ±20 % between runs
(shared/BASELINES.md).
{END_MARK}"""


# --- Main ----------------------------------------------------------------------------


def main() -> int:
    os.chdir(ROOT)
    if not (VENV_BIN / "gunicorn").exists():
        log(f"{VENV_BIN / 'gunicorn'} is not installed")
        return 2
    started = common.started_label()
    loaded = None
    if os.environ.get("BENCH_REUSE_DB") == "1":
        setup_django()
        loaded = reuse()
    if loaded is None:
        log(f"re-creating database {BENCH_DB}")
        common.recreate_database(BENCH_DB)
        setup_django()
        loaded = seed()
    pages = pages_for(loaded)
    plans: dict[str, list[list[str]]] = {}
    measure_queries(pages, loaded.session_key)
    plans["base"] = [p.plans for p in pages]
    sizes = {"base": index_sizes()}
    definitions = index_definitions()
    for page in pages:
        times = [re.findall(r"Execution Time: ([\d.]+) ms", plan) for plan in page.plans]
        log(f"{page.path}: {page.queries} SQL queries; deal queries {times} ms")
    info = common.web_machine_info(BENCH_DB)
    info["Redis"] = common.redis_version(REDIS_URL)
    cookie = f"sessionid={loaded.session_key}"
    port = common.free_port()
    base = f"http://{HOST}:{port}"
    log(f"starting gunicorn on {base}")
    with common.gunicorn(gunicorn_command(port), server_env()) as proc:
        common.wait_until_up(base + "/healthz", proc, ok=(200, 503))
        for page in pages:
            check_page(base, page, cookie)
        measure_pages(base, pages, cookie, proc.pid, "base")
        export = time_export(base, cookie, loaded.trader_deals)
        log(f"CSV export: {export.rows:,} rows in {export.seconds:.1f} s")
        log("replacing deal_client_time by the previous, non-covering index")
        use_previous_index()
        try:
            measure_queries(pages, loaded.session_key)
            plans["previous"] = [p.plans for p in pages]
            sizes["previous"] = index_sizes()
            measure_pages(base, pages, cookie, proc.pid, "previous")
        finally:
            log("putting the migration's deal_client_time back")
            restore_migration_index()
    section = render_section(info, loaded, pages, plans, sizes, definitions, export, port, started)
    print()
    print(section)
    common.write_marked_section(START_MARK, END_MARK, section)
    log(f"wrote {DOC.relative_to(ROOT)} (between the trading-history markers)")
    return 0 if all(p.p99_ms("base") < p.goal_ms for p in pages) else 1


if __name__ == "__main__":
    sys.exit(main())
