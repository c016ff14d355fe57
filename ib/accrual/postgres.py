"""Accrual on PostgreSQL, set-based: the rules of :mod:`ib.services.accrual`
as one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per chunk of deal ids.

Python prepares small temporary tables for the run (``ON COMMIT DROP``):

- ``acc_chain``: each partner's chain (itself, its parent, ...) per interval
  of time in which it did not change (:func:`ib.accrual.timeline.chains`);
- ``acc_pplan``: each partner's plan version per interval, with its terms
  (model, tier shares, hold time, caps);
- ``acc_coef``: per version, traded symbol, account currency and target
  currency, what one lot and one minor unit of charged commission earn, in
  minor units of the target currency. All exchange rates are folded in here,
  read once per run (:class:`~ib.accrual.terms.RateBook`); a part whose rate
  is missing is flagged instead;
- ``acc_rate`` and ``acc_ccy``: rates and minor units, for period caps.

The statement then joins each deal to its direct partner (own partner row,
else the referral covering its close), the governing version, the chain and
each level's version, and computes with window functions over the deal's
levels (the rate below, the cap per deal) and over each partner's period
(the cap per period). Everything is ``numeric``: products are exact and
the only rounding is ``floor`` to minor units, as in the Python reference
(:mod:`ib.accrual.reference`), which the tests hold it to.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from django.db import connection

from . import reference
from .terms import (
    EXACT,
    HUNDRED,
    RateBook,
    Terms,
    day_start,
    period_end,
    period_start,
    versions_terms,
)
from .timeline import FAR_FUTURE, FAR_PAST, chains, plan_versions

#: What the statement runs with (this transaction only): memory for the sorts
#: and hashes of one chunk, and hash joins only (the planner misjudges joins
#: on ranges of time over temporary tables, and a merge or nested-loop join
#: there costs seconds per 100,000 deals).
SETTINGS = {"work_mem": "256MB", "enable_mergejoin": "off", "enable_nestloop": "off"}
#: ``ON CONFLICT DO NOTHING`` on the insert: a row already there for a deal and
#: partner is skipped. Runs are serialised and leave out the deals already
#: accrued, so it never happens; without it the unique index would refuse
#: such a row and fail the run. It costs about a tenth of a run
#: (docs/PERFORMANCE.md, "IB commission accrual").
ON_CONFLICT = True


@dataclass
class Report:
    deals: int = 0
    written: int = 0
    skipped_no_rate: int = 0
    #: Seconds per step, for the benchmark's "where the time went".
    steps: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def _text(value) -> str:
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        if value == FAR_PAST:
            return "-infinity"
        if value == FAR_FUTURE:
            return "infinity"
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        return "{" + ",".join(_text(v) for v in value) + "}"
    if isinstance(value, timedelta):
        return f"{value.total_seconds():.6f} seconds"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _copy(cur, table: str, rows: Iterable[tuple]) -> int:
    buffer = io.StringIO()
    count = 0
    for row in rows:
        buffer.write("\t".join(_text(v) for v in row))
        buffer.write("\n")
        count += 1
    buffer.seek(0)
    cur.cursor.copy_expert(f"COPY {table} FROM STDIN", buffer)
    cur.execute(f"ANALYZE {table}")
    return count


TABLES = """
DROP TABLE IF EXISTS acc_pplan, acc_chain, acc_coef, acc_rate, acc_ccy, acc_capkey, acc_prior;
CREATE TEMP TABLE acc_pplan (
    partner_id bigint NOT NULL, valid_from timestamptz NOT NULL,
    valid_until timestamptz NOT NULL, version_id bigint NOT NULL,
    currency text NOT NULL, rate_diff boolean NOT NULL, shares numeric[] NOT NULL,
    n_shares int NOT NULL, min_hold interval NOT NULL, allow_own boolean NOT NULL,
    cap_deal numeric, cap_period numeric, cap_kind text
) ON COMMIT DROP;
CREATE TEMP TABLE acc_chain (
    direct_id bigint NOT NULL, valid_from timestamptz NOT NULL,
    valid_until timestamptz NOT NULL, level int NOT NULL, partner_id bigint NOT NULL,
    active boolean NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE acc_coef (
    version_id bigint NOT NULL, symbol text NOT NULL, acct_ccy text NOT NULL,
    acct_digits int NOT NULL, target text NOT NULL, k_reb numeric NOT NULL,
    k_spr numeric NOT NULL, k_com numeric NOT NULL, miss_base boolean NOT NULL,
    miss_com boolean NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE acc_rate (
    src text NOT NULL, dst text NOT NULL, rate numeric NOT NULL, PRIMARY KEY (src, dst)
) ON COMMIT DROP;
CREATE TEMP TABLE acc_ccy (
    code text PRIMARY KEY, unit numeric NOT NULL, scale numeric NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE acc_capkey (
    partner_id bigint NOT NULL, kind text NOT NULL, cap_ccy text NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE acc_prior (
    partner_id bigint NOT NULL, kind text NOT NULL, cap_ccy text NOT NULL, start date NOT NULL,
    total numeric NOT NULL, no_rate boolean NOT NULL
) ON COMMIT DROP;
"""

PRIOR = """
TRUNCATE acc_prior;
INSERT INTO acc_prior
SELECT k.partner_id, k.kind, k.cap_ccy, date_trunc(k.kind, c.earned_at AT TIME ZONE 'UTC')::date,
       COALESCE(SUM(c.amount * u.unit * r.rate), 0), bool_or(r.rate IS NULL)
FROM acc_capkey k
JOIN {commission} c ON c.kind = 'deal' AND c.partner_id = k.partner_id
     AND c.earned_at >= %(lo)s AND c.earned_at < %(hi)s
JOIN acc_ccy u ON u.code = c.currency_id
LEFT JOIN acc_rate r ON r.src = c.currency_id AND r.dst = k.cap_ccy
GROUP BY 1, 2, 3, 4;
ANALYZE acc_prior;
"""


@dataclass(frozen=True)
class Shape:
    """What a run's plans use, so that its statement leaves out what is not needed."""

    platform: bool  # only one platform's deals
    rate_difference: bool  # a version under the rate-difference model
    deal_caps: bool  # a version with a cap per deal
    rate_difference_caps: bool  # ... a rate-difference version with one
    period_caps: bool  # a version with a cap per period
    may_wait: bool  # a rate is missing: a deal may have to wait

    @property
    def own_versions(self) -> bool:
        """Each level needs its partner's own version (not only the governing one)."""
        return self.rate_difference or self.period_caps


_CAP_JOINS = """
    LEFT JOIN acc_prior pr ON pr.partner_id = {row}.partner_id AND pr.kind = {row}.cap_kind
         AND pr.cap_ccy = {row}.cap_ccy AND pr.start = {row}.cap_start
    LEFT JOIN acc_rate rc ON rc.src = {row}.gov_ccy AND rc.dst = {row}.cap_ccy
    LEFT JOIN acc_rate rb ON rb.src = {row}.cap_ccy AND rb.dst = {row}.gov_ccy"""


def _levels_sql(shape: Shape) -> str:
    """The chain's level rows of each deal, before caps (CTE ``l``)."""
    joins = ""
    columns = ""
    if shape.own_versions:
        joins += """
    LEFT JOIN acc_pplan o ON o.partner_id = c.partner_id
         AND o.valid_from <= g.t AND g.t < o.valid_until"""
    if shape.rate_difference:
        joins += """
    LEFT JOIN acc_coef k ON g.rate_diff AND k.version_id = o.version_id AND k.symbol = g.symbol
         AND k.acct_ccy = g.acct_ccy AND k.acct_digits = g.acct_digits AND k.target = g.gov_ccy"""
        columns += """
        CASE WHEN g.rate_diff THEN o.version_id ELSE g.gov_version END AS version_id,
        CASE WHEN g.rate_diff THEN COALESCE(k.k_reb * g.lots, 0) ELSE g.g_reb END AS reb,
        CASE WHEN g.rate_diff THEN COALESCE(k.k_spr * g.lots + k.k_com * g.comm, 0)
             ELSE g.g_share END AS shr,
        CASE WHEN g.rate_diff THEN COALESCE(k.miss_base OR (k.miss_com AND g.comm > 0), false)
             ELSE g.g_miss END AS miss,"""
    else:
        columns += """
        g.gov_version AS version_id, g.g_reb AS reb, g.g_share AS shr, g.g_miss AS miss,"""
    if shape.period_caps:
        columns += """
        o.cap_period, o.cap_kind, o.currency AS cap_ccy,
        date_trunc(o.cap_kind, g.t AT TIME ZONE 'UTC')::date AS cap_start,"""
    return f"""
l0 AS (
    SELECT {columns}
        g.deal_id, g.client_id, g.t, g.lots, g.grp, g.gov_ccy, g.rate_diff, g.cap_deal,
        c.level, c.partner_id,
        c.active AND NOT (c.level = 1 AND g.own AND NOT g.allow_own) AS earns,
        CASE WHEN g.rate_diff THEN NULL ELSE g.shares[c.level] END AS tier
    FROM g
    JOIN acc_chain c ON c.direct_id = g.direct_id
         AND c.valid_from <= g.t AND g.t < c.valid_until{joins}
    WHERE g.rate_diff OR c.level <= g.n_shares
),
l AS (
    -- Fixed shares: what the level earns before caps, known without the levels below.
    SELECT l0.*,
        CASE WHEN NOT rate_diff AND earns THEN floor((reb + shr) * tier / 100) ELSE 0 END AS fixed
    FROM l0
)"""  # noqa: S608 - names and fixed fragments, not data


#: Written for each row (CTE ``z``'s columns, then the insert's).
_ROW = (
    "partner_id, client_id, deal_id, version_id, level, grp, lots, reb, shr, below, "
    "rate_diff, tier, raw, gov_ccy, t"
)


def statements(shape: Shape) -> tuple[str, str]:
    """(the INSERT of one chunk, the count of its deals waiting for a rate).

    What needs the levels below (the rate below, the cap per deal, a missing
    rate) is one window over each deal's levels, and the cap per period one
    over each capped partner's period; both are left out when no plan of the
    run needs them (each costs a sort of the rows)."""
    from accounts.models import Deal, Instrument, TradingAccount

    from ..models import Commission, Partner, Referral

    deal, account = Deal._meta.db_table, TradingAccount._meta.db_table
    instrument, commission = Instrument._meta.db_table, Commission._meta.db_table
    partner, referral = Partner._meta.db_table, Referral._meta.db_table
    platform_filter = "AND d.platform_id = %(platform)s" if shape.platform else ""
    below_levels = (
        "PARTITION BY deal_id ORDER BY level ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    )
    window = []
    if shape.may_wait:
        flags = "miss"
        if shape.period_caps:
            flags = """miss OR (cap_period IS NOT NULL
                AND (COALESCE(pr.no_rate, false) OR rc.rate IS NULL OR rb.rate IS NULL))"""
        window.append(f"bool_or({flags}) OVER (PARTITION BY deal_id) AS skip")
    else:
        window.append("false AS skip")
    if shape.rate_difference:
        window.append(f"COALESCE(max(reb + shr) OVER ({below_levels}), 0) AS below")
    else:
        window.append("0 AS below")
    if shape.deal_caps:
        window.append(f"COALESCE(sum(fixed) OVER ({below_levels}), 0) AS fixed_below")
    else:
        window.append("0 AS fixed_below")
    cap_joins = _CAP_JOINS.format(row="l") if shape.may_wait and shape.period_caps else ""
    head = f"""
WITH d AS (
    SELECT d.id AS deal_id, d.client_id, d.symbol, d.volume AS lots, d.close_time AS t,
        d.close_time - d.open_time AS held,
        CASE WHEN d.commission < 0 THEN -d.commission ELSE 0 END AS comm,
        a.currency AS acct_ccy, a.currency_digits AS acct_digits,
        COALESCE(op.id, r.partner_id) AS direct_id, op.id IS NOT NULL AS own
    FROM {deal} d
    JOIN {account} a ON a.id = d.account_id
    LEFT JOIN {partner} op ON op.user_id = d.client_id
    LEFT JOIN {referral} r ON op.id IS NULL AND r.client_id = d.client_id
         AND r.since <= d.close_time AND (r.until IS NULL OR d.close_time < r.until)
    WHERE d.id BETWEEN %(lo)s AND %(hi)s {platform_filter} AND NOT a.is_demo
      AND NOT EXISTS (
          SELECT 1 FROM {commission} x
          WHERE x.kind = 'deal' AND x.deal_id = d.id AND x.deal_id BETWEEN %(lo)s AND %(hi)s
      )
),
g AS (
    SELECT d.*, p.version_id AS gov_version, p.currency AS gov_ccy, p.rate_diff, p.shares,
        p.n_shares, p.allow_own, p.cap_deal, COALESCE(i."group", '') AS grp,
        COALESCE(k.k_reb * d.lots, 0) AS g_reb,
        COALESCE(k.k_spr * d.lots + k.k_com * d.comm, 0) AS g_share,
        COALESCE(k.miss_base OR (k.miss_com AND d.comm > 0), false) AS g_miss
    FROM d
    JOIN acc_pplan p ON p.partner_id = d.direct_id
         AND p.valid_from <= d.t AND d.t < p.valid_until
    LEFT JOIN {instrument} i ON i.symbol = d.symbol
    LEFT JOIN acc_coef k ON NOT p.rate_diff AND k.version_id = p.version_id
         AND k.symbol = d.symbol AND k.acct_ccy = d.acct_ccy AND k.acct_digits = d.acct_digits
         AND k.target = p.currency
    WHERE d.held >= p.min_hold
),{_levels_sql(shape)},
w AS (
    SELECT l.*, {", ".join(window)}
    FROM l{cap_joins}
)"""  # noqa: S608 - names and fixed fragments, not data
    if shape.rate_difference_caps:
        deal_cap = f"""GREATEST(0, LEAST(raw, cap_deal - COALESCE(sum(raw) OVER (
                 {below_levels}), 0)))"""
    else:
        deal_cap = "GREATEST(0, LEAST(raw, cap_deal - fixed_below))"
    body = f""",
x AS (
    SELECT w.*,
        CASE WHEN NOT rate_diff THEN fixed
             WHEN earns THEN floor(GREATEST(reb + shr - below, 0))
             ELSE 0 END AS raw
    FROM w WHERE NOT skip
),
y AS {"MATERIALIZED " if shape.period_caps else ""}(
    -- A level that earns nothing is never written: left out here, after the
    -- rate below was taken from it (it adds nothing to a cap).
    SELECT x.*, CASE WHEN cap_deal IS NULL THEN raw ELSE {deal_cap} END AS paid1
    FROM x WHERE raw > 0
)"""  # noqa: S608 - fixed fragments, not data
    if shape.period_caps:
        body += f""",
p0 AS (
    SELECT y.*, u.scale, paid1 * u.unit * rc.rate AS conv, rb.rate AS from_cap,
        COALESCE(pr.total, 0) AS prior
    FROM y JOIN acc_ccy u ON u.code = y.gov_ccy{_CAP_JOINS.format(row="y")}
    WHERE y.cap_period IS NOT NULL
),
p1 AS (
    SELECT p0.*, sum(conv) OVER (PARTITION BY partner_id, cap_kind, cap_start, cap_ccy
                                 ORDER BY deal_id ROWS UNBOUNDED PRECEDING) AS upto
    FROM p0
),
z AS (
    SELECT {_ROW}, paid1 AS paid FROM y WHERE cap_period IS NULL
    UNION ALL
    SELECT {_ROW},
        CASE WHEN upto <= cap_period - prior THEN paid1
             ELSE GREATEST(0, LEAST(paid1,
                  floor((cap_period - prior - (upto - conv)) * from_cap * scale))) END
    FROM p1
)"""  # noqa: S608 - fixed fragments, not data
    else:
        body += """,
z AS (SELECT y.*, paid1 AS paid FROM y)"""
    conflict = "ON CONFLICT DO NOTHING" if ON_CONFLICT else ""
    insert = f"""
INSERT INTO {commission} (kind, partner_id, client_id, deal_id, plan_version_id, level,
    instrument_group, lots, rebate, share, basis, tier_percent, capped, amount, currency_id,
    earned_at, created_at)
{head}{body}
SELECT 'deal' AS kind, partner_id, client_id, deal_id, version_id, level, grp, lots,
    floor(reb)::bigint AS rebate, floor(shr)::bigint AS share,
    CASE WHEN rate_diff THEN floor(below)::bigint ELSE 0 END AS basis,
    tier, paid < raw AS capped, paid::bigint AS amount, gov_ccy, t, %(now)s AS created_at
FROM z WHERE paid > 0 OR paid < raw
-- In the unique index's order: its pages are then written one after the other.
ORDER BY deal_id, level
{conflict}"""  # noqa: S608 - names and fixed fragments, not data
    waiting = f"{head}\nSELECT count(DISTINCT deal_id) FROM w WHERE skip"
    return insert, waiting


class Run:
    """One accrual pass over deal ids ``first``..``last`` (inside the caller's
    transaction, which holds the accrual lock)."""

    def __init__(
        self,
        first: int,
        last: int,
        platform_id: int | None,
        rates: RateBook,
        chunk: int | None = None,
    ) -> None:
        self.first, self.last, self.platform_id = first, last, platform_id
        self.rates = rates
        self.chunk = chunk or reference.CHUNK
        self.report = Report()

    def _timed(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.report.steps[name] += now - started
        return now

    def _params(self, lo: int, hi: int) -> dict:
        return {"lo": lo, "hi": hi, "platform": self.platform_id}

    def execute(self) -> Report:
        from django.utils import timezone

        t = time.perf_counter()
        with connection.cursor() as cur:
            saved = self._settings(cur, SETTINGS)
            try:
                classes, lo, hi = self._deal_classes(cur)
                t = self._timed("read the deals' symbols and currencies", t)
                if not classes:
                    return self.report
                shape = self._prepare(cur, classes, lo, hi)
                t = self._timed("prepare (tree, plans, rates)", t)
                insert, waiting = statements(shape)
                now = timezone.now()
                start = self.first
                while start <= self.last:
                    end = min(start + self.chunk - 1, self.last)
                    params = {**self._params(start, end), "now": now}
                    if shape.period_caps:
                        self._prior(cur, start, end)
                        t = self._timed("period totals", t)
                    if shape.may_wait:
                        cur.execute(waiting, params)
                        self.report.skipped_no_rate += cur.fetchone()[0]
                        t = self._timed("count deals waiting for a rate", t)
                    cur.execute(insert, params)
                    self.report.written += max(cur.rowcount, 0)
                    t = self._timed("compute and insert the commissions", t)
                    start = end + 1
            finally:
                self._settings(cur, saved)
        return self.report

    @staticmethod
    def _settings(cur, values: dict[str, str]) -> dict[str, str]:
        """Set these for the rest of the transaction; what they were."""
        old = {}
        for name, value in values.items():
            cur.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
            old[name] = cur.fetchone()[0]
        return old

    # --- Preparation ---------------------------------------------------------------

    def _deal_classes(self, cur):
        """What the run's deals trade: {(symbol, account currency, digits)},
        and their first and last close; counts the deals."""
        from accounts.models import Deal, TradingAccount

        platform = "AND d.platform_id = %(platform)s" if self.platform_id is not None else ""
        cur.execute(
            f"""SELECT d.symbol, a.currency, a.currency_digits, count(*),
                       min(d.close_time), max(d.close_time)
                FROM {Deal._meta.db_table} d
                JOIN {TradingAccount._meta.db_table} a ON a.id = d.account_id
                WHERE d.id BETWEEN %(lo)s AND %(hi)s {platform}
                GROUP BY 1, 2, 3""",  # noqa: S608 - table names, not data
            self._params(self.first, self.last),
        )
        classes, lo, hi = set(), None, None
        for symbol, currency, digits, count, first, last in cur.fetchall():
            classes.add((symbol, currency, digits))
            self.report.deals += count
            lo = first if lo is None else min(lo, first)
            hi = last if hi is None else max(hi, last)
        return classes, lo, (hi + timedelta(microseconds=1)) if hi else None

    def _prepare(self, cur, classes, lo: datetime, hi: datetime) -> Shape:
        from accounts.models import Instrument
        from payments.models import Currency

        from ..models import Partner, PartnerMove, Plan, PlanAssignment, PlanVersion

        parents, active = {}, {}
        for pk, parent, status in Partner.objects.values_list("pk", "parent_partner_id", "status"):
            parents[pk], active[pk] = parent, status == Partner.ACTIVE
        moves = defaultdict(list)
        for pk, partner_id, at, old in PartnerMove.objects.filter(
            partner__isnull=False
        ).values_list("pk", "partner_id", "at", "old_parent_id"):
            moves[partner_id].append((at, pk, old))
        for rows in moves.values():
            rows.sort(key=lambda m: (m[0], m[1]))
        assignments = defaultdict(list)
        for partner_id, since, plan in PlanAssignment.objects.order_by("since", "id").values_list(
            "partner_id", "since", "plan_id"
        ):
            assignments[partner_id].append((since, plan))
        versions = defaultdict(list)
        for plan, start, pk in PlanVersion.objects.order_by("effective_from", "id").values_list(
            "plan_id", "effective_from", "pk"
        ):
            versions[plan].append((start, pk))
        pplan = plan_versions(assignments, versions, lo, hi)
        used = {version for rows in pplan.values() for _, _, version in rows}
        terms = versions_terms(used)
        tree = chains(parents, moves, lo, hi)

        exponents = dict(Currency.objects.values_list("code", "exponent"))
        instruments = {
            symbol: (group, size * markup * Decimal(1).scaleb(-digits), profit)
            for symbol, group, size, markup, digits, profit in Instrument.objects.filter(
                symbol__in={symbol for symbol, _, _ in classes}
            ).values_list(
                "symbol", "group", "contract_size", "spread_markup", "digits", "profit_currency"
            )
        }
        cur.execute(TABLES)
        period_caps = any(t.cap_per_period is not None for t in terms.values())
        plan_currencies = {t.currency for t in terms.values()}
        targets = {t.currency for t in terms.values() if t.rate_difference}

        _copy(
            cur,
            "acc_pplan",
            (
                (partner, start, end, version, *_terms_row(terms[version], exponents))
                for partner, rows in pplan.items()
                for start, end, version in rows
            ),
        )
        _copy(
            cur,
            "acc_chain",
            (
                (direct, start, end, level, partner, active[partner])
                for direct, rows in tree.items()
                for start, end, chain in rows
                for level, partner in enumerate(chain, 1)
            ),
        )
        _copy(cur, "acc_coef", self._coefficients(terms, classes, instruments, exponents, targets))
        _copy(
            cur,
            "acc_ccy",
            (
                (code, Decimal(1).scaleb(-exp), Decimal(1).scaleb(exp))
                for code, exp in exponents.items()
            ),
        )
        if period_caps:
            # Deal rows are in their governing plan's currency: any plan's.
            codes = plan_currencies | set(Plan.objects.values_list("currency_id", flat=True))
            caps = {t.currency for t in terms.values() if t.cap_per_period is not None}
            pairs = {(src, dst) for src in codes for dst in caps} | {
                (dst, src) for src in codes for dst in caps
            }
            _copy(
                cur,
                "acc_rate",
                (
                    (src, dst, rate)
                    for src, dst in sorted(pairs)
                    if (rate := self.rates.get(src, dst)) is not None
                ),
            )
            _copy(
                cur,
                "acc_capkey",
                sorted(
                    {
                        (partner, terms[v].cap_period, terms[v].currency)
                        for partner, rows in pplan.items()
                        for _, _, v in rows
                        if terms[v].cap_per_period is not None
                    }
                ),
            )
            self._cap_kinds = {t.cap_period for t in terms.values() if t.cap_per_period}
        return Shape(
            platform=self.platform_id is not None,
            rate_difference=any(t.rate_difference for t in terms.values()),
            deal_caps=any(t.cap_per_deal is not None for t in terms.values()),
            rate_difference_caps=any(
                t.cap_per_deal is not None and t.rate_difference for t in terms.values()
            ),
            period_caps=period_caps,
            may_wait=bool(self.rates.missing),
        )

    def _coefficients(self, terms: dict[int, Terms], classes, instruments, exponents, targets):
        """``acc_coef`` rows: per version, symbol, account currency and
        digits, and target currency, the minor units of the target earned
        per lot (rebate; spread share) and per minor unit of commission
        charged, exact, with the rates folded in."""
        rate = self.rates.get
        with localcontext(EXACT):
            for t in terms.values():
                for target in {t.currency} | targets:
                    scale = Decimal(1).scaleb(exponents[target])
                    to_target = rate(t.currency, target)
                    for symbol, currency, digits in classes:
                        group, spread, profit = instruments.get(symbol, ("", Decimal(0), ""))
                        rule = t.rule_for(group)
                        if rule is None:
                            continue
                        k_reb = k_spr = k_com = Decimal(0)
                        miss_base = miss_com = False
                        if rule.rebate_per_lot:
                            if to_target is None:
                                miss_base = True
                            else:
                                k_reb = rule.rebate_per_lot * to_target * scale
                        if rule.spread_share and spread:
                            to_plan = rate(profit or currency, t.currency)
                            if to_plan is None or to_target is None:
                                miss_base = True
                            else:
                                k_spr = (
                                    rule.spread_share / HUNDRED * spread * to_plan * to_target
                                ) * scale
                        if rule.commission_share:
                            to_plan = rate(currency, t.currency)
                            if to_plan is None or to_target is None:
                                miss_com = True
                            else:
                                k_com = (
                                    rule.commission_share
                                    / HUNDRED
                                    * Decimal(1).scaleb(-digits)
                                    * to_plan
                                    * to_target
                                    * scale
                                )
                        yield (
                            t.version_id,
                            symbol,
                            currency,
                            digits,
                            target,
                            k_reb,
                            k_spr,
                            k_com,
                            miss_base,
                            miss_com,
                        )

    def _prior(self, cur, first: int, last: int) -> None:
        """What each capped partner already earned in the periods this chunk
        of deals falls in (the rows recorded so far, earlier chunks included)."""
        from accounts.models import Deal

        from ..models import Commission

        table = Deal._meta.db_table
        sql = f"SELECT min(close_time), max(close_time) FROM {table} WHERE id BETWEEN %s AND %s"  # noqa: S608, E501
        cur.execute(sql, [first, last])
        lo, hi = cur.fetchone()
        if lo is None:
            cur.execute("TRUNCATE acc_prior")
            return
        begin = min(period_start(lo, kind) for kind in self._cap_kinds)
        cur.execute(
            PRIOR.format(commission=Commission._meta.db_table),
            {
                "lo": day_start(begin),
                "hi": max(period_end(hi, kind) for kind in self._cap_kinds),
            },
        )


def _terms_row(t: Terms, exponents: dict[str, int]) -> tuple:
    """A version's terms as ``acc_pplan`` columns (the cap per deal in minor units)."""
    return (
        t.currency,
        t.rate_difference,
        list(t.tier_shares),
        len(t.tier_shares),
        timedelta(seconds=t.min_hold_seconds),
        t.allow_own_trading,
        None if t.cap_per_deal is None else _floor(t.cap_per_deal.scaleb(exponents[t.currency])),
        t.cap_per_period,
        t.cap_period if t.cap_per_period is not None else None,
    )


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding="ROUND_FLOOR"))
