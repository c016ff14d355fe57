class KycError(Exception):
    """A KYC action refused, with a message for the person who asked."""
