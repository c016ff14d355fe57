from django.urls import path

from . import providers, verification

urlpatterns = [
    path("kyc/", verification.verification, name="api-kyc"),
    path(
        "kyc/requirements/<int:requirement_id>/",
        verification.requirement_detail,
        name="api-kyc-requirement",
    ),
    path(
        "kyc/requirements/<int:requirement_id>/documents/",
        verification.document_upload,
        name="api-kyc-documents",
    ),
    path(
        "kyc/requirements/<int:requirement_id>/answers/",
        verification.answers_submit,
        name="api-kyc-answers",
    ),
    path(
        "kyc/requirements/<int:requirement_id>/access-token/",
        providers.access_token,
        name="api-kyc-access-token",
    ),
]
