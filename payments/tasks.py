"""Celery tasks of the payments app: thin, take ids, call one service."""

from celery import shared_task

from .services import rates as rate_services


@shared_task(name="payments.tasks.rates_refresh", ignore_result=True)
def rates_refresh() -> dict[str, str]:
    """Beat (``RATES_REFRESH_INTERVAL``): refresh every enabled rate source.

    Never fails on a provider's error: each is recorded in its source's
    ``last_error``. Returns each source's outcome, for the worker's log.
    """
    return {
        result.source.identifier: result.error or f"{result.stored} rates stored"
        for result in rate_services.rates_refresh_all()
    }


from .providers.sandbox import sandbox_send_webhook  # noqa: E402, F401  (the sandbox PSP)
