"""Who may open a KYC document: its owner, and staff allowed to see the
client (with their second factor). Everyone else gets a 404, the same as for
a document that does not exist. Staff views are in the client's timeline."""

from __future__ import annotations

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from backoffice.models import Event
from kyc import documents
from kyc.models import PAGE, Document, Requirement, Submission
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.kyc import hostile_files as files

pytestmark = pytest.mark.django_db


def make_document(owner, data: bytes | None = None, name: str = "my passport.jpg") -> Document:
    requirement = Requirement.objects.get(name="Identity document")
    Submission.objects.filter(user=owner, requirement=requirement).update(is_current=False)
    submission = Submission.objects.create(
        user=owner, requirement=requirement, document_kind="passport"
    )
    checked = documents.check_upload(SimpleUploadedFile(name, data or files.good_jpeg()))
    (document,) = documents.documents_store(submission, owner, [(PAGE, checked)])
    return document


def url(document: Document | int) -> str:
    return reverse("kyc:document", args=[getattr(document, "pk", document)])


@pytest.fixture
def owner():
    return TraderFactory(email="owner@example.com")


@pytest.fixture
def document(owner) -> Document:
    return make_document(owner)


def signed_in(user) -> HttpClient:
    http = HttpClient()
    http.force_login(user)
    return http


def viewed_events(document):
    return Event.objects.filter(name="kyc.document_viewed", client=document.user)


# --- the owner ---------------------------------------------------------------------


def test_the_owner_sees_their_document_with_safe_headers(document):
    response = signed_in(document.user).get(url(document))
    assert response.status_code == 200
    assert response.content == files.good_jpeg()
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == 'inline; filename="my passport.jpg"'
    assert response["Content-Length"] == str(len(response.content))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    csp = response["Content-Security-Policy"]
    assert csp.startswith("sandbox;")
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "frame-ancestors 'self'" in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"
    # The owner's own views are not staff views: nothing recorded.
    assert not viewed_events(document).exists()


def test_a_pdf_is_served_as_a_pdf_under_its_real_extension(owner):
    document = make_document(owner, files.good_pdf(), name="bank statement.html")
    response = signed_in(owner).get(url(document))
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="bank statement.pdf"'
    assert response.content == files.good_pdf()


def test_a_non_ascii_name_is_sent_encoded(owner):
    document = make_document(owner, name="паспорт.jpg")
    response = signed_in(owner).get(url(document))
    assert response["Content-Disposition"] == (
        "inline; filename*=utf-8''%D0%BF%D0%B0%D1%81%D0%BF%D0%BE%D1%80%D1%82.jpg"
    )


def test_the_owner_query_count_is_pinned(document, django_assert_num_queries):
    http = signed_in(document.user)
    # The user, the document with its owner (the session is cached).
    with django_assert_num_queries(2):
        response = http.get(url(document))
    assert response.status_code == 200


def test_only_get_is_allowed(document):
    response = signed_in(document.user).post(url(document))
    assert response.status_code == 405


# --- everyone else ----------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in(document):
    response = HttpClient().get(url(document))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_another_client_gets_404(document):
    response = signed_in(TraderFactory()).get(url(document))
    assert response.status_code == 404
    assert response.content != files.good_jpeg()


def test_a_partner_gets_404_even_for_a_client_they_referred(document):
    # An introducing broker signs in like a client; referring someone (here
    # through a sub-partner, so the client is in both partners' downline)
    # gives no access to their documents.
    from tests.ib.factories import make_chain, refer

    top, below = make_chain(2)
    refer(document.user, below)
    assert signed_in(top.user).get(url(document)).status_code == 404
    assert signed_in(below.user).get(url(document)).status_code == 404


def test_an_unknown_id_gets_the_same_404(document):
    assert signed_in(document.user).get(url(document.pk + 1000)).status_code == 404


def test_sales_not_assigned_to_the_client_gets_404(document):
    sales = StaffFactory(roles=[SALES])
    other = StaffFactory(roles=[SALES])
    document.user.profile.manager = other
    document.user.profile.save()
    assert signed_in_with_code(sales).get(url(document)).status_code == 404
    assert not viewed_events(document).exists()


def test_sales_assigned_to_the_client_sees_it(document):
    sales = StaffFactory(roles=[SALES])
    document.user.profile.manager = sales
    document.user.profile.save()
    response = signed_in_with_code(sales).get(url(document))
    assert response.status_code == 200
    assert response.content == files.good_jpeg()


@pytest.mark.parametrize("role", [COMPLIANCE, ADMINISTRATOR])
def test_compliance_and_administrators_see_every_clients_documents(document, role):
    staff = StaffFactory(roles=[role])
    response = signed_in_with_code(staff).get(url(document))
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("role", [SUPPORT, FINANCE])
def test_staff_without_the_permission_get_404(document, role):
    staff = StaffFactory(roles=[role])
    assert signed_in_with_code(staff).get(url(document)).status_code == 404


def test_staff_without_their_second_factor_get_404(document):
    compliance = StaffFactory(roles=[COMPLIANCE])
    assert signed_in(compliance).get(url(document)).status_code == 404


def test_a_staff_view_is_recorded_in_the_clients_timeline(document):
    compliance = StaffFactory(roles=[COMPLIANCE])
    signed_in_with_code(compliance).get(url(document))
    (event,) = viewed_events(document)
    assert event.actor == compliance
    assert event.client == document.user
    assert event.payload == {
        "document": document.pk,
        "submission": document.submission_id,
        "side": PAGE,
    }


def test_the_staff_query_count_is_pinned(document, django_assert_num_queries):
    http = signed_in_with_code(StaffFactory(roles=[COMPLIANCE]))
    # The user, the OTP device, permissions (the user's, the groups'), role
    # names, the document with its owner, the event (the session is cached).
    with django_assert_num_queries(7):
        response = http.get(url(document))
    assert response.status_code == 200


# --- a damaged file -----------------------------------------------------------------------


def test_a_tampered_file_is_not_served(document, kyc_document_root, caplog):
    path = kyc_document_root / document.storage_name
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with caplog.at_level(logging.ERROR, logger="kyc.views.documents"):
        response = signed_in(document.user).get(url(document))
    assert response.status_code == 500
    assert b"its stored copy cannot be read" in response.content
    assert response["Content-Type"].startswith("text/plain")
    assert f"document {document.pk} cannot be read" in caplog.text


def test_a_missing_file_is_not_served(document, kyc_document_root):
    (kyc_document_root / document.storage_name).unlink()
    response = signed_in(document.user).get(url(document))
    assert response.status_code == 500
    assert b"its stored copy cannot be read" in response.content
