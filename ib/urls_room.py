"""The IB pages outside the dashboard (app namespace ``ib``): the room's
partner programme page (apply, follow the application) and the referral
link redirect /r/<code>/."""

from django.urls import path

from .views import apply as apply_views
from .views import referral as referral_views

app_name = "ib"

urlpatterns: list = [
    path("room/partner/", apply_views.apply, name="apply"),
    path("r/<str:code>/", referral_views.referral, name="referral"),
]
