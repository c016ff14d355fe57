from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Clients and staff"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice import demo
        from backoffice.events import describe
        from backoffice.navigation import NavItem, register

        from . import roles, subscribers  # noqa: F401 - registers event subscribers

        register(NavItem("room", "dashboard", "Dashboard", "room:dashboard", order=0, icon="home"))
        register(NavItem("room", "profile", "Profile", "room:profile", order=80, icon="user"))
        register(
            NavItem(
                "room",
                "accounts",
                "Trading accounts",
                "room:trading_accounts",
                order=20,
                icon="chart",
            )
        )
        register(
            NavItem(
                "room",
                "trading_history",
                "Trading history",
                "room:trading_history",
                order=22,
                icon="history",
            )
        )
        register(NavItem("room", "security", "Security", "room:security", order=90, icon="lock"))
        for name, text in {
            "client.registered": "Account opened",
            "client.consents_accepted": "New versions of terms accepted",
            "client.email_confirmed": "E-mail address confirmed",
            "client.profile_changed": "Profile updated",
            "client.manager_assigned": "Account manager assigned",
            "client.deactivated": "Access blocked",
            "client.activated": "Access restored",
            "security.2fa_enabled": "Two-factor authentication turned on",
            "security.2fa_disabled": "Two-factor authentication turned off",
            "security.login_failed": "Failed sign-in attempt",
            "deals.imported": "Deals imported from the trading platform",
            "deals.file_imported": "Deal report file imported",
        }.items():
            describe(name, text)
        post_migrate.connect(roles.grant_administrator_everything)
        demo.register("accounts", _seed_accounts, order=10)
        # After the KYC seeder (15): live accounts need the level it grants.
        demo.register("accounts-trading", _seed_trading, order=18)


def _seed_accounts() -> list[str]:
    from .demo import seed_and_describe

    return seed_and_describe()


def _seed_trading() -> list[str]:
    from .demo import seed_trading

    return seed_trading()
