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
        register(
            NavItem("room", "withdraw", "Withdraw", "payments:withdraw", order=14, icon="withdraw")
        )
        describe("withdrawal.requested", "Withdrawal requested")
        describe("withdrawal.approval_recorded", "Withdrawal approval recorded")
        describe("withdrawal.approved", "Withdrawal approved")
        describe("withdrawal.rejected", "Withdrawal rejected")
        describe("withdrawal.paid", "Withdrawal paid")
        describe("withdrawal.payout_failed", "Withdrawal payout failed")
        describe("withdrawal.cancelled", "Withdrawal cancelled")
        register(
            NavItem("room", "convert", "Convert", "payments:convert", order=16, icon="convert")
        )
        register(
            NavItem("room", "transfer", "Transfer", "payments:transfer", order=18, icon="transfer")
        )
        register(
            NavItem("room", "deposit", "Deposit", "payments:deposit", order=12, icon="deposit")
        )
        describe("deposit.created", "Deposit started")
        describe("deposit.completed", "Deposit completed")
        describe("deposit.failed", "Deposit failed")
        describe("deposit.flagged", "Deposit flagged for review")
        describe("payment_provider.secrets_changed", "Payment provider secrets changed")
        describe("conversion.executed", "Currencies converted")
        describe("transfer.executed", "Transfer made")
        describe("trading_account.transfer_requested", "Trading account transfer requested")
        describe("trading_account.transfer_in", "Money moved to a trading account")
        describe("trading_account.transfer_out", "Money moved from a trading account")
        describe("trading_account.transfer_failed", "Trading account transfer failed")
        demo.register("payments", _seed_payments, order=20)
        demo.register("payments-trading", _seed_trading_funding, order=25)


def _seed_payments() -> list[str]:
    from .demo import seed

    return seed()


def _seed_trading_funding() -> list[str]:
    from .demo import seed_trading_funding

    return seed_trading_funding()
