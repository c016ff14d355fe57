"""Benchmark: the trader's room dashboard (/room/) against a bare Django view.

Run from the project root::

    .venv/bin/python tests/benchmarks/bench_dashboard.py      # or: make bench

What it does, all on loopback:

1. drops and re-creates the PostgreSQL database ``backoffice_bench``, migrates
   it, loads the demo data and gives the trader Alice (verified e-mail) a few
   events and notifications through the services;
2. signs Alice in (a session in the database and in Redis, as in production)
   and counts the SQL queries and cache calls of both pages in-process;
3. starts gunicorn (3 sync workers, DEBUG off, PostgreSQL with
   ``CONN_MAX_AGE=600``, Redis cache and sessions,
   ``ROOT_URLCONF=tests.benchmarks.urls``) on a free port, checks that
   /room/ answers 200 with Alice's page, warms both URLs, then runs ``wrk``
   (16 connections, 15 s) on /_bench/bare and /room/ alternately, two rounds
   each, on the same server;
4. prints a markdown table and the ratio dashboard / bare, and writes the
   section "Room dashboard vs a bare view" of docs/PERFORMANCE.md.

Gunicorn is stopped at the end, also on failure. Exit status 1 when the
dashboard reaches less than half the bare view's throughput.
"""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make tests.benchmarks importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.common import DOC, HOST, PG_PORT, PG_USER, REDIS_URL, log  # noqa: E402

SECTION_TITLE = "## Room dashboard vs a bare view"

BENCH_DB = "backoffice_bench"
TRADER_EMAIL = "alice@demo.test"

WORKERS = 3
THREADS = 2
CONNECTIONS = 16
DURATION_S = 15
WARMUP_S = 3
ROUNDS = 2
# The machine is shared: a round (both URLs) during which other processes
# used more than this share of the CPU is repeated, at most EXTRA_ROUNDS times.
MAX_OTHER_LOAD_PCT = 15.0
EXTRA_ROUNDS = 2
REQUIRED_RATIO = 0.5

BARE_PATH = "/_bench/bare"
ROOM_PATH = "/room/"

# The environment of both this process (seeding) and the gunicorn server.
DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    "ENVIRONMENT": "development",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "*",
    "DATABASE_URL": f"postgres://{PG_USER}@{HOST}:{PG_PORT}/{BENCH_DB}",
    "REDIS_URL": REDIS_URL,
    "ROOT_URLCONF": "tests.benchmarks.urls",
    "EMAIL_URL": "dummymail://",
    "LOG_LEVEL": "WARNING",
}
# Removed so that the settings' defaults apply (CONN_MAX_AGE=600, a real broker).
UNSET = ("CONN_MAX_AGE", "CELERY_TASK_ALWAYS_EAGER", "SECRET_KEY", "SECRET_KEY_FILE")


# --- Database --------------------------------------------------------------------


def setup_django() -> None:
    # Seeding runs the event subscribers in this process instead of sending
    # tasks to whatever worker listens on the shared Redis.
    common.setup_django({**DJANGO_ENV, "CELERY_TASK_ALWAYS_EAGER": "1"}, UNSET)


def seed() -> str:
    """Load the demo data; give Alice events and notifications; return her session key."""
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import transaction
    from django.test import Client

    from accounts import services as account_services
    from accounts.demo import seed_demo
    from accounts.models import User
    from backoffice.models import Brand, Event, Notification
    from backoffice.services import notification_create

    call_command("migrate", verbosity=0, interactive=False)
    seed_demo()
    alice = User.objects.get(email=TRADER_EMAIL)
    account_services.client_register(user=alice, ip="127.0.0.1", referrer="")
    account_services.client_email_confirmed(user=alice, email=alice.email)  # "Welcome"
    for i, city in enumerate(["Manchester", "Leeds", "Bristol", "York", "London"] * 2):
        account_services.client_profile_update(
            actor=alice, user=alice, data={"city": city, "postal_code": f"AB{i} 1CD"}
        )
    with transaction.atomic():
        for i in range(1, 5):
            notification_create(
                user=alice,
                kind="bench.info",
                title=f"Statement {i} is ready",
                body="Your monthly statement is ready to download from the reports page.",
                email=False,
            )
    cache.delete(Brand.CACHE_KEY)  # the brand of this database, not of another run
    log(
        f"seeded: {User.objects.count()} users, {Event.objects.filter(client=alice).count()} "
        f"events and {Notification.objects.filter(user=alice).count()} notifications for Alice"
    )
    client = Client()
    client.force_login(alice)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@dataclass
