"""The sandbox PSP's hosted checkout (``/sandbox-psp/checkout/<token>/``).

This page plays an outside PSP: it knows the payment only from the signed
token our adapter gave the client (reference, amount, currency, where to go
back), never reads our deposits, and answers Pay or Decline the way a PSP
does: by sending a signed webhook over HTTP (a Celery task, after commit)
and sending the client back to us. No sign-in: a PSP's page does not know
our session.
"""

from __future__ import annotations

from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from backoffice.selectors import brand_get

from ..models import PaymentProvider
from ..providers.sandbox import checkout_session, sandbox_send_webhook, webhook_event


@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest, token: str) -> HttpResponse:
    try:
        session = checkout_session(token)
    except signing.SignatureExpired:
        return _invalid(request, "This checkout has expired. Start the deposit again.")
    except signing.BadSignature:
        return _invalid(request, "This checkout link is not valid.")
    provider = PaymentProvider.objects.filter(identifier=session["p"], kind="sandbox").first()
    if provider is None:
        return _invalid(request, "This checkout link is not valid.")
    if request.method == "POST":
        action = request.POST.get("action")
        if action not in ("pay", "decline"):
            return _invalid(request, "Choose Pay or Decline.")
        event = webhook_event(
            succeeded=action == "pay",
            reference=session["ref"],
            amount=session["amt"],
            currency=session["cur"],
        )
        provider_id = provider.pk
        transaction.on_commit(lambda: sandbox_send_webhook.delay(provider_id, event))
        # Back to the merchant; the address comes from our own signed token.
        return HttpResponseRedirect(session["ret"])
    context = {
        "session": session,
        "merchant": provider.settings.get("merchant_name") or brand_get().name,
        "provider": provider,
    }
    response = render(request, "payments/sandbox_psp/checkout.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _invalid(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "payments/sandbox_psp/invalid.html", {"message": message}, status=400)
