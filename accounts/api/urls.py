"""The accounts app's REST endpoints (trading accounts, deals, analytics),
included at /api/v1/ by ``backoffice.api_urls``."""

from django.urls import path

from . import deals, trading

urlpatterns = [
    path("account-types/", trading.account_type_list, name="api-account-types"),
    path("trading-accounts/", trading.trading_account_collection, name="api-trading-accounts"),
    path(
        "trading-accounts/<int:account_id>/",
        trading.trading_account_detail,
        name="api-trading-account",
    ),
    path(
        "trading-accounts/<int:account_id>/leverage/",
        trading.trading_account_leverage,
        name="api-trading-account-leverage",
    ),
    path(
        "trading-accounts/<int:account_id>/password/",
        trading.trading_account_password,
        name="api-trading-account-password",
    ),
    path(
        "trading-accounts/<int:account_id>/refresh/",
        trading.trading_account_refresh,
        name="api-trading-account-refresh",
    ),
    path("deals/", deals.deal_list, name="api-deals"),
    path("trading-analytics/", deals.trading_analytics, name="api-trading-analytics"),
]
