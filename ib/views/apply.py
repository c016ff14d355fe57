"""The room's partner programme page (``/room/partner/``, ``ib:apply``):
what the programme is and the application form; then the application's
state (under review, rejected with the reason, active: the dashboard)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from ..exceptions import IbError
from ..forms import PartnerApplyForm
from ..models import Partner
from ..selectors import application_history, partner_for_user
from ..services import partner_apply
from ..services.referrals import invitation_link


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
        context.update(application_history(partner))
    context.update(
        {
            "partner": partner,
            "form": form,
            "invited": via_link is not None and partner is None,
            "dashboard_url": reverse("partner:overview"),
        }
    )
    status = 400 if form is not None and form.errors else 200
    return render(request, "ib/apply.html", context, status=status)
