"""Identity documents never lie unencrypted in a temporary file: the room's
upload page and the API's upload read files into memory with the document
handler (kyc.middleware), whatever their size; an oversized file is cut at the
limit and refused, and nothing is stored."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.utils import timezone

from kyc.models import Document, Submission
from tests.factories import TraderFactory
from tests.kyc import hostile_files
from tests.kyc.test_api_verification import client_for

pytestmark = pytest.mark.django_db

BIG = 3 * 1024 * 1024  # over Django's FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)


@pytest.fixture
def never_on_disk():
    """Fail the test if Django makes a temporary upload file."""
    with mock.patch.object(
        TemporaryUploadedFile, "__init__", side_effect=AssertionError("written to disk")
    ):
        yield


def passport(size: int) -> dict:
    return {
        "document_kind": "passport",
        "expires_on": (timezone.localdate() + timedelta(days=700)).isoformat(),
        "pages": SimpleUploadedFile("passport.jpg", hostile_files.large_jpeg(size), "image/jpeg"),
    }


def identity_url(prefix: str) -> str:
    from kyc.models import Requirement

    pk = Requirement.objects.get(name="Identity document").pk
    return f"{prefix}/requirements/{pk}/" + ("documents/" if "api" in prefix else "")


def test_a_large_photo_from_the_room_stays_in_memory(client, never_on_disk):
    trader = TraderFactory(kyc_level=False)
    client.force_login(trader)
    response = client.post(identity_url("/room/verification"), passport(BIG))
    assert response.status_code == 302
    assert Document.objects.get(submission__user=trader).size >= BIG


def test_a_large_photo_through_the_api_stays_in_memory(never_on_disk):
    trader = TraderFactory(kyc_level=False)
    response = client_for(trader).post(
        identity_url("/api/v1/kyc"), passport(BIG), format="multipart"
    )
    assert response.status_code == 201, response.content
    assert Document.objects.get(submission__user=trader).size >= BIG


def test_a_file_over_the_limit_is_cut_in_memory_and_refused(client, settings, never_on_disk):
    settings.KYC_DOCUMENT_MAX_BYTES = 2 * 1024 * 1024
    trader = TraderFactory(kyc_level=False)
    client.force_login(trader)
    response = client.post(identity_url("/room/verification"), passport(BIG))
    assert response.status_code == 400
    assert "The file is larger than 2 MB" in response.content.decode()
    assert not Submission.objects.exists() and not Document.objects.exists()
