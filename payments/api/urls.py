from django.urls import path

from . import conversions, deposits, methods, trading, wallets, withdrawals

urlpatterns = [
    path("wallets/", wallets.wallet_list, name="api-wallets"),
    path("wallets/open/", wallets.wallet_open, name="api-wallet-open"),
    path("wallets/<int:wallet_id>/", wallets.wallet_detail, name="api-wallet"),
    path("wallets/<int:wallet_id>/history/", wallets.wallet_history, name="api-wallet-history"),
    path("payment-methods/", methods.method_list, name="api-payment-methods"),
    path("deposits/", deposits.deposit_collection, name="api-deposits"),
    path("deposits/quote/", deposits.deposit_quote_view, name="api-deposit-quote"),
    path("deposits/<str:reference>/", deposits.deposit_detail, name="api-deposit"),
    path("withdrawals/", withdrawals.withdrawal_collection, name="api-withdrawals"),
    path("withdrawals/quote/", withdrawals.withdrawal_quote, name="api-withdrawal-quote"),
    path("withdrawals/<str:reference>/", withdrawals.withdrawal_detail, name="api-withdrawal"),
    path(
        "withdrawals/<str:reference>/cancel/",
        withdrawals.withdrawal_cancel,
        name="api-withdrawal-cancel",
    ),
    path("conversions/quotes/", conversions.quote_create, name="api-conversion-quotes"),
    path(
        "conversions/quotes/<str:public_id>/execute/",
        conversions.quote_execute,
        name="api-conversion-execute",
    ),
    path("transfers/", conversions.transfer_create, name="api-transfers"),
    path(
        "trading-accounts/<int:account_id>/transfers/",
        trading.trading_transfer_collection,
        name="api-trading-transfers",
    ),
    path(
        "trading-accounts/<int:account_id>/transfers/preview/",
        trading.trading_transfer_preview,
        name="api-trading-transfer-preview",
    ),
    path(
        "trading-transfers/<str:reference>/",
        trading.trading_transfer_detail,
        name="api-trading-transfer",
    ),
]
