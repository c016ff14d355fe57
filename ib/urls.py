"""The partner dashboard at /partner/ (app namespace ``partner``). The room's
programme page and the referral redirect are in ``ib.urls_room``."""

from django.urls import path

app_name = "partner"

urlpatterns: list = [
    # Each part of the dashboard adds its pages here.
]
