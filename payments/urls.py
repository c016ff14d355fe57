from django.urls import path

from .views import conversions, deposits, wallets, withdrawals

app_name = "payments"

urlpatterns = [
    path("", wallets.wallet_list, name="wallets"),
    path("open/", wallets.wallet_open, name="wallet_open"),
    path("history/", wallets.history_all, name="history"),
    path("<int:wallet_id>/", wallets.wallet_detail, name="wallet"),
    path("<int:wallet_id>/export.csv", wallets.wallet_export, name="wallet_export"),
    path("<int:wallet_id>/in-progress/", wallets.wallet_in_progress, name="wallet_in_progress"),
    path("convert/", conversions.convert, name="convert"),
    path("convert/quote/", conversions.convert_quote, name="convert_quote"),
    path("convert/confirm/", conversions.convert_confirm, name="convert_confirm"),
    path("transfer/", conversions.transfer, name="transfer"),
    path("transfer/review/", conversions.transfer_review, name="transfer_review"),
    path("transfer/confirm/", conversions.transfer_confirm, name="transfer_confirm"),
    path("deposit/", deposits.deposit_new, name="deposit"),
    path("deposit/preview/", deposits.deposit_preview, name="deposit_preview"),
    path("deposit/<slug:reference>/", deposits.deposit_detail, name="deposit_detail"),
    path("withdraw/", withdrawals.withdraw, name="withdraw"),
    path("withdraw/request/", withdrawals.withdraw_request, name="withdraw_request"),
    path("withdraw/preview/", withdrawals.withdraw_preview, name="withdraw_preview"),
    path("withdraw/<str:reference>/", withdrawals.withdrawal_detail, name="withdrawal"),
    path(
        "withdraw/<str:reference>/cancel/", withdrawals.withdrawal_cancel, name="withdrawal_cancel"
    ),
]
