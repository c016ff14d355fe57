"""The IB pages outside the dashboard (app namespace ``ib``): the room's
partner programme page (apply, follow the application) and the referral
link redirect /r/<code>/."""

from django.urls import path

app_name = "ib"

urlpatterns: list = []
