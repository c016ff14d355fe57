"""Celery tasks of the IB programme (accrual, settlements, payouts)."""

# --- CPA, revenue share, payouts (helper B) ---------------------------------------------
from celery import shared_task as _shared_task  # noqa: E402


@_shared_task(name="ib.tasks.cpa_check_pending", ignore_result=True)
def cpa_check_pending() -> int:
    """Beat (hourly): pay pending CPAs whose client traded the minimum lots in
    time; forget expired ones."""
    from .services.cpa import cpa_check_pending as check

    return len(check())


@_shared_task(name="ib.tasks.revshare_settle", ignore_result=True)
def revshare_settle() -> int:
    """Beat (daily): settle every revenue-share period that has ended."""
    from .services.revshare import revshare_settle as settle

    return settle().rows


@_shared_task(name="ib.tasks.payouts_scheduled", ignore_result=True)
def payouts_scheduled() -> dict[str, int]:
    """Beat (daily): pay partners on a daily schedule, weekly ones on Mondays."""
    from .services.payouts import payouts_scheduled as pay

    result = pay()
    return {"paid": len(result.paid), "skipped": len(result.skipped)}


# --- Trading commissions (helper A) ------------------------------------------------------

from django.db import OperationalError as _OperationalError  # noqa: E402

#: Deal ids per accrual run (one transaction each) when a task gets a big range.
ACCRUAL_TASK_CHUNK = 500_000


@_shared_task(
    name="ib.tasks.accrue_deals",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(_OperationalError,),  # the database went away or a lock timed out
    retry_backoff=10,
    retry_backoff_max=600,
    max_retries=8,
)
def accrue_deals(first_id: int, last_id: int, platform_id: int | None = None) -> int:
    """Accrue the commissions of deals ``first_id``..``last_id`` (one import),
    a run per :data:`ACCRUAL_TASK_CHUNK` ids, in order. Idempotent: a retry
    or a second delivery writes only what is missing. Returns rows written."""
    from .services.accrual import accrual_run

    written = 0
    for start in range(first_id, last_id + 1, ACCRUAL_TASK_CHUNK):
        end = min(start + ACCRUAL_TASK_CHUNK - 1, last_id)
        result = accrual_run(first_deal_id=start, last_deal_id=end, platform_id=platform_id)
        written += result.commissions
    return written


# --- The partner dashboard (helper E) -----------------------------------------------------


@_shared_task(name="ib.tasks.overview_refresh", ignore_result=True)
def overview_refresh(partner_id: int) -> None:
    """Take a fresh snapshot of a partner's overview (asked for by a page
    view that found its snapshot older than a few minutes)."""
    from .selectors.dashboard import overview_snapshot_refresh

    overview_snapshot_refresh(partner_id)
