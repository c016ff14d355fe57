"""Benchmark: IB commission accrual for 1,000,000 deals of clients under a
5-level tree of 1,000 partners, beside the deal ingestion of the same run.

Run from the project root (not part of the test suite)::

    .venv/bin/python tests/benchmarks/bench_ib_accrual.py [--deals 1000000]

What it does, all on loopback:

1. drops and re-creates the PostgreSQL database ``backoffice_ib_accrual_bench``
   and migrates it;
2. builds the tree: 1,000 partners on 5 levels (8 at the top, then 32, 96,
   256 and 608, each under a random partner of the level above), every one
   active and with a trading account of their own; 20,000 clients, each
   referred to a random partner (so at every level) with one trading
   account (85 % USD, 15 % EUR); the plans (see :data:`PLANS`): the top
   partners' subtrees are on the fixed-shares plan 70/20/10, a EUR plan
   60/30/10 with a monthly cap, or the rate-difference plans 10/8/6/4/2
   by level; spread markups on some instruments; EUR, GBP, JPY and CHF
   rates;
3. generates 1,000,000 deals over a year (seeded) and ingests them with one
   ``deals_ingest`` call (one import, one ``deals.imported`` event; its
   delivery to the IB subscriber is held back so that the ingestion is
   timed alone): **the deal ingestion figure of this run**;
4. ``VACUUM ANALYZE``; accrues the first 5,000 deals with both engines
   (set-based and deal-by-deal reference), compares the rows, rolls back;
5. times ``accrual_run`` over the event's id range to its commit, with where
   the time went; the same run again (idempotent: writes nothing); then,
   from an empty commission table, the run without ``ON CONFLICT DO
   NOTHING`` (what the idempotency guard costs);
6. prints the table and writes the section between
   ``<!-- ib-accrual:start -->`` and ``<!-- ib-accrual:end -->`` of
   docs/PERFORMANCE.md (``--no-write`` leaves it alone).

Exit status 1 when the accrual takes 60 s or more (the goal).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make tests.benchmarks importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.common import DOC, HOST, PG_PORT, PG_USER, VENV_BIN, log  # noqa: E402

START_MARK = "<!-- ib-accrual:start -->"
END_MARK = "<!-- ib-accrual:end -->"

BENCH_DB = "backoffice_ib_accrual_bench"
DEALS = 1_000_000
CLIENTS = 20_000
LEVELS = (8, 32, 96, 256, 608)  # partners per level: 1,000
GOAL_SECONDS = 60.0
SEED = 20261206
SAMPLE = 5_000  # deals checked against the reference engine

DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    "ENVIRONMENT": "development",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "*",
    "DATABASE_URL": f"postgres://{PG_USER}@{HOST}:{PG_PORT}/{BENCH_DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/11",
    "EMAIL_URL": "dummymail://",
    "LOG_LEVEL": "WARNING",
    "CELERY_TASK_ALWAYS_EAGER": "1",
}
UNSET = ("CONN_MAX_AGE", "SECRET_KEY", "SECRET_KEY_FILE", "ROOT_URLCONF")

#: name: (currency, model, tier shares, rules, extra fields)
PLANS = {
    "Standard 70/20/10": (
        "USD",
        "fixed_shares",
        "70, 20, 10",
        [
            ("fx_majors", "8", "25", "0"),
            ("metals", "15", "0", "0"),
            ("", "4", "0", "20"),
        ],
        {"min_hold_seconds": 60, "cap_per_deal": Decimal("150")},
    ),
    "Euro 60/30/10": (
        "EUR",
        "fixed_shares",
        "60, 30, 10",
        [("", "7", "10", "10")],
        {"cap_per_period": Decimal("5000"), "cap_period": "month"},
    ),
}
#: Rate difference: the rate per lot of each level (any group), plus 10 % of commission.
RATE_LEVELS = ("10", "8", "6", "4", "2")
#: Which plan the subtree of each top partner is on (by the top partner's number).
SUBTREE_PLANS = [
    "Standard 70/20/10",
    "Standard 70/20/10",
    "Standard 70/20/10",
    "Standard 70/20/10",
    "Euro 60/30/10",
    "Euro 60/30/10",
    "rate difference",
    "rate difference",
]
MARKUPS = {"EURGBP": "8", "USOIL": "3", "US500": "5", "GER40": "8", "BTCUSD": "2500"}
RATES = [("EUR", "USD", "1.0842"), ("GBP", "USD", "1.2713"), ("USD", "JPY", "151.42"),
         ("USD", "CHF", "0.8933")]  # fmt: skip
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "EURGBP", "EURJPY", "XAUUSD",
           "XAGUSD", "USOIL", "US500", "GER40", "BTCUSD"]  # fmt: skip


def migrate() -> None:
    subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=common.child_env(DJANGO_ENV, UNSET),
        check=True,
    )


# --- The tree, the plans, the clients ----------------------------------------------------


def seed(rng: random.Random) -> dict:
    from accounts.models import AccountType, Instrument, Platform, TradingAccount, User
    from ib.models import Partner, PlanAssignment, Referral
    from ib.services.plans import plan_create
    from payments.services.rates import rate_set_manual

    epoch = datetime.now(UTC) - timedelta(days=800)
    platform = Platform.objects.create(identifier="bench", kind="demo", name="Bench platform")
    types = {
        currency: AccountType.objects.create(
            platform=platform,
            name=f"Bench {currency}",
            currency=currency,
            currency_digits=2,
            leverage_choices=[100],
            platform_group=f"bench\\{currency}",
        )
        for currency in ("USD", "EUR")
    }
    for symbol, markup in MARKUPS.items():
        Instrument.objects.filter(symbol=symbol).update(spread_markup=Decimal(markup))
    for base, quote, rate in RATES:
        rate_set_manual(actor=None, base=base, quote=quote, rate=Decimal(rate))

    plans = {}
    for name, (currency, model, shares, rules, extra) in PLANS.items():
        plans[name] = plan_create(
            name=name,
            currency=currency,
            tier_model=model,
            tier_shares=shares,
            rules=[
                {
                    "instrument_group": group,
                    "rebate_per_lot": Decimal(rebate),
                    "commission_share": Decimal(commission),
                    "spread_share": Decimal(spread),
                }
                for group, rebate, commission, spread in rules
            ],
            effective_from=epoch,
            **extra,
        )
    rate_plans = [
        plan_create(
            name=f"Rate difference level {level}",
            tier_model="rate_difference",
            tier_shares="",
            rules=[
                {
                    "instrument_group": "",
                    "rebate_per_lot": Decimal(rate),
                    "commission_share": Decimal("10"),
                }
            ],
            effective_from=epoch,
        )
        for level, rate in enumerate(RATE_LEVELS, 1)
    ]

    partner_users = User.objects.bulk_create(
        User(email=f"partner{n}@bench.test", first_name="P", last_name=str(n), password="!")
        for n in range(sum(LEVELS))
    )
    users = iter(partner_users)
    levels: list[list] = []
    home: dict[int, int] = {}  # partner id -> number of its top partner
    for depth, count in enumerate(LEVELS):
        level = []
        for n in range(count):
            user = next(users)
            if depth == 0:
                partner = Partner.objects.add_root(
                    create_kwargs={"user": user, "status": Partner.ACTIVE}
                )
                home[partner.pk] = n
            else:
                parent = Partner.objects.get(pk=rng.choice(levels[-1]).pk)
                partner = Partner.objects.add_child(
                    parent,
                    create_kwargs={
                        "user": user,
                        "status": Partner.ACTIVE,
                        "parent_partner": parent,
                    },
                )
                home[partner.pk] = home[parent.pk]
            level.append(partner)
        levels.append(level)
    assignments = []
    for depth, level in enumerate(levels):
        for partner in level:
            name = SUBTREE_PLANS[home[partner.pk]]
            plan = rate_plans[depth] if name == "rate difference" else plans[name]
            assignments.append(PlanAssignment(partner=partner, plan=plan, since=epoch))
            Partner.objects.filter(pk=partner.pk).update(plan=plan)
    PlanAssignment.objects.bulk_create(assignments)
    partners = [p for level in levels for p in level]

    clients = User.objects.bulk_create(
        User(email=f"client{n}@bench.test", first_name="C", last_name=str(n), password="!")
        for n in range(CLIENTS)
    )
    Referral.objects.bulk_create(
        Referral(client=c, partner=rng.choice(partners), source=Referral.STAFF, since=epoch)
        for c in clients
    )
    accounts = []
    for n, user in enumerate(clients + partner_users):
        currency = "EUR" if rng.random() < 0.15 else "USD"
        accounts.append(
            TradingAccount(
                user=user,
                platform=platform,
                account_type=types[currency],
                login=str(500_000 + n),
                currency=currency,
                currency_digits=2,
                leverage=100,
            )
        )
    TradingAccount.objects.bulk_create(accounts)
    by_depth = {depth: len(level) for depth, level in enumerate(levels, 1)}
    return {
        "platform_id": platform.pk,
        "logins": [a.login for a in accounts],
        "clients_logins": CLIENTS,
        "levels": by_depth,
    }


def generate(fixture: dict, deals: int, rng: random.Random) -> list:
    from accounts.platforms.base import DealRecord

    logins = fixture["logins"]
    clients = fixture["clients_logins"]
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    step = timedelta(days=365) / deals
    start = end - timedelta(days=365)
    volumes = [Decimal(v) for v in ("0.01", "0.05", "0.1", "0.1", "0.25", "0.5", "1", "2", "5")]
    commissions = [Decimal(c) for c in ("0", "-0.35", "-0.7", "-1.75", "-3.5", "-7", "1.2")]
    money = [Decimal(rng.randrange(-200_000, 250_000)).scaleb(-2) for _ in range(2_000)]
    price = Decimal("1.08512")
    records = []
    for ticket in range(1, deals + 1):
        # 97 % of the deals are clients', 3 % the partners' own trading.
        login = logins[
            rng.randrange(clients) if rng.random() < 0.97 else rng.randrange(len(logins))
        ]
        closed = start + step * ticket
        held = rng.choice((20, 45, 300, 3_600, 86_400, 200_000))
        records.append(
            DealRecord(
                ticket=ticket,
                login=login,
                symbol=SYMBOLS[rng.randrange(len(SYMBOLS))],
                side="buy" if rng.random() < 0.5 else "sell",
                volume=volumes[rng.randrange(len(volumes))],
                open_time=closed - timedelta(seconds=held),
                close_time=closed,
                open_price=price,
                close_price=price,
                profit=money[rng.randrange(len(money))],
                commission=commissions[rng.randrange(len(commissions))],
                swap=Decimal("0"),
            )
        )
    return records


# --- Measuring -------------------------------------------------------------------------------


def others_cpu(run):
    """Run ``run()``; (its result, seconds, % of all cores other processes used meanwhile)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def ours() -> float:
        own = os.times()
        return own.user + own.system + (common.process_cpu_s(backend) or 0.0)

    before = (time.perf_counter(), ours(), common.machine_busy_s())
    result = run()
    after = (time.perf_counter(), ours(), common.machine_busy_s())
    seconds = after[0] - before[0]
    others = (after[2] - before[2]) - (after[1] - before[1])
    return result, seconds, max(others, 0.0) / (seconds * common.CORES) * 100


