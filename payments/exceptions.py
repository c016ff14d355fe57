class LedgerError(Exception):
    """A posting was refused; nothing was written. The message is for people."""


class UnbalancedTransaction(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a different request (HTTP 409)."""


class InsufficientFunds(LedgerError):
    def __init__(self, wallet, needed: int, available: int) -> None:
        self.wallet = wallet
        self.needed = needed
        self.available = available
        super().__init__(
            f"Insufficient funds in the {wallet.currency_id} wallet: "
            f"{wallet.currency_id} {needed} minor units needed, {available} available."
        )
