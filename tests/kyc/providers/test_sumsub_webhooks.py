"""Sumsub's webhooks at /webhooks/kyc/sumsub/: signed as Sumsub documents
(``X-Payload-Digest`` with each ``X-Payload-Digest-Alg``), mapped onto our
statuses through the core KYC services down to the submission and the
client's level, and every hostile or unlucky delivery: forged, tampered,
replayed, out of order, for an unknown applicant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from backoffice.models import Event
from kyc.models import ClientKyc, KycProvider, ProviderApplicant, ProviderEvent, Submission

from .conftest import LEVEL_NAME
from .sumsub_server import WEBHOOK_SECRET, signed, webhook

pytestmark = pytest.mark.django_db

URL = "/webhooks/kyc/sumsub/"
T0 = datetime(2026, 3, 2, 9, 30, 0, 123000, tzinfo=UTC)


@pytest.fixture
def applicant(sumsub, check, client_at_zero) -> ProviderApplicant:
    return ProviderApplicant.objects.create(
        provider=sumsub, user=client_at_zero, applicant_id="65f0a1b2c3d4e5f6a7b8c9d0"
    )


def event(applicant, event_type, *, at=T0, **fields) -> dict:
    return webhook(
        event_type,
        applicant.applicant_id,
        external_user_id=str(applicant.user_id),
        created_at=at,
        **fields,
    )


def post(client, payload, *, secret=WEBHOOK_SECRET, algorithm="HMAC_SHA256_HEX", headers=None):
    body, signature = signed(payload, secret=secret, algorithm=algorithm)
    return client.post(
        URL,
        data=body,
        content_type="application/json",
        headers=signature if headers is None else headers,
    )


def current(applicant) -> Submission | None:
    return Submission.objects.filter(user=applicant.user, is_current=True).first()


def level_of(user) -> int:
    return ClientKyc.objects.get(user=user).level.number


# --- signatures ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["HMAC_SHA1_HEX", "HMAC_SHA256_HEX", "HMAC_SHA512_HEX"])
def test_each_documented_digest_algorithm_is_accepted(client, applicant, algorithm):
    response = post(client, event(applicant, "applicantPending"), algorithm=algorithm)
    assert response.status_code == 200, response.content
    assert response.json()["result"] == "applied"
    assert current(applicant).status == Submission.PENDING


def test_without_the_algorithm_header_sha256_is_assumed(client, applicant):
    body, headers = signed(event(applicant, "applicantPending"))
    response = client.post(
        URL,
        data=body,
        content_type="application/json",
        headers={"X-Payload-Digest": headers["X-Payload-Digest"]},
    )
    assert response.status_code == 200


def nothing_recorded(applicant) -> None:
    assert ProviderEvent.objects.count() == 0
    assert Submission.objects.filter(user=applicant.user).count() == 0
    assert not Event.objects.filter(name__startswith="kyc.").exists()


def test_a_wrong_secret_is_refused_and_nothing_recorded(client, applicant):
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN"), secret="guess")
    assert response.status_code == 401
    nothing_recorded(applicant)


def test_a_missing_digest_is_refused(client, applicant):
    body, _ = signed(event(applicant, "applicantReviewed", answer="GREEN"))
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 401
    nothing_recorded(applicant)


def test_a_tampered_body_is_refused(client, applicant):
    body, headers = signed(event(applicant, "applicantReviewed", answer="RED", reject_type="FINAL"))
    tampered = body.replace(b'"RED"', b'"GREEN"')
    assert tampered != body
    response = client.post(URL, data=tampered, content_type="application/json", headers=headers)
    assert response.status_code == 401
    nothing_recorded(applicant)


def test_a_digest_of_another_algorithm_is_refused(client, applicant):
    body, headers = signed(event(applicant, "applicantPending"), algorithm="HMAC_SHA1_HEX")
    headers["X-Payload-Digest-Alg"] = "HMAC_SHA512_HEX"
    response = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401
    nothing_recorded(applicant)


@pytest.mark.parametrize("algorithm", ["MD5", "HMAC_MD5_HEX", "none", "hmac_sha256_hex"])
def test_an_unsupported_algorithm_is_refused(client, applicant, algorithm):
    body, headers = signed(event(applicant, "applicantPending"))
    headers["X-Payload-Digest-Alg"] = algorithm
    response = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401
    nothing_recorded(applicant)


def test_a_pinned_algorithm_refuses_the_others(client, sumsub, applicant):
    sumsub.settings = {**sumsub.settings, "webhook_digest_alg": "HMAC_SHA512_HEX"}
    sumsub.save()
    assert post(client, event(applicant, "applicantPending")).status_code == 401
    response = post(client, event(applicant, "applicantPending"), algorithm="HMAC_SHA512_HEX")
    assert response.status_code == 200


def test_a_digest_with_garbage_is_refused(client, applicant):
    body, _ = signed(event(applicant, "applicantPending"))
    headers = {"X-Payload-Digest": "é" * 64, "X-Payload-Digest-Alg": "HMAC_SHA256_HEX"}
    response = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401


def test_without_a_webhook_secret_every_call_is_refused(client, sumsub, applicant):
    sumsub.secrets = ""
    sumsub.save()
    assert post(client, event(applicant, "applicantPending")).status_code == 401
    nothing_recorded(applicant)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"applicantId": "x"}', b"\xff\xfe"])
def test_a_signed_body_we_cannot_read_is_a_400(client, applicant, body):
    response = post(client, body)
    assert response.status_code == 400
    nothing_recorded(applicant)


def test_an_unknown_or_disabled_provider_is_a_404(client, sumsub, applicant):
    body, headers = signed(event(applicant, "applicantPending"))
    response = client.post(
        "/webhooks/kyc/onfido/", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 404
    KycProvider.objects.filter(pk=sumsub.pk).update(enabled=False)
    assert post(client, event(applicant, "applicantPending")).status_code == 404
    nothing_recorded(applicant)


def test_the_built_in_manual_review_takes_no_webhooks(client, applicant):
    body, headers = signed(event(applicant, "applicantReviewed", answer="GREEN"))
    response = client.post(
        "/webhooks/kyc/manual/", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    nothing_recorded(applicant)


def test_only_post_is_accepted(client, applicant):
    assert client.get(URL).status_code == 405


def test_a_huge_body_is_refused_before_it_is_read(client, applicant):
    payload = event(applicant, "applicantPending")
    payload["padding"] = "x" * 300_000
    response = post(client, payload)
    assert response.status_code == 413
    nothing_recorded(applicant)


# --- what each event means ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "fields", "status", "provider_status", "level"),
    [
        ("applicantPending", {}, Submission.PENDING, "pending", 0),
        ("applicantOnHold", {}, Submission.PENDING, "onHold", 0),
        ("applicantReviewed", {"answer": "GREEN"}, Submission.APPROVED, "completed: GREEN", 1),
        (
            "applicantReviewed",
            {"answer": "RED", "reject_type": "RETRY", "labels": ["UNSATISFACTORY_PHOTOS"]},
            Submission.RESUBMIT,
            "completed: RED (RETRY)",
            0,
        ),
        (
            "applicantReviewed",
            {"answer": "RED", "reject_type": "FINAL", "labels": ["FORGERY"]},
            Submission.REJECTED,
            "completed: RED (FINAL)",
            0,
        ),
        ("applicantReset", {}, Submission.RESUBMIT, "init", 0),
    ],
)
def test_each_event_maps_onto_our_statuses_down_to_the_level(
    client, applicant, event_type, fields, status, provider_status, level
):
    response = post(client, event(applicant, event_type, **fields))

    assert response.status_code == 200, response.content
    assert response.json()["result"] == "applied"
    submission = current(applicant)
    assert submission.status == status
    assert submission.provider_status == provider_status
    assert submission.provider_reference == applicant.applicant_id
    assert submission.provider_id == applicant.provider_id
    assert level_of(applicant.user) == level
    stored = ProviderEvent.objects.get()
    assert stored.processed_at is not None and stored.error == ""
    assert stored.event_key == (
        f"{applicant.applicant_id}|{LEVEL_NAME}|{int(T0.timestamp() * 1000):013d}|{event_type}"
    )


def test_an_approval_raises_the_level_and_publishes_the_events(client, applicant):
    post(client, event(applicant, "applicantPending"))
    post(
        client, event(applicant, "applicantReviewed", at=T0 + timedelta(minutes=3), answer="GREEN")
    )

    assert level_of(applicant.user) == 1
    names = list(Event.objects.order_by("id").values_list("name", flat=True))
    assert [n for n in names if n.startswith("kyc.")] == [
        "kyc.submitted",
        "kyc.approved",
        "kyc.level_changed",
    ]
    assert Submission.objects.filter(user=applicant.user).count() == 1


def test_the_client_sees_the_moderation_comment_never_the_private_one(client, applicant):
    post(
        client,
        event(
            applicant,
            "applicantReviewed",
            answer="RED",
            reject_type="RETRY",
            labels=["UNSATISFACTORY_PHOTOS", "SCREENSHOTS"],
            moderation_comment="We do not accept screenshots. Please upload an original photo.",
            client_comment="Suspected edited image; internal case 4411.",
        ),
    )
    submission = current(applicant)
    assert submission.reason_note == (
        "We do not accept screenshots. Please upload an original photo. "
        "(unsatisfactory photos, screenshots)"
    )
    assert "4411" not in submission.reason_note
    # Staff still have it, in the stored webhook.
    stored = ProviderEvent.objects.get()
    assert stored.payload["reviewResult"]["clientComment"].endswith("4411.")


def test_a_retry_then_a_new_attempt_opens_a_new_submission(client, applicant):
    post(client, event(applicant, "applicantReviewed", answer="RED", reject_type="RETRY"))
    post(client, event(applicant, "applicantPending", at=T0 + timedelta(hours=1)))
    post(client, event(applicant, "applicantReviewed", at=T0 + timedelta(hours=2), answer="GREEN"))

    assert current(applicant).status == Submission.APPROVED
    assert level_of(applicant.user) == 1
    history = list(
        Submission.objects.filter(user=applicant.user)
        .order_by("id")
        .values_list("status", flat=True)
    )
    assert history == [Submission.RESUBMIT, Submission.APPROVED]


@pytest.mark.parametrize(
    "event_type",
    ["applicantCreated", "applicantPrechecked", "applicantPersonalInfoChanged", "somethingNew"],
)
def test_other_types_are_acknowledged_and_ignored(client, applicant, event_type):
    response = post(client, event(applicant, event_type))
    assert response.status_code == 200
    assert response.json()["result"] == "ignored"
    assert Submission.objects.filter(user=applicant.user).count() == 0
    assert ProviderEvent.objects.get().error.endswith("is not acted on.")


def test_a_review_without_an_answer_is_ignored(client, applicant):
    payload = event(applicant, "applicantReviewed")
    payload["reviewResult"] = {}
    response = post(client, payload)
    assert response.json()["result"] == "ignored"
    assert Submission.objects.filter(user=applicant.user).count() == 0


def test_sandbox_webhooks_do_not_touch_a_production_configuration(client, sumsub, applicant):
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN", sandbox=True))
    assert response.json()["result"] == "ignored"
    assert level_of_or_none(applicant.user) is None

    sumsub.settings = {**sumsub.settings, "sandbox": True}
    sumsub.save()
    payload = event(applicant, "applicantReviewed", at=T0 + timedelta(seconds=1), answer="GREEN")
    payload["sandboxMode"] = True
    assert post(client, payload).json()["result"] == "applied"
    assert level_of(applicant.user) == 1


def level_of_or_none(user):
    kyc = ClientKyc.objects.filter(user=user).first()
    return kyc.level.number if kyc else None


# --- replays and ordering ------------------------------------------------------------------


def test_a_replay_is_applied_once(client, applicant):
    payload = event(applicant, "applicantReviewed", answer="GREEN")
    first = post(client, payload)
    again = post(client, payload)
    # Sumsub's redelivery is the same event even with a new correlation id.
    payload["correlationId"] = "another-delivery"
    third = post(client, payload)

    assert first.json()["result"] == "applied"
    assert again.status_code == 200 and again.json()["result"] == "replay"
    assert third.json()["result"] == "replay"
    assert ProviderEvent.objects.count() == 1
    assert Submission.objects.filter(user=applicant.user).count() == 1
    assert Event.objects.filter(name="kyc.approved").count() == 1


def test_a_late_pending_does_not_undo_an_approval(client, applicant):
    post(
        client, event(applicant, "applicantReviewed", at=T0 + timedelta(minutes=5), answer="GREEN")
    )
    response = post(client, event(applicant, "applicantPending", at=T0))

    assert response.status_code == 200
    assert response.json()["result"] == "stale"
    assert current(applicant).status == Submission.APPROVED
    assert level_of(applicant.user) == 1


def test_a_late_rejection_does_not_undo_a_later_approval(client, applicant):
    post(client, event(applicant, "applicantReviewed", at=T0 + timedelta(hours=1), answer="GREEN"))
    response = post(
        client, event(applicant, "applicantReviewed", at=T0, answer="RED", reject_type="FINAL")
    )

    assert response.json()["result"] == "stale"
    assert current(applicant).status == Submission.APPROVED
    assert level_of(applicant.user) == 1
    assert not Event.objects.filter(name="kyc.rejected").exists()


def test_a_pending_after_a_final_decision_changes_nothing(client, applicant):
    # Even when Sumsub dates it later (a re-check it opened), the decision stands
    # until Sumsub decides again.
    post(client, event(applicant, "applicantReviewed", at=T0, answer="GREEN"))
    post(client, event(applicant, "applicantPending", at=T0 + timedelta(days=30)))

    assert current(applicant).status == Submission.APPROVED
    assert level_of(applicant.user) == 1


def test_a_later_decision_by_sumsub_is_applied(client, applicant):
    post(client, event(applicant, "applicantReviewed", at=T0, answer="GREEN"))
    response = post(
        client,
        event(
            applicant,
            "applicantReviewed",
            at=T0 + timedelta(days=2),
            answer="RED",
            reject_type="FINAL",
        ),
    )
    assert response.json()["result"] == "applied"
    assert current(applicant).status == Submission.REJECTED


def test_events_of_another_level_are_ordered_apart(client, sumsub, applicant):
    from kyc.models import Level, Requirement

    Requirement.objects.create(
        level=Level.objects.get(number=3),
        name="Enhanced check",
        kind=Requirement.PROVIDER,
        provider=sumsub,
        provider_level="enhanced-kyc-level",
    )
    post(client, event(applicant, "applicantReviewed", at=T0 + timedelta(days=1), answer="GREEN"))
    response = post(
        client, event(applicant, "applicantPending", at=T0, level_name="enhanced-kyc-level")
    )
    assert response.json()["result"] == "applied"


# --- mapping to our client -------------------------------------------------------------


def test_an_unknown_applicant_is_acknowledged_and_changes_nothing(client, applicant):
    payload = event(applicant, "applicantReviewed", answer="GREEN")
    payload["applicantId"] = "000000000000000000000000"
    response = post(client, payload)

    assert response.status_code == 200
    assert response.json()["result"] == "ignored"
    assert Submission.objects.count() == 0
    assert ProviderEvent.objects.get().error == "No client has this applicant id."


def test_an_external_user_id_that_does_not_match_is_not_applied(client, applicant):
    from tests.factories import TraderFactory

    other = TraderFactory(kyc_level=False)
    payload = event(applicant, "applicantReviewed", answer="GREEN")
    payload["externalUserId"] = str(other.pk)
    response = post(client, payload)

    assert response.json()["result"] == "ignored"
    assert Submission.objects.count() == 0


def test_a_level_no_requirement_uses_is_ignored(client, applicant):
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN", level_name="x"))
    assert response.json()["result"] == "ignored"
    assert Submission.objects.count() == 0


def test_an_inactive_requirement_is_not_decided_by_a_webhook(client, check, applicant):
    check.is_active = False
    check.save()
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN"))
    assert response.json()["result"] == "ignored"
    assert Submission.objects.count() == 0


def test_an_undated_event_is_keyed_by_its_correlation_id(client, applicant):
    payload = event(applicant, "applicantPending")
    del payload["createdAtMs"]
    post(client, payload)
    assert post(client, payload).json()["result"] == "replay"
    key = ProviderEvent.objects.get().event_key
    marker = payload["correlationId"]
    assert key == f"{applicant.applicant_id}|{LEVEL_NAME}|-|applicantPending|{marker}"


def test_a_failure_while_applying_records_nothing_so_that_sumsub_retries(
    client, applicant, monkeypatch
):
    import kyc.services

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(kyc.services, "submission_provider_outcome", broken)
    client.raise_request_exception = False
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN"))
    assert response.status_code == 500
    assert ProviderEvent.objects.count() == 0

    monkeypatch.undo()
    response = post(client, event(applicant, "applicantReviewed", answer="GREEN"))
    assert response.json()["result"] == "applied"


def test_the_webhook_answers_in_a_fixed_number_of_queries(
    client, applicant, django_assert_num_queries, django_assert_max_num_queries
):
    # Ours: the provider, the event (savepoints around its insert), the
    # applicant (locked), the requirements, the ordering check, the event's
    # update; the rest is the core services' (the level climb, the events).
    body, headers = signed(event(applicant, "applicantReviewed", answer="GREEN"))
    with django_assert_max_num_queries(45):
        response = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert response.json()["result"] == "applied"
    # A replay: the provider, the refused insert (and the savepoints around it).
    with django_assert_num_queries(7):
        again = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert again.json()["result"] == "replay"
    assert json.loads(again.content)["id"] == response.json()["id"]
    # A type we do not act on: recorded and closed.
    with django_assert_num_queries(7):
        post(client, event(applicant, "applicantCreated", at=T0 + timedelta(seconds=9)))
