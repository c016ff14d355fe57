"""Legal documents' public pages, and new versions for existing clients: the
room's banner and the page that records their acceptance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Consent, LegalDocument, LegalDocumentVersion
from accounts.registration import consents_pending
from backoffice.models import Event
from tests.factories import TraderFactory

pytestmark = pytest.mark.django_db


def publish(
    slug: str, version: str, *, days: int = 0, body: str = "New text."
) -> LegalDocumentVersion:
    return LegalDocumentVersion.objects.create(
        document=LegalDocument.objects.get(slug=slug),
        version=version,
        body=body,
        effective_at=timezone.now() + timedelta(days=days, seconds=-1 if days <= 0 else 0),
    )


@pytest.fixture
def accepted(trader):
    """The trader accepted the first version of the three documents."""
    for version in LegalDocumentVersion.objects.all():
        Consent.objects.create(user=trader, version=version)
    return trader


# --- Public pages --------------------------------------------------------------------------


def test_the_public_page_shows_the_version_in_effect(client, django_assert_num_queries):
    publish("terms", "2.0", body="Para one.\n\nPara two with <script>x</script>.")
    publish("terms", "3.0", days=10, body="Not yet.")
    client.get("/legal/terms/")  # warm the brand cache
    with django_assert_num_queries(2):
        response = client.get("/legal/terms/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Version 2.0" in page and "Para two" in page
    assert "<p>Para one.</p>" in page
    assert "<script>x</script>" not in page  # the body is text, escaped
    assert "Not yet." not in page
    # Every version is listed, with links to the others.
    assert 'href="/legal/terms/1.0/"' in page and 'href="/legal/terms/3.0/"' in page


def test_a_named_version_page_says_whether_it_is_in_effect(client):
    publish("terms", "2.0")
    publish("terms", "3.0", days=10)
    old = client.get("/legal/terms/1.0/").content.decode()
    assert "An earlier version, replaced since." in old
    future = client.get("/legal/terms/3.0/").content.decode()
    assert "This version is not in effect yet." in future
    current = client.get("/legal/terms/2.0/").content.decode()
    assert "replaced since" not in current and "not in effect yet" not in current


@pytest.mark.parametrize(
    "url", ["/legal/nope/", "/legal/terms/9.9/", "/legal/terms/..%2F..%2Fetc/", "/legal/TERMS/"]
)
def test_unknown_documents_and_versions_are_404(client, url):
    assert client.get(url).status_code == 404


def test_the_public_page_needs_no_sign_in_and_takes_no_post(client):
    assert client.get("/legal/privacy/").status_code == 200
    assert client.post("/legal/privacy/").status_code == 405


# --- Pending versions -----------------------------------------------------------------------


def test_pending_are_new_versions_of_documents_the_client_accepted(accepted):
    assert list(consents_pending(user=accepted)) == []
    new_terms = publish("terms", "2.0")
    publish("privacy", "2.0", days=5)  # not in effect yet
    assert list(consents_pending(user=accepted)) == [new_terms]
    # Only the latest version in effect is asked for.
    newest = publish("terms", "2.1")
    assert list(consents_pending(user=accepted)) == [newest]
    # A client who never accepted anything is not asked here.
    assert list(consents_pending(user=TraderFactory())) == []


def test_pending_versions_cost_one_query(accepted, django_assert_num_queries):
    publish("terms", "2.0")
    publish("risk-disclosure", "2.0")
    with django_assert_num_queries(1):
        assert len(list(consents_pending(user=accepted))) == 2


def test_the_dashboard_shows_a_banner_and_the_client_accepts(
    client, accepted, django_capture_on_commit_callbacks
):
    new = publish("risk-disclosure", "2.0")
    client.force_login(accepted)
    page = client.get("/room/").content.decode()
    assert "Updated terms" in page
    assert "The Risk disclosure has a new version" in page
    assert 'href="/room/consents/"' in page

    page = client.get("/room/consents/").content.decode()
    assert f'value="{new.pk}"' in page
    assert 'href="/legal/risk-disclosure/2.0/" target="_blank"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/room/consents/", {"version": [str(new.pk)]}, REMOTE_ADDR="192.0.2.44"
        )
    assert response.status_code == 302
    consent = Consent.objects.get(user=accepted, version=new)
    assert consent.ip == "192.0.2.44"
    event = Event.objects.get(name="client.consents_accepted", client=accepted)
    assert event.payload == {"versions": ["risk-disclosure:2.0"]}
    # The banner is gone (the cached dashboard was invalidated).
    assert "Updated terms" not in client.get("/room/").content.decode()
    assert "Nothing to accept" in client.get("/room/consents/").content.decode()


def test_accepting_nothing_or_a_version_not_waiting_is_refused(client, accepted):
    new = publish("terms", "2.0")
    other = TraderFactory()
    client.force_login(accepted)
    response = client.post("/room/consents/", {})
    assert response.status_code == 400
    assert "Tick the documents you accept." in response.content.decode()
    future = publish("privacy", "3.0", days=3)
    old = LegalDocumentVersion.objects.get(document__slug="terms", version="1.0")
    for junk in ([str(future.pk)], [str(old.pk)], ["abc"], [str(new.pk), "999999"], ["-1"]):
        response = client.post("/room/consents/", {"version": junk})
        assert response.status_code == 400, junk
        assert "These are not the documents waiting for you." in response.content.decode()
    assert not Consent.objects.filter(version__in=[new, future]).exists()
    # Another client's pending versions are theirs: accepting them here does nothing for them.
    for version in LegalDocumentVersion.objects.filter(version="1.0"):
        Consent.objects.create(user=other, version=version)
    assert list(consents_pending(user=other)) == [new]


def test_accepting_twice_records_once(client, accepted):
    new = publish("terms", "2.0")
    client.force_login(accepted)
    client.post("/room/consents/", {"version": [str(new.pk)]})
    response = client.post("/room/consents/", {"version": [str(new.pk)]})
    assert response.status_code == 400  # nothing waits any more
    assert Consent.objects.filter(user=accepted, version=new).count() == 1


def test_the_consents_page_needs_sign_in(client):
    assert client.get("/room/consents/").status_code == 302
    assert client.post("/room/consents/", {"version": ["1"]}).status_code == 302


def test_the_cold_dashboard_query_count_with_the_banner(
    client, accepted, django_assert_max_num_queries
):
    publish("terms", "2.0")
    client.force_login(accepted)
    client.get("/room/consents/")  # warm the brand cache, not the dashboard
    # The user, the pending versions (one query), the KYC level (two), the
    # profile, 2FA, notifications, activity.
    with django_assert_max_num_queries(8):
        assert "Updated terms" in client.get("/room/").content.decode()
    # Warm, the cached fragment holds the banner: no query for it.
    with django_assert_max_num_queries(2):
        assert "Updated terms" in client.get("/room/").content.decode()
