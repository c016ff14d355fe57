from django.apps import AppConfig


class KycConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "kyc"
    verbose_name = "KYC"

    def ready(self) -> None:
        from backoffice import demo
        from backoffice.events import describe
        from backoffice.navigation import NavItem, register

        from . import policies, subscribers  # noqa: F401  (subscribers register themselves)

        policies.register_all()
        register(
            NavItem(
                "room", "verification", "Verification", "kyc:verification", order=5, icon="shield"
            )
        )
        describe("kyc.submitted", "KYC item submitted")
        describe("kyc.approved", "KYC item approved")
        describe("kyc.rejected", "KYC item rejected")
        describe("kyc.resubmission_requested", "KYC resubmission requested")
        describe("kyc.expired", "KYC item expired")
        describe("kyc.level_changed", "KYC level changed")
        describe("kyc.document_viewed", "KYC document viewed by staff")
        describe("kyc_provider.secrets_changed", "KYC provider secrets changed")
        # Before payments (order 20): the demo clients' levels allow what
        # the later seeders do with their money.
        demo.register("kyc", _seed_kyc, order=15)


def _seed_kyc() -> list[str]:
    from .demo import seed

    return seed()
