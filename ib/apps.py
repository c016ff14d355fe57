from django.apps import AppConfig


class IbConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ib"
    verbose_name = "Introducing brokers"

    def ready(self) -> None:
        from backoffice.events import describe

        from . import subscribers  # noqa: F401  (subscribers register themselves)

        describe("ib.partner_applied", "Applied to become a partner")
        describe("ib.partner_approved", "Partner approved")
        describe("ib.partner_rejected", "Partner application rejected")
        describe("ib.partner_suspended", "Partner suspended")
        describe("ib.partner_moved", "Partner moved in the IB tree")
        describe("ib.client_moved", "Client moved to another partner")
        describe("ib.plan_assigned", "Commission plan assigned")
        describe("ib.plan_changed", "Commission plan changed")
        # After payments (25): the demo clients' deposits and deals exist.
        from backoffice import demo

        demo.register("ib", _seed_ib, order=30)
        describe("ib.partner_updated", "Partner details changed by staff")  # helper D

        # Referral links, attribution, the programme page.
        from accounts.registration import CAMPAIGN_FLOW_RESOLVERS
        from backoffice.navigation import NavItem, register

        from .selectors.links import link_flow_for_code

        describe("ib.link_created", "Referral link created")
        describe("ib.link_deactivated", "Referral link deactivated")
        describe("ib.client_referred", "Signed up through a partner")
        if link_flow_for_code not in CAMPAIGN_FLOW_RESOLVERS:
            CAMPAIGN_FLOW_RESOLVERS.append(link_flow_for_code)
        register(
            NavItem("room", "partner", "Partner programme", "ib:apply", order=80, icon="people")
        )
        register(NavItem("partner", "links", "Links", "partner:links", order=20))
        register(NavItem("partner", "materials", "Materials", "partner:materials", order=70))

        # Overview, clients, sub-partners, commissions (helper E).
        register(NavItem("partner", "overview", "Overview", "partner:overview", order=10))
        register(NavItem("partner", "clients", "Clients", "partner:clients", order=30))
        register(NavItem("partner", "tree", "Sub-partners", "partner:tree", order=40))
        register(NavItem("partner", "commissions", "Commissions", "partner:commissions", order=50))

        # CPA, revenue share, payouts (helper B).
        from backoffice.navigation import NavItem as _NavItem
        from backoffice.navigation import register as _register
        from payments.forms import TRANSACTION_TYPES

        describe("ib.payout_paid", "Partner commissions paid out")
        describe("ib.payouts_held", "Partner payouts put on hold")
        describe("ib.payouts_released", "Partner payouts released")
        # The wallet history names the payout's postings ("Partner commissions").
        TRANSACTION_TYPES.setdefault("ib_payout", "Partner commissions")
        _register(_NavItem("partner", "payouts", "Payouts", "partner:payouts", order=60))


def _seed_ib() -> list[str]:
    from .demo import seed

    return seed()
