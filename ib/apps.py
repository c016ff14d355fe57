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
