"""Benchmark: the IB tree's reads and moves at 10,000 partners.

Builds 10,000 partners in a tree 10 levels deep (10 top partners, then each
new partner under a random partner of the level above), through treebeard
as the services do, and times (p50 / p99 over many calls):

- ``selectors.ancestor_ids`` of partners at depth 10;
- ``selectors.subtree(...).count()`` of a top partner (a tenth of the tree)
  and of partners at depth 5;
- ``selectors.is_in_subtree`` (the dashboard's 404 check);
- ``partner_move`` of a depth-5 partner with its branch to another parent
  (paths rewritten, recorded).

Writes the section between ``<!-- ib-tree:start -->`` and
``<!-- ib-tree:end -->`` of docs/PERFORMANCE.md (``--no-write`` leaves it).

    .venv/bin/python tests/benchmarks/bench_ib_tree.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.common import DOC, HOST, PG_PORT, PG_USER, VENV_BIN, log  # noqa: E402

START_MARK = "<!-- ib-tree:start -->"
END_MARK = "<!-- ib-tree:end -->"
BENCH_DB = "backoffice_ib_tree_bench"
PARTNERS = 10_000
DEPTH = 10
TOPS = 10
SEED = 20261125
CALLS = 300
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


def build(rng: random.Random) -> list[list]:
    from accounts.models import User
    from ib.models import Partner

    users = iter(
        User.objects.bulk_create(
            User(email=f"p{n}@bench.test", first_name="P", last_name=str(n), password="!")
            for n in range(PARTNERS)
        )
    )
    per_level = [TOPS] + [(PARTNERS - TOPS) // (DEPTH - 1)] * (DEPTH - 1)
    per_level[-1] += PARTNERS - sum(per_level)
    levels: list[list] = []
    for depth, count in enumerate(per_level):
        level = []
        for _ in range(count):
            fields = {"user": next(users), "status": Partner.ACTIVE}
            if depth == 0:
                level.append(Partner.objects.add_root(create_kwargs=fields))
            else:
                parent = Partner.objects.get(pk=rng.choice(levels[-1]).pk)
                level.append(
                    Partner.objects.add_child(
                        parent, create_kwargs={**fields, "parent_partner": parent}
                    )
                )
        levels.append(level)
    return levels


def timed(calls: list) -> tuple[float, float]:
    times = []
    for call in calls:
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    started = common.started_label()
    rng = random.Random(SEED)  # noqa: S311 - benchmark data
    common.recreate_database(BENCH_DB)
    subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=common.child_env(DJANGO_ENV, UNSET),
        check=True,
    )
    common.setup_django(DJANGO_ENV, UNSET)
    from django.db import connection

    from ib import selectors
    from ib.models import Partner
    from ib.services import partner_move

    t = time.perf_counter()
    levels = build(rng)
    build_s = time.perf_counter() - t
    log(f"{PARTNERS:,} partners on {DEPTH} levels in {build_s:.1f} s")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE ib_partner")
    deepest = [Partner.objects.get(pk=p.pk) for p in rng.sample(levels[-1], 50)]
    middle = [Partner.objects.get(pk=p.pk) for p in rng.sample(levels[4], 50)]
    tops = [Partner.objects.get(pk=p.pk) for p in levels[0]]
    results = {
        "ancestors of a depth-10 partner (`ancestor_ids`)": timed(
            [lambda p=p: selectors.ancestor_ids(p) for p in deepest * (CALLS // 50)]
        ),
        "subtree of a top partner, counted (~1,000 partners)": timed(
            [lambda p=p: selectors.subtree(p).count() for p in tops * (CALLS // TOPS)]
        ),
        "subtree of a depth-5 partner, counted": timed(
            [lambda p=p: selectors.subtree(p).count() for p in middle * (CALLS // 50)]
        ),
        "is this partner in my subtree (`is_in_subtree`)": timed(
            [
                lambda p=p, q=q: selectors.is_in_subtree(p, q.pk)
                for p, q in zip(tops * (CALLS // TOPS), deepest * (CALLS // 50), strict=True)
            ]
        ),
    }
    sizes = [selectors.subtree(p).count() for p in tops]
    branch = [selectors.subtree(p).count() for p in middle[:20]]
    moves = []
    for partner, target in zip(middle[:20], rng.sample(levels[2], 20), strict=True):
        partner = Partner.objects.get(pk=partner.pk)
        target = Partner.objects.get(pk=target.pk)
        if target.path.startswith(partner.path):
            continue
        t = time.perf_counter()
        partner_move(actor=None, partner=partner, new_parent=target, reason="bench")
        moves.append((time.perf_counter() - t) * 1000)
    moves.sort()
    results["move a depth-5 partner with its branch (`partner_move`)"] = (
        statistics.median(moves),
        moves[-1],
    )
    rows = "\n".join(f"| {name} | {p50:.2f} | {p99:.2f} |" for name, (p50, p99) in results.items())
    section = f"""{START_MARK}
## IB tree at 10,000 partners

{PARTNERS:,} partners on {DEPTH} levels ({TOPS} at the top, each other partner
under a random partner of the level above; top subtrees of
{min(sizes):,}–{max(sizes):,} partners, depth-5 branches of
{min(branch):,}–{max(branch):,}), built through treebeard as the services
do in {build_s:.0f} s. The tree is a materialised path with a
`varchar_pattern_ops` index: ancestors are the path's prefixes (one
`path IN (...)` query), a subtree is `path LIKE 'prefix%'` (an index range).
Milliseconds, {CALLS} calls each ({len(moves)} moves; "p99" of the moves is
the slowest):

| read or write | p50 ms | p99 ms |
| --- | --- | --- |
{rows}

Run {started} by

    .venv/bin/python tests/benchmarks/bench_ib_tree.py

(database `{BENCH_DB}`, DEBUG=0; machine as in the sections above.)
{END_MARK}"""
    print(section)
    if not args.no_write:
        common.write_marked_section(START_MARK, END_MARK, section, DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
