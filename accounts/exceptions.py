class TwoFactorError(Exception):
    """A two-factor operation was refused; the message is for the user."""


class ApiAuthError(Exception):
    """An API sign-in was refused; the message is for the user."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_credentials"):
        super().__init__(message)
        self.status = status
        self.code = code


class TradingError(Exception):
    """A trading-account operation was refused; the message is for the user.
    ``decision`` is the policy decision when a policy refused (what unlocks it)."""

    def __init__(self, message: str, *, decision=None) -> None:
        super().__init__(message)
        self.decision = decision
