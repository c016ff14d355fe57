"""The referral link redirect ``/r/<code>/`` (room side, namespace ``ib``)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET

from accounts.adapter import client_ip

from ..services.referrals import referral_visit


@require_GET
def referral(request: HttpRequest, code: str) -> HttpResponse:
    """Count the visit, set the attribution cookie, send the visitor on to
    the link's landing page (with the code as the sign-up's campaign)."""
    visit = referral_visit(
        code=code,
        user=request.user,
        cookie=request.COOKIES.get(settings.IB_COOKIE_NAME, ""),
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    if visit is None:
        raise Http404("No such link")
    # A relative redirect to a path that the link's service checked is on
    # this site (never another host).
    response = HttpResponseRedirect(visit.redirect_to)
    if visit.cookie_token:
        response.set_cookie(
            settings.IB_COOKIE_NAME,
            visit.cookie_token,
            max_age=visit.max_age,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    add_never_cache_headers(response)  # every visit counts, none from a cache
    return response
