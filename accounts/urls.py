from django.urls import path

from . import views
from .views import history as history_views
from .views import registration as registration_views
from .views import trading as trading_views

app_name = "room"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("profile/", views.profile, name="profile"),
    path("security/", views.security, name="security"),
    path("security/totp/start/", views.totp_start, name="totp_start"),
    path("security/totp/confirm/", views.totp_confirm, name="totp_confirm"),
    path("security/backup-codes/", views.backup_codes_regenerate, name="backup_codes"),
    path("security/disable/", views.two_factor_disable, name="two_factor_disable"),
    path("notifications/read/", views.notifications_read, name="notifications_read"),
    path("consents/", registration_views.consents, name="consents"),
    # Trading accounts (accounts/views/trading.py)
    path("accounts/", trading_views.trading_accounts, name="trading_accounts"),
    path("accounts/open/", trading_views.trading_account_open, name="trading_account_open"),
    path(
        "accounts/open/leverage/",
        trading_views.trading_account_open_leverage,
        name="trading_account_open_leverage",
    ),
    path(
        "accounts/<int:account_id>/",
        trading_views.trading_account_detail,
        name="trading_account",
    ),
    path(
        "accounts/<int:account_id>/refresh/",
        trading_views.trading_account_refresh,
        name="trading_account_refresh",
    ),
    path(
        "accounts/<int:account_id>/leverage/",
        trading_views.trading_account_leverage,
        name="trading_account_leverage",
    ),
    path(
        "accounts/<int:account_id>/password/",
        trading_views.trading_account_password,
        name="trading_account_password",
    ),
    # Trading history and analytics (accounts/views/history.py)
    path("history/", history_views.trading_history, name="trading_history"),
    path("history/export.csv", history_views.trading_history_csv, name="trading_history_csv"),
    path("history/analytics/", history_views.trading_analytics, name="trading_analytics"),
]
