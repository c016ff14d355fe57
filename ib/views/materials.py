"""Marketing materials (``/partner/materials/``): banners and texts staff
upload, with one of the partner's links filled in, ready to copy."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..models import Material
from ..selectors.links import active_links, materials_for
from . import partner_required
from .links import link_url


@partner_required
@require_GET
def materials(request: HttpRequest) -> HttpResponse:
    links = active_links(request.partner)
    chosen = links[0] if links else None
    wanted = request.GET.get("link")
    if wanted:
        # Only the partner's own active links: anything else is a 404.
        chosen = next((link for link in links if str(link.pk) == wanted), None)
        if chosen is None:
            raise Http404("No such link")
    cards = []
    url = ""
    if chosen is not None:
        url = link_url(request, chosen.code)
        cards = materials_for(link_url=url, media_url=request.build_absolute_uri)
    context = {
        "nav_active": "materials",
        "links": links,
        "chosen": chosen,
        "chosen_url": url,
        "cards": cards,
        # Without a link there is nothing to fill in: say whether there is
        # something waiting for one.
        "materials_waiting": chosen is None and Material.objects.filter(is_active=True).exists(),
    }
    return render(request, "partner/materials.html", context)