def ingest(fixture: dict, records: list):
    """One import of every record, its event's delivery held back."""
    from accounts.models import Platform
    from accounts.services.deals import deals_ingest
    from backoffice import events

    held = events._registry.pop("deals.imported", None)
    try:
        platform = Platform.objects.get(pk=fixture["platform_id"])
        return others_cpu(lambda: deals_ingest(platform=platform, records=records))
    finally:
        if held is not None:
            events._registry["deals.imported"] = held


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CHECKPOINT")
        for table in ("accounts_deal", "ib_commission", "ib_referral", "ib_partner"):
            cur.execute(f"VACUUM ANALYZE {table}")


def accrue(first: int, last: int, *, on_conflict: bool = True):
    from ib.accrual import postgres
    from ib.services.accrual import accrual_run

    postgres.ON_CONFLICT = on_conflict
    try:
        return others_cpu(lambda: accrual_run(first_deal_id=first, last_deal_id=last))
    finally:
        postgres.ON_CONFLICT = True


def empty_commissions() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE ib_commission")
    vacuum()


def check_sample(first: int) -> int:
    """The first :data:`SAMPLE` deals accrued by the set-based engine give the
    rows the deal-by-deal reference computes (in a transaction rolled back
    before the timed run)."""
    from django.db import transaction

    from ib.accrual import reference
    from ib.models import Commission
    from ib.services.accrual import accrual_run

    class Undo(Exception):
        pass

    last = first + SAMPLE - 1
    fields = ("deal_id", "partner_id", "level", "amount", "rebate", "share", "capped")
    try:
        with transaction.atomic():
            outcome = reference.compute(first_deal_id=first, last_deal_id=last)
            accrual_run(first_deal_id=first, last_deal_id=last)
            stored = sorted(Commission.objects.filter(kind="deal").values_list(*fields))
            computed = sorted(tuple(getattr(r, f) for f in fields) for r in outcome.rows)
            if stored != computed:
                raise RuntimeError("the sample differs from the reference engine")
            raise Undo
    except Undo:
        pass
    return len(stored)


