"""Sumsub delivering at once, on PostgreSQL with threads (each on its own
connection): the same webhook twice is applied once; an old "pending" and
the newer approval racing each other always end approved, whichever commits
first (the applicant's row is locked while an event is applied)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from backoffice.models import Event
from kyc.models import ClientKyc, ProviderApplicant, ProviderEvent, Submission
from kyc.services.providers import provider_webhook_receive
from tests.conftest import require_or_skip

from .sumsub_server import signed, webhook

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROUNDS = 4


@pytest.fixture(autouse=True)
def _postgresql():
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")


def run_in_threads(*work: Callable[[], object]) -> list[object]:
    start = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def body(index: int) -> None:
        try:
            start.wait()
            results[index] = work[index]()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hangs (lock wait?)"
    return results


def deliver(sumsub, payload: dict) -> Callable[[], object]:
    body, headers = signed(payload)
    return lambda: provider_webhook_receive(provider=sumsub, body=body, headers=headers).result


def test_the_same_webhook_delivered_twice_at_once_is_applied_once(sumsub, check):
    from tests.factories import TraderFactory

    for round_number in range(ROUNDS):
        user = TraderFactory(kyc_level=False)
        applicant = ProviderApplicant.objects.create(
            provider=sumsub, user=user, applicant_id=f"race{round_number:020d}"
        )
        payload = webhook(
            "applicantReviewed",
            applicant.applicant_id,
            external_user_id=str(user.pk),
            created_at=T0,
            answer="GREEN",
        )
        results = run_in_threads(deliver(sumsub, payload), deliver(sumsub, payload))

        assert sorted(results) == ["applied", "replay"], results
        assert Submission.objects.filter(user=user).count() == 1
        assert Event.objects.filter(name="kyc.approved", client=user).count() == 1
        assert ClientKyc.objects.get(user=user).level.number == 1


def test_an_old_pending_racing_the_approval_never_undoes_it(sumsub, check):
    from tests.factories import TraderFactory

    for round_number in range(ROUNDS):
        user = TraderFactory(kyc_level=False)
        applicant = ProviderApplicant.objects.create(
            provider=sumsub, user=user, applicant_id=f"order{round_number:019d}"
        )

        def payload(event_type, at, applicant=applicant, **fields):
            return webhook(
                event_type,
                applicant.applicant_id,
                external_user_id=str(applicant.user_id),
                created_at=at,
                **fields,
            )

        results = run_in_threads(
            deliver(sumsub, payload("applicantPending", T0)),
            deliver(
                sumsub, payload("applicantReviewed", T0 + timedelta(minutes=2), answer="GREEN")
            ),
        )

        assert not any(isinstance(r, BaseException) for r in results), results
        assert results[1] == "applied"
        assert results[0] in ("applied", "stale")
        current = Submission.objects.get(user=user, is_current=True)
        assert current.status == Submission.APPROVED
        assert ClientKyc.objects.get(user=user).level.number == 1
        assert (
            ProviderEvent.objects.filter(event_key__startswith=applicant.applicant_id).count() == 2
        )
