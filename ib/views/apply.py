"""The room's partner programme page (``/room/partner/``, ``ib:apply``):
what the programme is and the application form; then the application's
state (under review, rejected with the reason, active: the dashboard)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods

from backoffice.models import Event

from ..exceptions import IbError
from ..forms import PartnerApplyForm
from ..models import Partner
from ..selectors import partner_for_user
from ..services import partner_apply
from ..services.referrals import invitation_link


def _dashboard_url() -> str:
    # The overview is another part of the dashboard; until it exists, the links.
    for name in ("partner:overview", "partner:links"):
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return "/partner/"


def _history(partner: Partner) -> dict:
    """When the (latest) application was made and, if it was rejected after
    that, the reason the applicant was given."""
    events = Event.objects.filter(
        subject_type=Partner._meta.label_lower,
        subject_id=str(partner.pk),
        name__in=["ib.partner_applied", "ib.partner_rejected"],
    ).order_by("-created_at", "-id")[:10]
    applied = next((e for e in events if e.name == "ib.partner_applied"), None)
    rejected = next((e for e in events if e.name == "ib.partner_rejected"), None)
    return {
        "applied_at": applied.created_at if applied else partner.created_at,
        "rejected_at": rejected.created_at if rejected else None,
        "reason": (rejected.payload.get("reason", "") if rejected else "").strip(),
    }


@login_required
@require_http_methods(["GET", "POST"])
def apply(request: HttpRequest) -> HttpResponse:
    user = request.user
    context: dict = {"nav_active": "partner", "staff": user.is_staff}
    if user.is_staff:
        return render(request, "ib/apply.html", context)
    partner = partner_for_user(user)
    can_apply = partner is None or partner.status == Partner.REJECTED
    cookie = request.COOKIES.get(settings.IB_COOKIE_NAME, "")
    via_link = invitation_link(cookie) if can_apply and partner is None else None
    form = PartnerApplyForm(request.POST or None) if can_apply else None
    if request.method == "POST" and form is not None and form.is_valid():
        try:
            partner_apply(
                user=user,
                company=form.cleaned_data["company"],
                website=form.cleaned_data["website"],
                note=form.cleaned_data["note"],
                via_link=via_link,
            )
        except IbError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Thank you: your application is with us.")
            return redirect("ib:apply")
    if partner is not None:
        context.update(_history(partner))
    context.update(
        {
            "partner": partner,
            "form": form,
            "invited": via_link is not None and partner is None,
            "dashboard_url": _dashboard_url(),
        }
    )
    status = 400 if form is not None and form.errors else 200
    return render(request, "ib/apply.html", context, status=status)
