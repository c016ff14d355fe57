"""The trader's "Verify with <provider>" button on /room/verification/: a POST
that sends them to the provider's hosted verification page (the provider's
JavaScript runs on its own site, never from a CDN in our pages)."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ..exceptions import KycError
from ..providers.base import ProviderError
from ..services.providers import provider_check_start, provider_requirement_get_for_user

logger = logging.getLogger(__name__)

UNREACHABLE = (
    "{provider} cannot be reached at the moment, so the check cannot start. Nothing was "
    "changed: please try again in a few minutes."
)
REFUSED = (
    "The check with {provider} cannot start at the moment. Our team has been told; "
    "please try again later or contact support."
)


@login_required
@require_POST
@never_cache
def provider_start(request: HttpRequest, requirement_id: int) -> HttpResponse:
    requirement = provider_requirement_get_for_user(
        user=request.user, requirement_id=requirement_id
    )
    back = request.build_absolute_uri(reverse("kyc:verification"))
    try:
        start = provider_check_start(user=request.user, requirement=requirement, return_url=back)
    except KycError as exc:
        messages.error(request, str(exc))
        return redirect("kyc:verification")
    except ProviderError as exc:
        # The provider's own words (a configuration refused) are for staff, in the log.
        logger.warning(
            "KYC check %s for user %s could not start: %s", requirement.pk, request.user.pk, exc
        )
        template = REFUSED if exc.permanent else UNREACHABLE
        messages.error(request, template.format(provider=requirement.provider.name))
        return redirect("kyc:verification")
    if not start.redirect_url:
        messages.error(request, "This check is done in our mobile app.")
        return redirect("kyc:verification")
    return HttpResponseRedirect(start.redirect_url)
