from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("", views.wallet_list, name="wallets"),
    path("open/", views.wallet_open, name="wallet_open"),
    path("<int:wallet_id>/", views.wallet_detail, name="wallet"),
    path("<int:wallet_id>/export.csv", views.wallet_export, name="wallet_export"),
]
