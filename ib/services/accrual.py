"""Trading commissions: what each partner earns on each deal (kind ``deal``).

:func:`accrual_run` accrues the deals of an id range (the range a
``deals.imported`` event names; ``ib.tasks.accrue_deals`` runs it). For a
deal D closed at t, in this order:

0. **Demo accounts** trade virtual money: their deals earn nothing.
1. **The chain.** If D's client is a partner, the chain starts at that
   partner (their own trading, level 1). Otherwise at the client's direct
   partner: the referral covering t (since ≤ t, and t < until when the
   referral was closed); no referral, no commission. Then each partner's
   parent *as it was at t* (a partner moved after t counts under the parent
   it had then), up to the top. Level 1 is the first in the chain.
2. **The governing plan** is the version in force at t of the plan the
   level-1 partner was on at t (latest assignment from at most t, then that
   plan's latest version from at most t). None: no commission. It decides
   the tier model, the tier shares, the minimum hold time, own trading, the
   cap per deal and the currency of every row of the deal.
3. **Minimum hold.** Held (close − open) less than the plan's minimum: no
   commission for anyone.
4. **Instrument group.** The group of D's symbol (an unknown symbol has
   none); the plan's rule for that group, else its rule for any group; no
   rule, nothing.
5. **A plan's amount** for D, in the plan's currency: rebate per lot × lots
   + commission share % × the commission the client was charged (only a
   charge, D.commission < 0, converted from the account's currency) + spread
   share % × the spread (lots × contract size × spread markup × 10^−digits,
   in the instrument's profit currency, else the account's, converted).
   Conversions use the mid rates of ``payments`` (``rate_for``) at the time
   of accrual, read once per run. **A missing rate** that a non-zero part
   needs: the whole deal is left out of this run (logged, counted as
   ``skipped_no_rate``); a later run accrues it.
6. **Fixed shares:** level i earns the governing plan's amount × the i-th
   tier share %; levels beyond the list earn nothing.
7. **Rate difference:** each partner's rate is its own plan's amount (its
   version at t, converted into the governing currency; no plan: 0). Level 1
   earns its rate; level i earns its rate minus the highest rate below it,
   never less than 0 — so all levels together never earn more than the
   highest rate in the chain.
8. **Who earns.** A partner whose status is not *active* when accrual runs
   earns 0 but stays in the chain (under rate difference, its rate still
   counts as the one below). A partner's own trading earns them nothing
   unless the governing plan allows it (the level above is not paid more).
9. **Cap per deal** (governing plan): paid from level 1 upward; once the
   total reaches the cap, the rest is cut.
10. **Cap per period** (each earning partner's own plan version; the day,
    ISO week from Monday, or month of t in UTC): what the partner earns in
    that period — deal commissions already recorded plus this run's, in deal
    id order, converted into the cap's currency — never exceeds the cap.
11. **Rounding** down to the minor unit of the governing currency: never
    more than the plan allows. A row is written when its amount is above 0
    or it was cut by a cap (``capped``).
12. **Once.** One row per deal and partner (a unique constraint; the insert
    skips what is there). A deal that has rows is not accrued again, so a
    re-run or a re-import writes nothing and counts nothing twice toward a
    period cap.

Each row keeps the figures that produced it: the plan version (the
governing one under fixed shares, the partner's own under rate difference),
level, instrument group, lots, the plan's rebate and share parts before
tiers (minor units), under rate difference the rate below (``basis``), under
fixed shares the tier percent, ``capped``, the amount and currency, and the
deal's close as ``earned_at``.

Runs are serialised (a transaction-level advisory lock on PostgreSQL; SQLite
has one writer) so period caps hold when two imports land at once. On
PostgreSQL the rules run set-based (:mod:`ib.accrual.postgres`), elsewhere
deal by deal (:mod:`ib.accrual.reference`, which the tests hold the
PostgreSQL engine to).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ..accrual import postgres, reference
from ..accrual.terms import RateBook
from ..models import AccrualRun

log = logging.getLogger("ib.accrual")

#: pg_advisory_xact_lock key held by every accrual run ("ib-accru").
ACCRUAL_LOCK = int.from_bytes(b"ib-accru", "big")


@dataclass(frozen=True)
class AccrualResult:
    """What one run did: ``deals`` in the range, commission rows written,
    deals left for a later run for want of an exchange rate."""

    run_id: int
    deals: int
    commissions: int
    skipped_no_rate: int
    seconds: float
    steps: dict[str, float] | None = None


def _serialise() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [ACCRUAL_LOCK])


@transaction.atomic
def accrual_run(
    *, first_deal_id: int, last_deal_id: int, platform_id: int | None = None
) -> AccrualResult:
    """Accrue trading commissions for the deals ``first_deal_id``..``last_deal_id``
    (of ``platform_id`` only, when given): the rules are in this module's
    docstring. Idempotent; recorded as an :class:`~ib.models.AccrualRun`."""
    if last_deal_id < first_deal_id:
        raise ValueError("last_deal_id is before first_deal_id")
    started = time.perf_counter()
    _serialise()
    run = AccrualRun.objects.create(first_deal=first_deal_id, last_deal=last_deal_id)
    rates = RateBook()
    steps = None
    if connection.vendor == "postgresql":
        report = postgres.Run(first_deal_id, last_deal_id, platform_id, rates).execute()
        deals, written, skipped = report.deals, report.written, report.skipped_no_rate
        steps = dict(report.steps)
    else:
        outcome = reference.compute(
            first_deal_id=first_deal_id,
            last_deal_id=last_deal_id,
            platform_id=platform_id,
            rates=rates,
        )
        deals, skipped = outcome.deals, outcome.skipped_no_rate
        written = reference.write(outcome.rows)
    seconds = time.perf_counter() - started
    run.deals, run.commissions = deals, written
    run.finished_at, run.seconds = timezone.now(), seconds
    run.save(update_fields=["deals", "commissions", "finished_at", "seconds"])
    if skipped:
        log.warning(
            "accrual of deals %s-%s: %d deals wait for an exchange rate (%s); run again later",
            first_deal_id,
            last_deal_id,
            skipped,
            ", ".join(f"{a}→{b}" for a, b in sorted(rates.missing)),
        )
    log.info(
        "accrual of deals %s-%s: %d deals, %d commissions in %.2f s",
        first_deal_id,
        last_deal_id,
        deals,
        written,
        seconds,
    )
    return AccrualResult(run.pk, deals, written, skipped, seconds, steps)
