"""``/webhooks/kyc/<provider identifier>/``: where verification providers
tell us what happened to a client's check.

The view only translates: the service verifies the signature over the raw
body, records the event once and applies it. Answers: 200 (applied, ignored,
stale or a replay: the provider may stop retrying), 400 (a signed body we
cannot read), 401 (no or a wrong signature: nothing is recorded), 404 (no
such provider, or a disabled one), 413 (a body larger than any provider
sends), 503 (the provider's answer could not be applied now: retry).
"""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..models import KycProvider
from ..providers.base import ProviderError, WebhookMalformed, WebhookRejected
from ..services.providers import provider_webhook_receive

logger = logging.getLogger(__name__)

# Sumsub's events are a few kilobytes; nothing a provider sends comes near this.
MAX_BODY = 256 * 1024


def _too_large(request: HttpRequest) -> bool:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return declared > MAX_BODY


@csrf_exempt  # signed by the provider instead
@require_POST
def webhook(request: HttpRequest, provider: str) -> JsonResponse:
    config = KycProvider.objects.filter(identifier=provider, enabled=True).first()
    if config is None:
        raise Http404("No such provider.")
    if _too_large(request):
        return JsonResponse({"error": "The body is too large."}, status=413)
    body = request.body
    if len(body) > MAX_BODY:
        return JsonResponse({"error": "The body is too large."}, status=413)
    try:
        receipt = provider_webhook_receive(provider=config, body=body, headers=request.headers)
    except WebhookRejected as exc:
        logger.warning(
            "KYC webhook %s from %s refused: %s", provider, request.META.get("REMOTE_ADDR"), exc
        )
        return JsonResponse({"error": str(exc)}, status=401)
    except WebhookMalformed as exc:
        logger.warning("KYC webhook %s unreadable: %s", provider, exc)
        return JsonResponse({"error": str(exc)}, status=400)
    except ProviderError as exc:
        logger.warning("KYC webhook %s could not be applied now: %s", provider, exc)
        return JsonResponse({"error": str(exc)}, status=400 if exc.permanent else 503)
    return JsonResponse(
        {"id": receipt.event_key, "result": receipt.result, "message": receipt.message}
    )
