"""Celery tasks of the accounts app: thin, take ids, call one service."""

from celery import shared_task


@shared_task(name="accounts.tasks.deals_sync_all", ignore_result=True)
def deals_sync_all() -> dict[str, str]:
    """Beat (``DEALS_SYNC_INTERVAL``): pull new deals from every enabled
    platform, each from its own cursor. A platform's error is kept on its
    row (``last_error``) and never stops the others."""
    from .services.deals import deals_sync_all as sync

    return sync()


@shared_task(name="accounts.tasks.trading_accounts_refresh", ignore_result=True)
def trading_accounts_refresh() -> int:
    """Beat (``TRADING_STATE_REFRESH_INTERVAL``): refresh cached account states."""
    from .services.trading import trading_accounts_refresh as refresh

    return refresh()


@shared_task(name="accounts.tasks.market_simulate", ignore_result=True)
def market_simulate() -> int:
    """Beat (only when ``MARKET_SIMULATOR_INTERVAL`` > 0): one round of the
    demo platform's market simulator, then a sync of its deals."""
    from .platforms.simulator import market_simulate_round

    return market_simulate_round()
