"""The KYC admin, one module per area. Importing them registers them."""

from . import (
    clients,  # noqa: F401
    config,  # noqa: F401
    review,  # noqa: F401
)