class Cost:
    path: str
    status: int
    queries: list[str]
    cache_calls: list[str]


def measure_costs(session_key: str) -> list[Cost]:
    """SQL queries and cache (Redis) calls of one warm request to each URL."""
    from django.conf import settings
    from django.core.cache.backends.redis import RedisCacheClient
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    calls: list[str] = []
    originals = {}
    for name in ("get", "set", "add", "delete", "get_many", "set_many", "has_key", "touch"):
        original = getattr(RedisCacheClient, name)
        originals[name] = original

        def wrapped(self, *args, _name=name, _original=original, **kwargs):
            key = str(args[0]) if args else ""
            calls.append(f"{_name} {key.replace(session_key, '<session key>')}")
            return _original(self, *args, **kwargs)

        setattr(RedisCacheClient, name, wrapped)
    costs = []
    try:
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = session_key
        for path in (BARE_PATH, ROOM_PATH):
            client.get(path)  # warm: first-request work is not what we measure
            calls.clear()
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(path)
            costs.append(
                Cost(path, response.status_code, [q["sql"] for q in ctx.captured_queries], calls[:])
            )
    finally:
        for name, original in originals.items():
            setattr(RedisCacheClient, name, original)
        connections.close_all()
    return costs


# --- Server ------------------------------------------------------------------------


def server_env() -> dict[str, str]:
    env = common.child_env(DJANGO_ENV, UNSET)
    env["PYTHONPATH"] = str(ROOT)
    return env


def gunicorn_command(port: int) -> list[str]:
    return common.gunicorn_command(port, WORKERS, ("--graceful-timeout", "5"))


# --- wrk ---------------------------------------------------------------------------


@dataclass
class Result:
    path: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bytes_per_request: float
    errors: str
    server_cpu_ms: float = 0.0  # gunicorn workers + PostgreSQL backends, per request
    excluded: bool = False  # measured while other load was high; kept out of the means
    others_cpu_pct: float = 0.0  # CPU of everything else on the machine, % of all cores


def wrk_command(url: str, cookie: str, duration: int) -> list[str]:
    return common.wrk_command(url, cookie, duration, THREADS, CONNECTIONS)


def parse_wrk(output: str, path: str, round_no: int) -> Result:
    out = common.parse_wrk(output)
    if out.bytes_read is None:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    return Result(
        path=path,
        round=round_no,
        rps=out.rps,
        p50_ms=out.p50_ms,
        p99_ms=out.p99_ms,
        requests=out.requests,
        bytes_per_request=out.bytes_read / max(out.requests, 1),
        errors=out.errors,
    )


def run_wrk(
    base: str, path: str, cookie: str, duration: int, round_no: int, server: Server | None = None
) -> Result:
    command = wrk_command(base + path, cookie, duration)
    before = server.snapshot() if server else None
    output = common.wrk_output(command, duration)
    after = server.snapshot() if server else None
    result = parse_wrk(output, path, round_no)
    if before and after:
        server_s = after.server_s - before.server_s
        others_s = (after.busy_s - before.busy_s) - server_s - (after.wrk_s - before.wrk_s)
        wall = after.wall - before.wall
        result.server_cpu_ms = server_s / max(result.requests, 1) * 1000
        result.others_cpu_pct = max(others_s, 0.0) / (wall * common.CORES) * 100
    return result


# --- CPU accounting (Linux /proc): separates our server from other load ---------------


@dataclass
class Snapshot:
    wall: float
    server_s: float
    busy_s: float
    wrk_s: float


class Server:
    """CPU used by the gunicorn workers and their PostgreSQL backends."""

    def __init__(self, master_pid: int):
        self.pids = common.children_of(master_pid) + common.database_backends(BENCH_DB)
        self.last: dict[int, float] = {}

    def snapshot(self) -> Snapshot:
        total = 0.0
        for pid in self.pids:
            cpu = common.process_cpu_s(pid)
            if cpu is None:  # gone: count what it had used
                cpu = self.last.get(pid, 0.0)
            self.last[pid] = cpu
            total += cpu
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished children: wrk
        return Snapshot(
            time.monotonic(), total, common.machine_busy_s(), usage.ru_utime + usage.ru_stime
        )


