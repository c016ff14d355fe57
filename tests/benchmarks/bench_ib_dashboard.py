"""Benchmark: the partner dashboard's overview (/partner/) for a partner with
10,000 clients in the downline.

Run from the project root (not part of the test suite)::

    .venv/bin/python tests/benchmarks/bench_ib_dashboard.py

What it does, all on loopback:

1. drops and re-creates the PostgreSQL database ``ib_e_bench`` and migrates it
   (``BENCH_REUSE_DB=1`` keeps a database an earlier run loaded);
2. builds an IB tree of 1,000 partners through ``partner_create``: the
   measured partner at the top of 120 sub-partners on two levels (20 under
   it, 5 under each of those), and 879 other partners elsewhere; loads with
   ``COPY`` 20,000 clients (10,000 in the partner's downline: 2,000 direct,
   the rest under the sub-partners; 10,000 under the other partners) with
   profiles, KYC levels, trading accounts and wallets, 1,000,000 deals over
   two years (500,000 of the downline), 20,000 deposits and 5,000
   withdrawals of the downline, and the commission rows a 70/20/10 plan
   gives for the downline's deals (one per deal and partner of the chain:
   about 1,000,000, 500,000 of them the measured partner's); ``VACUUM ANALYZE``;
   then (a reused database too, once) a demo account for every fifth client
   with 10 deals each (virtual money: no volume on the dashboard);
3. signs the partner in (session in the database and Redis) and, in this
   process through Django's test client on PostgreSQL and Redis, requests
   /partner/ ``WARMUP`` times, then ``REQUESTS`` times timing each request:
   while new deals of the downline (and the partner's commissions on them)
   are committed before every request, then with nothing new, then (fewer
   times) with no snapshot in the cache, so that every request takes one;
   records the queries of one request of each and the time of each query of
   taking a snapshot;
4. times the other dashboard pages (clients, sub-partners, commissions)
   over ``OTHER_REQUESTS`` requests each, for the record;
5. prints the tables and writes the section "Partner dashboard overview" of
   docs/PERFORMANCE.md (appended when absent; nothing else is touched).

Exit status 1 when the overview's p99 while deals arrive is 200 ms or more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make tests.benchmarks importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.common import DOC, HOST, PG_PORT, PG_USER, log  # noqa: E402

SECTION_TITLE = "## Partner dashboard overview"
BENCH_DB = "ib_e_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"
PARTNER_EMAIL = "partner@ib.bench"

SUBS = 20
SUBS_EACH = 5
OTHER_PARTNERS = 879
DIRECT_CLIENTS = 2_000
DOWNLINE_CLIENTS = 10_000
OTHER_CLIENTS = 10_000
DOWNLINE_DEALS = 500_000
OTHER_DEALS = 500_000
DEPOSITS = 20_000
WITHDRAWALS = 5_000
YEARS = 2
TIER_SHARES = (Decimal(70), Decimal(20), Decimal(10))
REBATE_PER_LOT = 1000  # minor units: 10.00 USD per lot

WARMUP = 20
REQUESTS = 300
OTHER_REQUESTS = 60
COLD_REQUESTS = 40
REFRESH_EVERY = 10  # seconds (production: 600)
ARRIVAL_TICKETS = 90_000_000  # tickets of the deals that arrive while measuring
DEMO_EVERY = 5  # every fifth client (by id) also has a demo account ...
DEMO_DEALS_EACH = 10  # ... with this many deals of 1 lot after their sign-up
GOAL_MS = 200.0

DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    "ENVIRONMENT": "development",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "*",
    "DATABASE_URL": f"postgres://{PG_USER}@{HOST}:{PG_PORT}/{BENCH_DB}",
    "REDIS_URL": REDIS_URL,
    "EMAIL_URL": "dummymail://",
    "LOG_LEVEL": "WARNING",
    "CELERY_TASK_ALWAYS_EAGER": "1",
}
UNSET = ("CONN_MAX_AGE", "SECRET_KEY", "SECRET_KEY_FILE")

FIRST = ["Maria", "John", "Aiko", "Lukas", "Sofia", "Omar", "Chen", "Ana", "Pierre", "Nia"]
LAST = ["Kowalski", "Smith", "Tanaka", "Müller", "Rossi", "Haddad", "Wang", "Silva", "Dubois"]
COUNTRIES = ["GB", "DE", "FR", "ES", "IT", "PL", "NL", "SE", "AE", "JP"]
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US500", "BTCUSD"]
LOTS = ["0.01", "0.05", "0.10", "0.10", "0.20", "0.50", "1.00", "1.00", "2.00", "5.00"]


# --- Loading -----------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value).replace("\\", "\\\\")
    return str(value).replace("\t", " ").replace("\n", " ")


def copy_rows(table: str, columns: list[str], rows) -> int:
    """COPY ``rows`` (tuples in ``columns`` order) into ``table``; sets the
    id sequence after; returns the number of rows."""
    from django.db import connection

    count = 0
    with tempfile.TemporaryFile("w+") as f:
        for row in rows:
            f.write("\t".join(_text(v) for v in row) + "\n")
            count += 1
        f.seek(0)
        with connection.cursor() as cur:
            cur.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", f)
            if "id" in columns:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT MAX(id) FROM {table}))"
                )
    return count


def next_id(model) -> int:
    from django.db.models import Max

    return (model.objects.aggregate(m=Max("id"))["m"] or 0) + 1


@dataclass
class Loaded:
    partner_id: int
    partner_user_id: int
    clients: int
    deals: int
    downline_deals: int
    deposits: int
    withdrawals: int
    commissions: int
    partner_commissions: int
    partners: int
    seconds: float
    demo_deals: int = 0
    downline_demo_deals: int = 0


def _users(prefix: str, n: int, rng: random.Random, start: dt.datetime) -> list:
    from accounts.models import User

    return User.objects.bulk_create(
        (
            User(
                email=f"{prefix}{i}@ib.bench",
                password="!",
                first_name=rng.choice(FIRST),
                last_name=rng.choice(LAST),
                date_joined=start,
            )
            for i in range(n)
        ),
        batch_size=5000,
    )


def build_tree(rng: random.Random, plan) -> tuple:
    """The measured partner, its 120 sub-partners (by level) and the others."""
    from ib.services import partner_create

    now = dt.datetime.now(dt.UTC)
    users = _users("partner", 1 + SUBS + SUBS * SUBS_EACH + OTHER_PARTNERS, rng, now)
    users[0].email = PARTNER_EMAIL
    users[0].save(update_fields=["email"])
    it = iter(users)
    top = partner_create(actor=None, user=next(it), plan=plan)
    subs = [partner_create(actor=None, user=next(it), parent=top, plan=plan) for _ in range(SUBS)]
    subsubs = [
        partner_create(actor=None, user=next(it), parent=sub, plan=plan)
        for sub in subs
        for _ in range(SUBS_EACH)
    ]
    others = []
    roots = []
    for i in range(OTHER_PARTNERS):
        parent = rng.choice(roots) if roots and i % 10 else None
        p = partner_create(actor=None, user=next(it), parent=parent, plan=plan)
        others.append(p)
        if p.depth < 4:
            roots.append(p)
    log(f"tree: 1 + {len(subs)} + {len(subsubs)} partners in the downline, {len(others)} others")
    return top, subs, subsubs, others


def _between(start: dt.datetime, end: dt.datetime, rng: random.Random) -> dt.datetime:
    return start + dt.timedelta(seconds=int((end - start).total_seconds() * rng.random()))


def seed() -> Loaded:
    from django.core.management import call_command
    from django.db import connection, transaction

    from accounts.models import AccountType, ClientProfile, Deal, TradingAccount, User
    from ib.models import Commission, Partner, Referral
    from kyc.models import ClientKyc, Level
    from payments.models import (
        Deposit,
        JournalTransaction,
        LedgerAccount,
        PaymentMethod,
        Withdrawal,
    )
    from tests.ib.factories import make_plan

    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    rng = random.Random(20261126)  # noqa: S311 - benchmark data
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=365 * YEARS)
    plan = make_plan(rebate="10", tier_shares="70, 20, 10", name="Bench 70/20/10")
    version = plan.versions.get()
    top, subs, subsubs, others = build_tree(rng, plan)

    # Clients: the downline's (direct, under a sub, under a sub-sub), then the others'.
    homes = [top] * DIRECT_CLIENTS
    rest = DOWNLINE_CLIENTS - DIRECT_CLIENTS
    homes += [rng.choice(subs if rng.random() < 0.25 else subsubs) for _ in range(rest)]
    homes += [rng.choice(others) for _ in range(OTHER_CLIENTS)]
    clients = _users("client", len(homes), rng, start)
    log(f"{len(clients):,} clients")
    levels = list(Level.objects.order_by("number"))
    account_type = AccountType.objects.get(platform__identifier="demo", name="Standard USD")
    with transaction.atomic():
        ClientProfile.objects.bulk_create(
            (ClientProfile(user=c, country=rng.choice(COUNTRIES)) for c in clients),
            batch_size=5000,
        )
        ClientKyc.objects.bulk_create(
            (ClientKyc(user=c, level=rng.choice(levels)) for c in clients), batch_size=5000
        )
        accounts = TradingAccount.objects.bulk_create(
            (
                TradingAccount(
                    user=c,
                    platform_id=account_type.platform_id,
                    account_type=account_type,
                    login=f"8{i:07d}",
                    currency="USD",
                    currency_digits=2,
                    leverage=100,
                )
                for i, c in enumerate(clients)
            ),
            batch_size=5000,
        )
        # Sign-ups spread over the two years, more of them recently.
        since = [
            now - dt.timedelta(seconds=int((365 * YEARS * 86400) * rng.random() ** 1.5))
            for _ in clients
        ]
        for c, s in zip(clients, since, strict=True):
            c.date_joined = s  # signed up through the link
        User.objects.bulk_update(clients, ["date_joined"], batch_size=5000)
        Referral.objects.bulk_create(
            (
                Referral(client=c, partner=home, source=Referral.COOKIE, since=s)
                for c, home, s in zip(clients, homes, since, strict=True)
            ),
            batch_size=5000,
        )
    log("profiles, KYC, trading accounts, referrals")

    paths = {p.pk: p for p in [top, *subs, *subsubs]}
    by_id = {p.pk: p for p in Partner.objects.all()}

    def chain(home_id: int) -> list[int]:
        """The partner chain from the client's partner up to the measured
        partner (the downline's deals earn only there)."""
        node = by_id[home_id]
        result = []
        while node is not None and node.pk in paths:
            result.append(node.pk)
            node = by_id.get(node.parent_partner_id)
        return result

    # Deals: the downline's and the others', after each client's sign-up, in
    # closing order (as a platform reports them).
    downline = len([h for h in homes if h.pk in paths])
    n_down = DOWNLINE_DEALS
    weights = [rng.paretovariate(1.2) for _ in clients]
    deals = []
    for share, count in ((slice(0, downline), n_down), (slice(downline, None), OTHER_DEALS)):
        idx = list(range(len(clients)))[share]
        picks = rng.choices(idx, [weights[i] for i in idx], k=count)
        for i in picks:
            s = since[i]
            closed = s + dt.timedelta(seconds=int((now - s).total_seconds() * rng.random()))
            deals.append((closed, i))
    deals.sort()
    log(f"generated {len(deals):,} deals; COPY")
    deal_cols = [
        "id", "platform_id", "ticket", "account_id", "client_id", "symbol", "side", "volume",
        "open_time", "close_time", "open_price", "close_price", "profit", "commission", "swap",
        "imported_at",
    ]  # fmt: skip
    plat = account_type.platform_id
    commissions = []
    partner_rows = 0
    deal_rows = []
    for n, (closed, i) in enumerate(deals, start=1):
        lots = rng.choice(LOTS)
        deal_rows.append(
            (
                n, plat, 20_000_000 + n, accounts[i].pk, clients[i].pk, rng.choice(SYMBOLS),
                "buy", lots, closed - dt.timedelta(minutes=rng.randint(1, 600)), closed,
                "1.08", "1.081", rng.randint(-5000, 5000), -700, 0, closed,
            )
        )  # fmt: skip
        if homes[i].pk in paths:
            rebate = int(Decimal(lots) * REBATE_PER_LOT)
            for level, pid in enumerate(chain(homes[i].pk), start=1):
                share = TIER_SHARES[level - 1]
                amount = int(rebate * share / 100)
                commissions.append(
                    (pid, clients[i].pk, n, level, lots, rebate, share, amount, closed)
                )
                partner_rows += pid == top.pk
    with transaction.atomic():
        copy_rows(Deal._meta.db_table, deal_cols, deal_rows)
    del deal_rows
    log(f"{len(commissions):,} commission rows ({partner_rows:,} the partner's); COPY")
    commission_cols = [
        "id", "kind", "partner_id", "client_id", "deal_id", "plan_version_id", "level",
        "instrument_group", "lots", "rebate", "share", "basis", "tier_percent", "capped",
        "amount", "currency_id", "earned_at", "created_at",
    ]  # fmt: skip
    with transaction.atomic():
        copy_rows(
            Commission._meta.db_table,
            commission_cols,
            (
                (k, "deal", pid, cid, did, version.pk, level, "", lots, rebate, 0, 0, share,
                 False, amount, "USD", closed, closed)
                for k, (pid, cid, did, level, lots, rebate, share, amount, closed) in enumerate(
                    commissions, start=1
                )
            ),
        )  # fmt: skip
    del commissions

    # Wallets, deposits and withdrawals of the downline.
    card = PaymentMethod.objects.get(name="Card (sandbox)")
    bank = PaymentMethod.objects.get(name="Bank wire")
    with transaction.atomic():
        usd = LedgerAccount.objects.bulk_create(
            (LedgerAccount(kind="wallet", currency_id="USD", owner=c) for c in clients[:downline]),
            batch_size=5000,
        )
        eur = LedgerAccount.objects.bulk_create(
            (
                LedgerAccount(kind="wallet", currency_id="EUR", owner=c)
                for c in clients[: downline // 5]
            ),
            batch_size=5000,
        )
        dep_cols = [
            "id", "reference", "user_id", "wallet_id", "method_id", "provider_id", "currency_id",
            "amount", "fee", "credit_amount", "status", "provider_reference", "flag_reason",
            "created_at", "updated_at", "completed_at",
        ]  # fmt: skip
        dep_rows = []
        for k in range(1, DEPOSITS + 1):
            i = rng.randrange(downline)
            wallet = eur[i] if i < len(eur) and rng.random() < 0.3 else usd[i]
            amount = rng.randint(100, 5000) * 100
            at = since[i] + dt.timedelta(
                seconds=int((now - since[i]).total_seconds() * rng.random())
            )
            status = "completed" if rng.random() < 0.85 else "failed"
            dep_rows.append(
                (k, f"BENCH{k:08d}", clients[i].pk, wallet.pk, card.pk, card.provider_id,
                 wallet.currency_id, amount, 0, amount, status, "", "", at, at,
                 at if status == "completed" else None)
            )  # fmt: skip
        copy_rows(Deposit._meta.db_table, dep_cols, dep_rows)
        journal_start = next_id(JournalTransaction)
        copy_rows(
            JournalTransaction._meta.db_table,
            ["id", "kind", "idempotency_key", "request_hash", "description", "metadata",
             "created_at"],
            (
                (journal_start + k, "withdrawal_reserve", f"bench-reserve:{k}", "0" * 64, "",
                 {}, now)
                for k in range(WITHDRAWALS)
            ),
        )  # fmt: skip
        wd_cols = [
            "id", "reference", "user_id", "wallet_id", "method_id", "amount", "fee",
            "destination", "status", "reserve_journal_id", "payout_reference", "decision_reason",
            "created_at", "updated_at",
        ]  # fmt: skip
        wd_rows = []
        for k in range(WITHDRAWALS):
            i = rng.randrange(downline)
            at = since[i] + dt.timedelta(
                seconds=int((now - since[i]).total_seconds() * rng.random())
            )
            status = "paid" if rng.random() < 0.8 else "pending"
            wd_rows.append(
                (k + 1, f"BWD{k:08d}", clients[i].pk, usd[i].pk, bank.pk,
                 rng.randint(50, 2000) * 100, 0, {}, status, journal_start + k,
                 "BENCH" if status == "paid" else "", "", at, at)
            )  # fmt: skip
        copy_rows(Withdrawal._meta.db_table, wd_cols, wd_rows)
    log("wallets, deposits, withdrawals; VACUUM ANALYZE")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    seconds = time.monotonic() - started
    with connection.cursor() as cur:
        cur.execute(f"COMMENT ON DATABASE {BENCH_DB} IS 'partner {top.pk} {seconds:.0f}'")
    return loaded_summary(top)


def loaded_summary(top) -> Loaded:
    from accounts.models import Deal
    from ib.models import Commission, Partner, Referral
    from payments.models import Deposit, Withdrawal

    partner_deals = Deal.objects.filter(
        client_id__in=Referral.objects.filter(
            until__isnull=True, partner__path__startswith=top.path
        ).values("client_id")
    ).count()
    demo_deals = Deal.objects.filter(account__is_demo=True)
    downline_demo_deals = demo_deals.filter(
        client_id__in=Referral.objects.filter(
            until__isnull=True, partner__path__startswith=top.path
        ).values("client_id")
    ).count()
    return Loaded(
        partner_id=top.pk,
        partner_user_id=top.user_id,
        clients=Referral.objects.filter(partner__path__startswith=top.path).count(),
        deals=Deal.objects.count(),
        downline_deals=partner_deals,
        deposits=Deposit.objects.count(),
        withdrawals=Withdrawal.objects.count(),
        commissions=Commission.objects.count(),
        partner_commissions=Commission.objects.filter(partner=top).count(),
        partners=Partner.objects.count(),
        seconds=0.0,
        demo_deals=demo_deals.count(),
        downline_demo_deals=downline_demo_deals,
    )


def add_demo_accounts() -> bool:
    """A demo account (the "Demo USD" type) for every ``DEMO_EVERY``-th
    client with ``DEMO_DEALS_EACH`` deals of 1 lot, closed after the client's
    referral: what the dashboard must leave out. Once: a database that has
    demo accounts is left as it is. Returns whether it added them."""
    from django.db import connection, transaction

    from accounts.models import AccountType, TradingAccount

    if TradingAccount.objects.filter(is_demo=True).exists():
        return False
    demo_type = AccountType.objects.get(platform__identifier="demo", name="Demo USD")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO accounts_tradingaccount (login, is_demo, currency, currency_digits, "
            "leverage, status, balance, equity, margin, free_margin, created_at, "
            "account_type_id, platform_id, user_id) "
            "SELECT '9' || LPAD(a.id::text, 7, '0'), true, 'USD', 2, 100, 'active', "
            "1000000, 1000000, 0, 1000000, now(), %s, a.platform_id, a.user_id "
            "FROM accounts_tradingaccount a WHERE NOT a.is_demo AND a.user_id %% %s = 0",
            [demo_type.pk, DEMO_EVERY],
        )
        accounts = cur.rowcount
        cur.execute(
            "INSERT INTO accounts_deal (platform_id, ticket, account_id, client_id, symbol, "
            "side, volume, open_time, close_time, open_price, close_price, profit, commission, "
            "swap, imported_at) "
            "SELECT a.platform_id, 30000000 + a.id * 100 + g, a.id, a.user_id, 'EURUSD', "
            "'buy', 1, x.t - interval '1 hour', x.t, 1.08, 1.081, 100, 0, 0, x.t "
            "FROM accounts_tradingaccount a "
            "JOIN ib_referral r ON r.client_id = a.user_id AND r.until IS NULL "
            "CROSS JOIN generate_series(1, %s) g "
            "CROSS JOIN LATERAL (SELECT r.since + (now() - r.since) "
            "* (((a.id * 31 + g * 97) %% 1000) / 1000.0) AS t) x WHERE a.is_demo",
            [DEMO_DEALS_EACH],
        )
        deals = cur.rowcount
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE accounts_tradingaccount, accounts_deal")
    log(f"{accounts:,} demo accounts with {deals:,} deals")
    return True


def reuse() -> Loaded | None:
    from ib.models import Partner

    try:
        top = Partner.objects.select_related("user").get(user__email=PARTNER_EMAIL)
    except Exception:  # noqa: BLE001 - any failure: load afresh
        return None
    return loaded_summary(top)


# --- Measuring ---------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    path: str
    requests: int
    p50: float
    p95: float
    p99: float
    max: float
    queries: int


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def time_page(
    client, label: str, path: str, requests: int, warmup: int = WARMUP, before=None
) -> Timing:
    """Time ``requests`` GETs of ``path`` one by one (``before()`` runs ahead
    of each, untimed)."""
    from django.db import connection

    for _ in range(warmup):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    if before:
        before()
    executed: list[str] = []

    def count(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        client.get(path)
    times = []
    for _ in range(requests):
        if before:
            before()
        t0 = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    return Timing(
        label,
        path,
        requests,
        statistics.median(times),
        percentile(times, 95),
        percentile(times, 99),
        max(times),
        len(executed),
    )


class Arrivals:
    """New deals of the downline, and the partner's commissions on them,
    written as an import and its accrual would (``BATCH`` per call)."""

    BATCH = 20

    def __init__(self, partner) -> None:
        from accounts.models import TradingAccount
        from ib.models import PlanVersion, Referral

        clients = list(
            Referral.objects.filter(until__isnull=True, partner__path__startswith=partner.path)
            .values_list("client_id", flat=True)
            .order_by("client_id")
        )
        accounts = dict(
            TradingAccount.objects.filter(user_id__in=clients, is_demo=False).values_list(
                "user_id", "id"
            )
        )
        self.pairs = [(c, accounts[c]) for c in clients if c in accounts]
        self.partner_id = partner.pk
        self.version = PlanVersion.objects.order_by("id").values_list("id", flat=True).first()
        self.platform = TradingAccount.objects.values_list("platform_id", flat=True).first()
        self.rng = random.Random(7)  # noqa: S311 - benchmark data
        self.added = 0
        self.cleanup()

    @staticmethod
    def cleanup() -> None:
        """Remove what an earlier run added (a reused database stays as loaded)."""
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "DELETE FROM ib_commission WHERE deal_id IN "
                "(SELECT id FROM accounts_deal WHERE ticket >= %s)",
                [ARRIVAL_TICKETS],
            )
            cur.execute("DELETE FROM accounts_deal WHERE ticket >= %s", [ARRIVAL_TICKETS])

    def __call__(self) -> None:
        from django.db import connection, transaction

        now = dt.datetime.now(dt.UTC)
        with transaction.atomic(), connection.cursor() as cur:
            for _ in range(self.BATCH):
                client_id, account_id = self.rng.choice(self.pairs)
                self.added += 1
                cur.execute(
                    "INSERT INTO accounts_deal (platform_id, ticket, account_id, client_id, "
                    "symbol, side, volume, open_time, close_time, open_price, close_price, "
                    "profit, commission, swap, imported_at) VALUES (%s, %s, %s, %s, 'EURUSD', "
                    "'buy', 0.10, %s, %s, 1.08, 1.081, 100, -70, 0, %s) RETURNING id",
                    [self.platform, ARRIVAL_TICKETS + self.added, account_id, client_id,
                     now - dt.timedelta(minutes=30), now, now],
                )  # fmt: skip
                deal_id = cur.fetchone()[0]
                cur.execute(
                    "INSERT INTO ib_commission (kind, partner_id, client_id, deal_id, "
                    "plan_version_id, level, instrument_group, lots, rebate, share, basis, "
                    "tier_percent, capped, amount, currency_id, earned_at, created_at) VALUES "
                    "('deal', %s, %s, %s, %s, 1, '', 0.10, 100, 0, 0, 70, false, 70, 'USD', "
                    "%s, %s)",
                    [self.partner_id, client_id, deal_id, self.version, now, now],
                )


class BackgroundRefresh:
    """Stands in for the Celery worker that takes fresh snapshots."""

    def __init__(self, dashboard) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.dashboard = dashboard
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.done = 0

    def schedule(self, partner_id: int) -> None:
        from django.core.cache import cache

        if cache.add(f"{self.dashboard._snapshot_key(partner_id)}:refreshing", 1, 300):
            self.pool.submit(self._run, partner_id)

    def _run(self, partner_id: int) -> None:
        from django.db import connection

        try:
            self.dashboard.overview_snapshot_refresh(partner_id)
            self.done += 1
        except Exception as exc:  # noqa: BLE001 - reported, the timed requests go on
            log(f"background snapshot failed: {exc!r}")
        finally:
            connection.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        log(f"background snapshots taken during the timed requests: {self.done}")


def query_times(partner) -> list[tuple[str, float]]:
    """Each query of one snapshot of the overview, with its time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ib.selectors.dashboard import overview_compute

    overview_compute(partner)  # warm the buffers
    with CaptureQueriesContext(connection) as ctx:
        overview_compute(partner)
    return [
        (common.shorten_sql(q["sql"], 110), float(q["time"]) * 1000) for q in ctx.captured_queries
    ]


def measure(loaded: Loaded) -> tuple[list[Timing], list[tuple[str, float]], int, int]:
    from unittest import mock

    from django.core.cache import cache
    from django.core.cache.backends.dummy import DummyCache
    from django.test import Client

    from ib.models import Partner
    from ib.selectors import dashboard

    partner = Partner.objects.get(pk=loaded.partner_id)
    client = Client()
    client.force_login(partner.user)
    arrivals = Arrivals(partner)
    worker = BackgroundRefresh(dashboard)
    # A snapshot older than REFRESH_EVERY is taken again by "the worker" (a
    # thread with its own connection, as a Celery worker would) while the
    # timed requests go on: harsher than production's 10 minutes.
    with (
        mock.patch.object(dashboard, "SNAPSHOT_FRESH", REFRESH_EVERY),
        mock.patch.object(dashboard, "_schedule_refresh", worker.schedule),
    ):
        timings = [
            time_page(
                client,
                f"overview while deals arrive ({Arrivals.BATCH} before each request)",
                "/partner/",
                REQUESTS,
                before=arrivals,
            ),
            time_page(client, "overview, nothing new since the last view", "/partner/", REQUESTS),
        ]
    worker.close()
    Arrivals.cleanup()
    with mock.patch.object(dashboard, "cache", DummyCache("dummy", {})):
        timings.append(
            time_page(
                client,
                "overview without a snapshot (taken every request)",
                "/partner/",
                COLD_REQUESTS,
                warmup=2,
            )
        )
    cache.clear()
    client.force_login(partner.user)
    log(f"overview p99 {timings[0].p99:.1f} ms, without snapshot {timings[2].p99:.1f} ms")
    sub = Partner.objects.filter(parent_partner=partner).order_by("path").first()
    for label, path in (
        ("clients, newest first", "/partner/clients/"),
        ("clients, most lots first", "/partner/clients/?sort=lots"),
        ("sub-partners, 30 days", "/partner/tree/"),
        ("sub-partners, all time", "/partner/tree/?period=all"),
        ("a branch's children (htmx), 30 days", f"/partner/tree/{sub.pk}/children/"),
        ("commissions, newest page", "/partner/commissions/"),
        ("commissions of one sub-partner's branch", f"/partner/commissions/?sub_partner={sub.pk}"),
    ):
        timings.append(time_page(client, label, path, OTHER_REQUESTS, warmup=3))
    return timings, query_times(partner), arrivals.added, worker.done


# --- Report ------------------------------------------------------------------------------


def render_section(
    loaded: Loaded, timings: list[Timing], queries, machine: dict, added: int, refreshes: int
) -> str:
    command = ".venv/bin/python tests/benchmarks/bench_ib_dashboard.py"
    rows = "\n".join(
        f"| {t.label} | `{t.path}` | {t.requests} | {t.p50:.1f} | {t.p95:.1f} | {t.p99:.1f} | "
        f"{t.max:.1f} | {t.queries} |"
        for t in timings
    )
    query_rows = "\n".join(f"| {ms:.1f} | `{sql}` |" for sql, ms in queries)
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in machine.items())
    live, quiet, cold = timings[0], timings[1], timings[2]
    verdict = "met" if live.p99 < GOAL_MS else "**missed**"
    return f"""{SECTION_TITLE}

The issue's number: the overview of a partner with 10,000 clients in the
downline answers with **p99 under 200 ms**. Measured {common.started_label()}:
p99 **{live.p99:.1f} ms** while new deals and commissions keep arriving (goal
{verdict}), {quiet.p99:.1f} ms when nothing changed since the last view, and
{cold.p99:.1f} ms for a view that has to take the partner's snapshot first
(the first view, or right after a partner or client move).

Command: `{command}` (database `{BENCH_DB}`, Redis db 15;
`BENCH_REUSE_DB=1` reuses a loaded database).

Data ({loaded.partners:,} partners; the measured partner has 120 sub-partners on two
levels):

| what | rows |
| --- | ---: |
| clients in the partner's downline | {loaded.clients:,} |
| deals in total / of the downline's clients | {loaded.deals:,} / {loaded.downline_deals:,} |
| of which on demo accounts (left out) | {loaded.demo_deals:,} / \
{loaded.downline_demo_deals:,} |
| deposits / withdrawals (downline) | {loaded.deposits:,} / {loaded.withdrawals:,} |
| commission rows in total / the partner's own | {loaded.commissions:,} / \
{loaded.partner_commissions:,} |

Requests go through Django's test client in one process (the whole
middleware stack, session in Redis, PostgreSQL, template rendering and both
SVG charts; no HTTP server), after {WARMUP} warm-up requests, timed one by one;
ms. In the first row {Arrivals.BATCH} new deals of the downline and the partner's
commission on each are committed before every request ({added:,} in all), so
every view finds new rows:

| page | path | requests | p50 | p95 | p99 | max | queries |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

How (`ib/selectors/dashboard.py`): the all-time figures read every deal of
the downline and every commission row of the partner: half a second or more
here (third row). So each partner has a *snapshot* in the cache: the sums up to
the highest deal and commission ids it has seen, the last 95 days by day
(today, this month, the chart), each client's latest trade of the last 30
days (active traders) and the deposits and withdrawals. A view reads the
tables' highest ids (one query, three index probes), adds the rows between
the snapshot's ids and those (primary-key ranges: what came since the last
view) and stores the snapshot so grown. Deals and commissions only ever get
new rows, which makes this exact, except for a row whose transaction took
its id before a view and committed after it (two imports at once): the next
full snapshot counts it. Full snapshots are taken again by a Celery task
once the last one is 10 minutes old, while views keep using it (in this run
every {REFRESH_EVERY} s, by a thread standing in for the worker:
{refreshes} during the timed requests); at once after a partner or client
move, which changes whose clients are whose (the third row's cost, paid by
one view). Deposits and withdrawals change status rather than add rows:
they follow with the full snapshots. Client counts and sign-ups per week
are read live (two small queries). Deals of demo accounts (virtual money)
are left out of volume, active traders and the clients' and branches'
lots: in the overview's sums an anti-join on the account's key (a hash of
the demo accounts for a snapshot, a key probe per new deal in a view); in
the per-client sums (clients, tree) a `NOT IN` the client's demo accounts
(one index probe per client).

