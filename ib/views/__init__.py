"""The partner dashboard's views (``/partner/``) and the IB pages of the room.

Every dashboard view is wrapped in :func:`partner_required`: the signed-in
user's active partner record becomes ``request.partner``; a user who is not
an active partner goes to the programme page of the room (``ib:apply``) to
apply or follow their application. Views read the partner's own downline
only: an id outside it is a 404, never a 403 (which would confirm it exists).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from ..selectors import active_partner_for_user


def partner_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        partner = active_partner_for_user(request.user)
        if partner is None:
            return redirect("ib:apply")
        request.partner = partner
        return view(request, *args, **kwargs)

    return wrapper
