"""The partner's referral links (``/partner/links/``): the funnel per link,
creating a link, its QR code, deactivating it."""

from __future__ import annotations

import io

import segno
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..exceptions import IbError
from ..forms import LinkCreateForm
from ..selectors.links import funnel_totals, link_get_for_partner, links_with_funnel
from ..services.referrals import referral_link_create, referral_link_deactivate
from . import partner_required


def link_url(request: HttpRequest, code: str) -> str:
    """The full address of a link, as the partner shares it."""
    return request.build_absolute_uri(reverse("ib:referral", args=[code]))


@partner_required
@require_http_methods(["GET", "POST"])
def links(request: HttpRequest) -> HttpResponse:
    partner = request.partner
    form = LinkCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            link = referral_link_create(
                partner=partner,
                name=data["name"],
                kind=data["kind"],
                landing_page=data["landing_page"],
                registration_flow=data["registration_flow"],
                actor=request.user,
            )
        except IbError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request, f"Your link “{link.name}” is ready: {link_url(request, link.code)}"
            )
            return redirect(f"{reverse('partner:links')}#link-{link.pk}")
    funnels = links_with_funnel(partner)
    context = {
        "nav_active": "links",
        "rows": [{"funnel": f, "url": link_url(request, f.link.code)} for f in funnels],
        "totals": funnel_totals(funnels),
        "form": form,
        "open_form": bool(form.errors) or not funnels,
    }
    return render(request, "partner/links.html", context, status=400 if form.errors else 200)


@partner_required
@require_GET
def link_qr(request: HttpRequest, link_id: int) -> HttpResponse:
    """The link's QR code as an SVG image (``?download=1``: as a file)."""
    link = link_get_for_partner(partner=request.partner, link_id=link_id)
    buffer = io.BytesIO()
    segno.make(link_url(request, link.code), error="m").save(
        buffer, kind="svg", scale=8, border=2, dark="#111", light="#fff", xmldecl=True
    )
    response = HttpResponse(buffer.getvalue(), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=3600"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="link-{link.code}.svg"'
    return response


@partner_required
@require_POST
def link_deactivate(request: HttpRequest, link_id: int) -> HttpResponse:
    link = link_get_for_partner(partner=request.partner, link_id=link_id)
    try:
        referral_link_deactivate(partner=request.partner, link=link, actor=request.user)
    except IbError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"“{link.name}” is deactivated: its visits now get “page not found” and its code "
            "no longer works. The clients it brought stay yours.",
        )
    return redirect("partner:links")
