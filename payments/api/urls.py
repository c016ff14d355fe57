from django.urls import path

from . import wallets

urlpatterns = [
    path("wallets/", wallets.wallet_list, name="api-wallets"),
    path("wallets/open/", wallets.wallet_open, name="api-wallet-open"),
    path("wallets/<int:wallet_id>/", wallets.wallet_detail, name="api-wallet"),
    path("wallets/<int:wallet_id>/history/", wallets.wallet_history, name="api-wallet-history"),
]