The queries of taking one snapshot (ms, from the database driver):

| ms | query |
| ---: | --- |
{query_rows}

What dominates a snapshot is reading the downline's
{loaded.downline_deals:,} deals (index-only on `deal_client_time`) and the
partner's {loaded.partner_commissions:,} commission rows from the heap
(`ib_commission_partner_time` has no amount or currency: a covering index
`(partner, earned_at) INCLUDE (amount, currency)` would make it index-only;
left to the lead, no migration here).

Machine (shared with other jobs while measuring):

| | |
| --- | --- |
{machine_rows}
"""


def main() -> int:
    reuse_db = os.environ.get("BENCH_REUSE_DB") == "1"
    if not reuse_db:
        common.recreate_database(BENCH_DB)
    common.setup_django(DJANGO_ENV, UNSET)
    from django.core.cache import cache

    if reuse_db:
        # What an earlier run left; an empty database is loaded afresh below.
        with contextlib.suppress(Exception):
            Arrivals.cleanup()
    loaded = reuse() if reuse_db else None
    if loaded is None:
        if reuse_db:
            common.recreate_database(BENCH_DB)
        loaded = seed()
    if add_demo_accounts():
        loaded = reuse() or loaded
    cache.clear()
    log(
        f"partner {loaded.partner_id}: {loaded.clients:,} clients, {loaded.downline_deals:,} "
        f"deals, {loaded.partner_commissions:,} own commission rows"
    )
    timings, queries, added, refreshes = measure(loaded)
    machine = {
        "CPU": common.cpu_description(),
        "memory": common.memory_total(),
        "OS": common.os_description(),
        "PostgreSQL": common.postgres_version(BENCH_DB),
        "Redis": common.redis_version(REDIS_URL),
        "Python": sys.version.split()[0],
    }
    for t in timings:
        print(
            f"{t.label:45} p50 {t.p50:7.1f}  p95 {t.p95:7.1f}  p99 {t.p99:7.1f}  "
            f"max {t.max:7.1f} ms  {t.queries} queries"
        )
    for sql, ms in queries:
        print(f"{ms:8.1f} ms  {sql}")
    common.write_titled_section(
        SECTION_TITLE, render_section(loaded, timings, queries, machine, added, refreshes)
    )
    log(f"wrote {DOC.relative_to(common.ROOT)} ({shlex.quote(SECTION_TITLE)})")
    return 0 if timings[0].p99 < GOAL_MS else 1  # while deals arrive


if __name__ == "__main__":
    sys.exit(main())
