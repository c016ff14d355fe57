from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.views import registration as registration_views
from accounts.views import two_factor_authenticate
from kyc.views import webhooks as kyc_webhooks
from payments.views import sandbox_psp, webhooks

from .health import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="room:dashboard", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/2fa/", two_factor_authenticate, name="two_factor_authenticate"),
    # Before allauth's own: the sign-up page builds its form from the registration flow.
    path("accounts/signup/", registration_views.signup, name="account_signup"),
    path("accounts/", include("allauth.urls")),
    path("legal/<slug:slug>/", registration_views.legal_document, name="legal_document"),
    path(
        "legal/<slug:slug>/<str:version>/",
        registration_views.legal_document,
        name="legal_document_version",
    ),
    path("api/v1/", include("backoffice.api_urls")),
    path("room/wallets/", include("payments.urls")),
    path("webhooks/kyc/<slug:provider>/", kyc_webhooks.webhook, name="kyc_webhook"),
    path("webhooks/<slug:provider>/", webhooks.webhook, name="payments_webhook"),
    path("sandbox-psp/checkout/<str:token>/", sandbox_psp.checkout, name="sandbox_psp_checkout"),
    path("room/accounts/", include("payments.urls_trading")),
    path("room/verification/", include("kyc.urls")),
    path("room/", include("accounts.urls")),
    path("partner/", include("ib.urls")),
    path("", include("ib.urls_room")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