# --- Report ------------------------------------------------------------------------


def counted(results: list[Result], path: str) -> list[Result]:
    """The rounds the means are taken over: the clean ones (all, if none is clean)."""
    rows = [r for r in results if r.path == path]
    return [r for r in rows if not r.excluded] or rows


def summarise(results: list[Result], path: str) -> tuple[float, float, float]:
    rows = counted(results, path)
    return (
        statistics.mean(r.rps for r in rows),
        statistics.mean(r.p50_ms for r in rows),
        statistics.mean(r.p99_ms for r in rows),
    )


def cpu_mean(results: list[Result], path: str) -> float:
    return statistics.mean(r.server_cpu_ms for r in counted(results, path))


def table(results: list[Result]) -> str:
    lines = [
        "| URL | round | requests/s | p50 | p99 | server CPU / request | other load "
        "| bytes / response | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| `{r.path}` | {r.round}{' (excluded)' if r.excluded else ''} "
            f"| {r.rps:,.0f} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms "
            f"| {r.server_cpu_ms:.2f} ms | {r.others_cpu_pct:.0f} % "
            f"| {r.bytes_per_request:,.0f} | {r.errors or 'none'} |"
        )
    for path, label in ((BARE_PATH, "bare view"), (ROOM_PATH, "dashboard")):
        rps, p50, p99 = summarise(results, path)
        cpu = cpu_mean(results, path)
        lines.append(
            f"| **{label}, mean** | | **{rps:,.0f}** | {p50:.1f} ms | {p99:.1f} ms "
            f"| {cpu:.2f} ms | | | |"
        )
    return "\n".join(lines)


def costs_table(costs: list[Cost]) -> str:
    lines = [
        "| URL | SQL queries | cache (Redis) calls |",
        "| --- | --- | --- |",
    ]
    for c in costs:
        lines.append(f"| `{c.path}` | {len(c.queries)} | {len(c.cache_calls)} |")
    return "\n".join(lines)


def costs_detail(costs: list[Cost]) -> str:
    out = []
    for c in costs:
        out.append(f"`{c.path}` (HTTP {c.status}):\n")
        out.append("```sql")
        out.extend(common.shorten_sql(q, 160) for q in c.queries)
        out.append("```")
        if c.cache_calls:
            out.append("Cache: " + ", ".join(f"`{call}`" for call in c.cache_calls) + "\n")
    return "\n".join(out)


def render_section(
    info: dict[str, str],
    results: list[Result],
    costs: list[Cost],
    ratio: float,
    port: int,
    started: str,
) -> str:
    ok = ratio >= REQUIRED_RATIO
    cpu_factor = cpu_mean(results, ROOM_PATH) / max(cpu_mean(results, BARE_PATH), 1e-9)
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    gunicorn = shlex.join(gunicorn_command(port)).replace(str(ROOT) + "/", "")
    cookie = "sessionid=<session key>"
    wrk = "\n    ".join(
        shlex.join(wrk_command(f"http://{HOST}:{port}{path}", cookie, DURATION_S))
        for path in (BARE_PATH, ROOM_PATH)
    )
    env = " ".join(f"{k}={v}" for k, v in DJANGO_ENV.items() if k != "DJANGO_SETTINGS_MODULE")
    return f"""{SECTION_TITLE}

The trader's room dashboard (`/room/`, signed in as a trader with a verified
e-mail, 10+ events and 5 notifications) against a bare Django view
(`/_bench/bare` in `tests/benchmarks/urls.py`: one query, a small template),
on the same gunicorn server in the same run, {CONNECTIONS} connections,
alternating {ROUNDS} rounds of {DURATION_S} s each after a {WARMUP_S} s warm-up
of each URL. Both go through the full middleware stack with the trader's
session cookie.

Run {started} by

    .venv/bin/python tests/benchmarks/bench_dashboard.py    # or: make bench

which starts

    {env} \\
      {gunicorn}

and measures the two URLs, alternately, with

    {wrk}

Machine:

{machine}

{table(results)}

*Server CPU / request* is the CPU time of the gunicorn workers and their
PostgreSQL backends divided by the requests served (from /proc); *other
load* is the CPU used meanwhile by everything else on the machine (other
processes, Redis), as a share of all cores. This machine is shared, so
requests/s drop when other load is high; server CPU per request is the
steadier figure. A round (both URLs) during which other load exceeded
{MAX_OTHER_LOAD_PCT:.0f} % is marked *excluded*, left out of the means and
repeated (at most {EXTRA_ROUNDS} extra rounds).

**Dashboard / bare view throughput: {ratio:.2f}** (required: at least
{REQUIRED_RATIO:.2f}; {"met" if ok else "NOT met"}). In server CPU per request the
dashboard costs {cpu_factor:.1f} times the bare view.

Work per request (one warm request each, counted in-process with
`CaptureQueriesContext` and a counter on the Redis cache client). The first
query and the session `get` are the sign-in that every page of a signed-in
user pays (the auditlog middleware loads `request.user` on every request):

{costs_table(costs)}

{costs_detail(costs)}
Figures on this machine vary by about ±20 % between runs
(shared/BASELINES.md); compare the ratio, not absolute numbers.
"""


