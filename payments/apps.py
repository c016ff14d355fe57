from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from backoffice import demo
        from backoffice.events import describe
        from backoffice.navigation import NavItem, register

        register(NavItem("room", "wallets", "Wallets", "payments:wallets", order=10, icon="wallet"))
        describe("wallet.opened", "Wallet opened")
        describe("wallet.adjusted", "Wallet balance adjusted")
        demo.register("payments", _seed_payments, order=20)


def _seed_payments() -> list[str]:
    from .demo import seed

    return seed()