def counts() -> dict:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT level, count(*), sum(amount), count(*) FILTER (WHERE capped) "
            "FROM ib_commission WHERE kind = 'deal' GROUP BY level ORDER BY level"
        )
        by_level = cur.fetchall()
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('ib_commission'))")
        size = cur.fetchone()[0]
    return {"by_level": by_level, "size": size}


def _row(label: str, measured, *, bold: bool = False) -> str:
    run, seconds, other = measured
    b = "**" if bold else ""
    return (
        f"| {label} | {run.deals:,} | {run.commissions:,} | {b}{seconds:.1f} s{b} | "
        f"{b}{run.deals / seconds:,.0f}{b} | {seconds - run.seconds:.1f} s | {other:.0f} % |"
    )


def render(info, fixture, n_deals, ingest_s, ingest_other, runs, sample, table, started):
    today, today_s, _ = runs["today"]
    met = today_s < GOAL_SECONDS
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    steps = "\n".join(
        f"| {name} | {seconds:.1f} s |" for name, seconds in (today.steps or {}).items()
    )
    levels = "\n".join(
        f"| {level} | {rows:,} | {int(total or 0) / 100:,.2f} | {capped:,} |"
        for level, rows, total, capped in table["by_level"]
    )
    rows = "\n".join(
        [
            _row("**accrual** (`accrual_run`, to its commit)", runs["today"],
                 bold=True),
            _row("the same again (idempotent: nothing to write)", runs["again"]),
            _row("accrual without `ON CONFLICT DO NOTHING`", runs["no conflict"]),
        ]
    )  # fmt: skip
    return f"""{START_MARK}
## IB commission accrual: 1,000,000 deals under a 5-level tree of 1,000 partners

{n_deals:,} deals over a year of {CLIENTS:,} clients (each referred to a partner
at any level) and of the partners' own accounts, under a tree of 1,000 partners
on 5 levels ({", ".join(f"{n:,}" for n in fixture["levels"].values())} per level),
ingested by one `deals_ingest` call and then accrued by `accrual_run` over the
id range of the import's `deals.imported` event, both on PostgreSQL.

Plans: the subtrees of four top partners are on **fixed shares 70/20/10** (USD,
per group: majors 8 USD a lot + 25 % of the commission, metals 15 USD, others
4 USD + 20 % of the spread; 60 s minimum hold; 150 USD cap a deal); two on
**60/30/10 in EUR** (7 EUR a lot + 10 % commission + 10 % spread, converted from
the USD and EUR accounts; a cap of 5,000 EUR a month per partner); two on
**rate difference** 10/8/6/4/2 USD a lot by level (+ 10 % of the commission),
each level earning the difference to the one below. 3 % of the deals are the
partners' own trading (not allowed by the plans: level 1 earns nothing).

**Deal ingestion of the same run**: {n_deals:,} deals by `deals_ingest` in
{ingest_s:.1f} s, **{n_deals / ingest_s:,.0f} deals/s** (other load {ingest_other:.0f} %).

| accrual | deals | rows written | time | deals/s | of which commit | other load |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Goal: accrual under {GOAL_SECONDS:.0f} s — **{"met" if met else "NOT met"}**
({today_s:.1f} s). The first run wrote
**{today.commissions:,} commission rows** ({table["size"]} with their indexes);
{today.skipped_no_rate:,} deals waited for a rate. Before the timed runs, the
first {SAMPLE:,} deals ({sample:,} rows) were accrued by both engines (then rolled
back): the rows are the same.

Where the time of the first run went:

| step | time |
| --- | --- |
{steps}
| commit | {today_s - today.seconds:.1f} s |

Rows by level (amounts in the rows' currencies, added up as numbers):

| level | rows | amount | capped |
| --- | --- | --- | --- |
{levels}

*How*: Python builds small temporary tables (each partner's chain and plan
version per interval of time with the version's terms; per version, symbol,
account currency and target currency what a lot and a unit of commission
earn, the exchange rates folded in), then one `INSERT ... SELECT ... ON
CONFLICT DO NOTHING` per 200,000 deal ids joins the deals to them and computes
tiers and caps with one window over each deal's levels and one over each
capped partner's period (`ib/accrual/postgres.py`). Writing the rows is most
of the work: `ib_commission` has five indexes written on every row (the
primary key, the unique (deal, partner), (partner, time), the unpaid rows by
(partner, currency), and payout over paid rows only) and no database foreign
keys: the first measurement, with Django's defaults (two more indexes on
`currency_id`, deferred foreign keys on partner and payout checked row by
row at commit), took 75.2 s, of which 11.9 s was the commit.

*Other load* is the CPU other processes on this shared 2-core machine used
meanwhile, as a share of all cores: it only ever slows the figures down.

Run {started} by

    .venv/bin/python tests/benchmarks/bench_ib_accrual.py --deals {n_deals}

(database `{BENCH_DB}`, DEBUG=0). Machine:

{machine}
{END_MARK}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=DEALS)
    parser.add_argument("--no-write", action="store_true", help="leave docs/PERFORMANCE.md")
    args = parser.parse_args()
    os.chdir(ROOT)
    started = common.started_label()
    rng = random.Random(SEED)  # noqa: S311 - benchmark data
    log(f"re-creating database {BENCH_DB}")
    common.recreate_database(BENCH_DB)
    migrate()
    common.setup_django(DJANGO_ENV, UNSET)
    t = time.perf_counter()
    fixture = seed(rng)
    log(f"tree, plans, clients and accounts in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    records = generate(fixture, args.deals, rng)
    log(f"generated {len(records):,} deals in {time.perf_counter() - t:.1f} s")
    vacuum()
    result, ingest_s, ingest_other = ingest(fixture, records)
    log(f"ingested {result.added:,} deals in {ingest_s:.1f} s ({result.added / ingest_s:,.0f}/s)")
    del records
    vacuum()
    sample = check_sample(result.first_id)
    log(f"the first {SAMPLE:,} deals ({sample:,} rows) are as the reference computes")
    first, last = result.first_id, result.last_id
    runs = {}
    runs["today"] = accrue(first, last)
    log_run("accrual", runs["today"])
    runs["again"] = accrue(first, last)
    log_run("again", runs["again"])
    table = counts()
    empty_commissions()
    runs["no conflict"] = accrue(first, last, on_conflict=False)
    log_run("no ON CONFLICT", runs["no conflict"])
    section = render(common.pg_machine_info(), fixture, result.added, ingest_s, ingest_other, runs,
                     sample, table, started)  # fmt: skip
    print()
    print(section)
    if not args.no_write:
        common.write_marked_section(START_MARK, END_MARK, section, DOC)
        log(f"wrote {DOC.relative_to(ROOT)} (between the ib-accrual markers)")
    return 0 if runs["today"][1] < GOAL_SECONDS else 1


def log_run(label: str, measured) -> None:
    run, seconds, other = measured
    log(
        f"{label}: {run.commissions:,} rows for {run.deals:,} deals in {seconds:.1f} s "
        f"({run.deals / seconds:,.0f} deals/s; {run.skipped_no_rate} waiting for a rate; "
        f"other load {other:.0f} %): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in (run.steps or {}).items())
        + f", commit {seconds - run.seconds:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
