"""The partner's sub-partners (``/partner/tree/``): the subtree one level at a
time, each branch with its clients, volume and what the partner earned from
it over a period.

``/partner/tree/<id>/children/`` is a branch's children: a fragment for htmx
(expanding a branch in place), the whole page focused on that branch
without JavaScript (the same link). An id outside the partner's subtree is a
404.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from ..display import count_text, lots_text, money_text, partner_label
from ..models import Partner
from ..selectors.dashboard import (
    DEFAULT_TREE_PERIOD,
    TREE_PERIODS,
    Branch,
    subtree_partner_get,
    tree_level,
)
from . import partner_required


@dataclass(frozen=True)
class BranchRow:
    partner_id: int
    name: str
    status: str
    status_label: str
    sub_partners: str
    children: int
    clients: str
    lots: str
    commissions: list[str]
    url: str


def _period(request: HttpRequest) -> str:
    period = request.GET.get("period", DEFAULT_TREE_PERIOD)
    return period if period in TREE_PERIODS else DEFAULT_TREE_PERIOD


def _children_url(partner_id: int, period: str) -> str:
    url = reverse("partner:tree_children", args=[partner_id])
    return f"{url}?{urlencode({'period': period})}" if period != DEFAULT_TREE_PERIOD else url


def _row(branch: Branch, period: str, name: str = "") -> BranchRow:
    p = branch.partner
    return BranchRow(
        partner_id=p.pk,
        name=name or partner_label(p.user.first_name, p.user.last_name, p.pk),
        status=p.status,
        status_label=p.get_status_display(),
        sub_partners=count_text(branch.sub_partners),
        children=p.numchild,
        clients=count_text(branch.clients),
        lots=lots_text(branch.lots),
        commissions=[money_text(amount, cur) for cur, amount in branch.commissions],
        url=_children_url(p.pk, period),
    )


def _context(viewer: Partner, node: Partner, period: str) -> dict[str, Any]:
    _, days = TREE_PERIODS[period]
    since = timezone.now() - timedelta(days=days) if days else None
    level = tree_level(viewer, node, since=since)
    here = (
        reverse("partner:tree")
        if node.pk == viewer.pk
        else reverse("partner:tree_children", args=[node.pk])
    )
    node_name = (
        "You"
        if node.pk == viewer.pk
        else partner_label(node.user.first_name, node.user.last_name, node.pk)
    )
    return {
        "nav_active": "tree",
        "node": node,
        "is_root": node.pk == viewer.pk,
        "node_name": node_name,
        "direct": _row(level.direct, period, node_name),
        "branches": [_row(b, period) for b in level.branches],
        "ancestors": [
            (
                "You"
                if a.pk == viewer.pk
                else partner_label(a.user.first_name, a.user.last_name, a.pk),
                reverse("partner:tree") if a.pk == viewer.pk else _children_url(a.pk, period),
            )
            for a in level.ancestors
        ],
        "period": period,
        "period_label": TREE_PERIODS[period][0],
        "period_links": [
            (key, label, f"{here}?{urlencode({'period': key})}")
            for key, (label, _) in TREE_PERIODS.items()
        ],
    }


@partner_required
@require_GET
def tree(request: HttpRequest) -> HttpResponse:
    viewer = request.partner
    context = _context(viewer, viewer, _period(request))
    return render(request, "partner/tree.html", context)


@partner_required
@require_GET
def tree_children(request: HttpRequest, partner_id: int) -> HttpResponse:
    viewer = request.partner
    node = subtree_partner_get(partner=viewer, partner_id=partner_id)
    context = _context(viewer, node, _period(request))
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "partner/tree_branches.html" if partial else "partner/tree.html"
    context["show_direct"] = partial
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
