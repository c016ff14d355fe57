class IbError(Exception):
    """An IB action refused, with a message for the person who asked."""
