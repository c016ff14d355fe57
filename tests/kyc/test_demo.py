"""The KYC demo: levels granted through the real services, documents stored
encrypted, the review queue not empty, and a second run adds nothing."""

import pytest

from accounts.demo import seed_demo
from kyc import demo, selectors
from kyc.models import Document, Review, Submission

pytestmark = pytest.mark.django_db


def levels() -> dict[str, int]:
    from accounts.models import User

    return {
        name: selectors.kyc_level_for_user(User.objects.get(email=f"{name}@demo.test")).number
        for name in ("alice", "bruno", "chen")
    }


def test_demo_clients_are_verified_through_the_services_once():
    seed_demo()
    lines = demo.seed()
    assert levels() == {"alice": 2, "bruno": 3, "chen": 3}
    assert "Alice level 2, Bruno level 3, Chen level 3" in "\n".join(lines)
    # Alice's source of funds waits in the queue; Bruno's and Chen's took two reviewers.
    pending = selectors.review_queue()
    assert [s.user.email for s in pending] == ["alice@demo.test"]
    for name in ("bruno", "chen"):
        funds = Submission.objects.get(
            user__email=f"{name}@demo.test", requirement__level__number=3
        )
        reviewers = list(funds.reviews.values_list("reviewer__email", flat=True))
        assert reviewers == ["compliance@demo.test", "administrator@demo.test"]
    counts = (Submission.objects.count(), Document.objects.count(), Review.objects.count())

    demo.seed()
    assert (Submission.objects.count(), Document.objects.count(), Review.objects.count()) == counts
    assert levels() == {"alice": 2, "bruno": 3, "chen": 3}