# --- Main --------------------------------------------------------------------------


def main() -> int:
    os.chdir(ROOT)
    if not (common.VENV_BIN / "gunicorn").exists():
        log("gunicorn is not installed in .venv")
        return 2
    started = common.started_label()
    log(f"re-creating database {BENCH_DB}")
    common.recreate_database(BENCH_DB)
    setup_django()
    session_key = seed()
    cookie = f"sessionid={session_key}"
    costs = measure_costs(session_key)
    for c in costs:
        log(
            f"{c.path}: HTTP {c.status}, {len(c.queries)} SQL queries, "
            f"{len(c.cache_calls)} cache calls"
        )
    info = common.web_machine_info(BENCH_DB)

    port = common.free_port()
    base = f"http://{HOST}:{port}"
    results: list[Result] = []
    log(f"starting gunicorn on {base}")
    with common.gunicorn(gunicorn_command(port), server_env()) as proc:
        common.wait_until_up(base + BARE_PATH, proc)
        status, body = common.fetch(base + ROOM_PATH, cookie)
        if status != 200 or "Welcome, Alice" not in body or "Statement 4 is ready" not in body:
            raise RuntimeError(f"/room/ answered {status}, not Alice's page:\n{body[:500]}")
        room_size = len(body.encode())
        log(f"/room/ answers 200 with Alice's dashboard ({room_size} bytes)")
        for path in (BARE_PATH, ROOM_PATH):
            run_wrk(base, path, cookie, WARMUP_S, 0)
        server = Server(proc.pid)  # after the warm-up: every worker has its connection
        clean = round_no = 0
        while clean < ROUNDS and round_no < ROUNDS + EXTRA_ROUNDS:
            round_no += 1
            pair = []
            for path in (BARE_PATH, ROOM_PATH):
                result = run_wrk(base, path, cookie, DURATION_S, round_no, server)
                log(
                    f"round {round_no} {path}: {result.rps:,.0f} req/s, p50 "
                    f"{result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                    f"server CPU {result.server_cpu_ms:.2f} ms/request, other load "
                    f"{result.others_cpu_pct:.0f} %"
                )
                if path == ROOM_PATH and result.bytes_per_request < room_size:
                    raise RuntimeError("the dashboard responses were smaller than the page")
                pair.append(result)
            if all(r.others_cpu_pct <= MAX_OTHER_LOAD_PCT for r in pair):
                clean += 1
            else:
                for r in pair:
                    r.excluded = True
                log(f"round {round_no}: other load above {MAX_OTHER_LOAD_PCT:.0f} %, repeated")
            results.extend(pair)
        status, _ = common.fetch(base + ROOM_PATH, cookie)
        if status != 200:
            raise RuntimeError(f"/room/ answered {status} after the run")

    bare_rps = summarise(results, BARE_PATH)[0]
    room_rps = summarise(results, ROOM_PATH)[0]
    ratio = room_rps / bare_rps
    print()
    print(table(results))
    print()
    print(f"dashboard / bare view: {ratio:.2f} (required >= {REQUIRED_RATIO})")
    cpu_factor = cpu_mean(results, ROOM_PATH) / max(cpu_mean(results, BARE_PATH), 1e-9)
    print(f"server CPU per request: dashboard = {cpu_factor:.1f} x bare view")
    common.write_titled_section(
        SECTION_TITLE, render_section(info, results, costs, ratio, port, started)
    )
    log(f"wrote {DOC.relative_to(ROOT)}")
    return 0 if ratio >= REQUIRED_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
