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


@shared_task(name="payments.tasks.trading_transfer_process", ignore_result=True, acks_late=True)
def trading_transfer_process(transfer_id: int) -> str:
    """After a transfer to or from a trading account is recorded: call the
    platform and settle. Safe to run twice (the transfer is claimed under a
    lock, and an uncertain earlier call is looked up before any new one)."""
    from .services.trading import trading_transfer_process as process

    transfer = process(transfer_id=transfer_id)
    return transfer.status if transfer is not None else "skipped"


@shared_task(name="payments.tasks.trading_transfers_sweep", ignore_result=True)
def trading_transfers_sweep() -> int:
    """Beat (``TRADING_TRANSFER_SWEEP_INTERVAL``): retry or settle transfers
    whose platform call did not finish."""
    from .services.trading import trading_transfers_sweep as sweep

    return sweep()
