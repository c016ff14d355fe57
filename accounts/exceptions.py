class TwoFactorError(Exception):
    """A two-factor operation was refused; the message is for the user."""
