"""The trader's verification pages, mounted at /room/verification/."""

from django.urls import path

from .views import documents, provider, room

app_name = "kyc"

urlpatterns = [
    path("", room.overview, name="verification"),
    path("requirements/<int:requirement_id>/", room.requirement_page, name="requirement"),
    path("documents/<int:document_id>/", documents.document_file, name="document"),
    path(
        "provider/<int:requirement_id>/start/",
        provider.provider_start,
        name="provider_start",
    ),
]
