"""The built-in provider: manual review in the admin.

It calls nobody. Documents and questionnaires are uploaded and answered on
the trader's verification page and reviewed by Compliance in the admin's
review queue, which is what a requirement with no outside provider means; so
"starting" a check here only sends the trader to that page. It has no
applicant, no SDK and no webhooks: a call to ``/webhooks/kyc/manual/`` is
refused like any unsigned call.
"""

from __future__ import annotations

from django.urls import reverse

from .base import KycProviderBase, ProviderError, ProviderStart, WebhookRejected


class ManualReviewProvider(KycProviderBase):
    label = "Manual review in the admin (built-in)"
    external = False

    def applicant_for(self, *, user, requirement) -> str:
        return ""  # reviewed here: there is no one else to know the client by

    def start(self, *, user, requirement, applicant_id: str, return_url: str) -> ProviderStart:
        return ProviderStart(redirect_url=reverse("kyc:verification"))

    def access_token(self, *, user, requirement, applicant_id: str) -> str:
        raise ProviderError(
            "This item is reviewed by our staff: upload the documents on the verification "
            "page instead of an SDK.",
            permanent=True,
        )

    def verify_webhook(self, body: bytes, headers) -> None:
        raise WebhookRejected("The built-in manual review receives no webhooks.")

    def parse_webhook(self, body: bytes):
        raise WebhookRejected("The built-in manual review receives no webhooks.")
