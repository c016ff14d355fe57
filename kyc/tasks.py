"""Celery tasks of the KYC app: thin, take ids, call one service."""

from celery import shared_task


@shared_task(name="kyc.tasks.submissions_expire", ignore_result=True)
def submissions_expire() -> int:
    """Beat (``KYC_EXPIRY_INTERVAL``): expire every approval past its date (an
    identity document's expiry, a proof of address older than its maximum
    age) and move each client back to the level they still satisfy. Safe to
    run twice at once: each approval is re-read under its client's lock.
    Returns how many expired, for the worker's log."""
    from .services import submissions_expire as expire

    return expire()
