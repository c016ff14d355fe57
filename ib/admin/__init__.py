"""The IB programme in the admin: each part registers its models in its own module."""

# Plans, partners (and the applications queue), settings, materials, links
# and referrals (helper D); payouts and commissions: pay, hold, release (helper B).
from . import config, partners, payouts, plans  # noqa: E402, F401
