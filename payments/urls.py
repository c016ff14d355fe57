from django.urls import path

from .views import wallets

app_name = "payments"

urlpatterns = [
    path("", wallets.wallet_list, name="wallets"),
    path("open/", wallets.wallet_open, name="wallet_open"),
    path("<int:wallet_id>/", wallets.wallet_detail, name="wallet"),
    path("<int:wallet_id>/export.csv", wallets.wallet_export, name="wallet_export"),
]
