"""The partner dashboard at /partner/ (app namespace ``partner``). The room's
programme page and the referral redirect are in ``ib.urls_room``."""

from django.urls import path

from .views import clients as clients_views
from .views import commissions as commissions_views
from .views import dashboard as dashboard_views
from .views import links as links_views
from .views import materials as materials_views
from .views import payouts as payouts_views
from .views import tree as tree_views

app_name = "partner"

urlpatterns: list = [
    # Each part of the dashboard adds its pages here.
    # Overview, clients, sub-partners, commissions (ib/views/dashboard.py, clients.py,
    # tree.py, commissions.py)
    path("", dashboard_views.overview, name="overview"),
    path("clients/", clients_views.clients, name="clients"),
    path("tree/", tree_views.tree, name="tree"),
    path("tree/<int:partner_id>/children/", tree_views.tree_children, name="tree_children"),
    path("commissions/", commissions_views.commissions, name="commissions"),
    path("commissions/export.csv", commissions_views.commissions_csv, name="commissions_csv"),
    path(
        "commissions/<int:commission_id>/", commissions_views.commission_detail, name="commission"
    ),
    # Links and materials (ib/views/links.py, ib/views/materials.py)
    path("links/", links_views.links, name="links"),
    path("links/<int:link_id>/qr.svg", links_views.link_qr, name="link_qr"),
    path("links/<int:link_id>/deactivate/", links_views.link_deactivate, name="link_deactivate"),
    path("materials/", materials_views.materials, name="materials"),
    # Payouts (ib/views/payouts.py)
    path("payouts/", payouts_views.payouts, name="payouts"),
    path("payouts/request/", payouts_views.payout_request_view, name="payout_request"),
    path("payouts/<int:payout_id>/", payouts_views.payout_detail, name="payout"),
    path("payouts/<int:payout_id>/statement.csv", payouts_views.payout_csv, name="payout_csv"),
]
