"""The KYC admin, one module per area. Importing them registers them."""

from django.contrib import admin

from . import (
    clients,  # noqa: F401
    config,  # noqa: F401
    review,  # noqa: F401
)

# The queue first in the KYC menu: it is where compliance starts the day.
admin.site.add_link("kyc", "Review queue", "admin:kyc_submission_queue", "kyc.view_submission")
