"""Transfers between wallets and trading accounts, mounted at
``/room/accounts/`` beside the accounts app's pages (whose paths these
cannot clash with)."""

from django.urls import path

from .views import trading

app_name = "trading_transfers"

urlpatterns = [
    path("<int:account_id>/transfer/", trading.transfer, name="transfer"),
    path("<int:account_id>/transfer/preview/", trading.transfer_preview, name="preview"),
    path("transfers/<str:reference>/", trading.transfer_detail, name="detail"),
    path("transfers/<str:reference>/status/", trading.transfer_status, name="status"),
]
