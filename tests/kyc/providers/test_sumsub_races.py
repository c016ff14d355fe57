"""Sumsub delivering at once, on PostgreSQL with threads (each on its own
connection): the same webhook twice is applied once; an old "pending" and
the newer approval racing each other always end approved, whichever commits
first (the applicant's row is locked while an event is applied)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from backoffice.models import Event
from kyc.models import ClientKyc, ProviderApplicant, ProviderEvent, Submission
from kyc.services.providers import provider_webhook_receive
from tests.conftest import require_or_skip
from tests.payments.test_withdrawals import run_in_threads

from .sumsub_server import signed, webhook

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROUNDS = 4


@pytest.fixture(autouse=True)
def _postgresql():
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")


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
