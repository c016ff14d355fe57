"""``/webhooks/<provider identifier>/``: where PSPs tell us what happened.

The view only translates: the service checks the sender's address, the
signature and the body, and applies each event once. Answers: 200 (applied,
ignored or a replay: the provider may stop retrying), 400 (refused: bad
signature, address not allowed, malformed; nothing was written), 404 (no such
provider), 503 (the provider could not be asked about the event: retry).
"""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..models import PaymentProvider
from ..providers.base import ProviderError, WebhookRejected
from ..services.deposits import webhook_receive

logger = logging.getLogger(__name__)


@csrf_exempt  # signed by the provider instead
@require_POST
def webhook(request: HttpRequest, provider: str) -> JsonResponse:
    config = PaymentProvider.objects.filter(identifier=provider).first()
    if config is None:
        raise Http404("No such provider.")
    try:
        outcomes = webhook_receive(provider=config, request=request)
    except WebhookRejected as exc:
        logger.warning(
            "webhook %s from %s refused: %s", provider, request.META.get("REMOTE_ADDR"), exc
        )
        return JsonResponse({"error": str(exc)}, status=400)
    except ProviderError as exc:
        logger.warning("webhook %s could not be applied now: %s", provider, exc)
        status = 400 if exc.permanent else 503
        return JsonResponse({"error": str(exc)}, status=status)
    return JsonResponse(
        {"received": [{"id": o.event_id, "result": o.result} for o in outcomes]}, status=200
    )
