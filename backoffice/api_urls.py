"""The REST API at /api/v1/ (ARCHITECTURE.md): each app's endpoints, and the
OpenAPI schema that describes them."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts import api as accounts_api

urlpatterns = [
    path("auth/token/", accounts_api.token_create, name="api-token"),
    path("auth/token/revoke/", accounts_api.token_delete, name="api-token-revoke"),
    path("", include("payments.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("kyc.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
