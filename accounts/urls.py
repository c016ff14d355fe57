from django.urls import path

from . import views

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
]
