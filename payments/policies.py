"""The questions payments asks before money leaves: may this client withdraw?

One place decides, through the policy registry (``backoffice.policies``), so
that the apps which know the answer register a policy instead of being
imported here (ARCHITECTURE.md, "Policies"). With no policy registered,
everything is allowed: the KYC issue registers its level limits for
``"withdraw"``, antifraud its restrictions, and this hook starts refusing
without a change in payments.
"""

from __future__ import annotations

from decimal import Decimal

from backoffice import policies
from backoffice.policies import Decision


def can_withdraw(user, amount: Decimal, currency: str) -> Decision:
    """Whether ``user`` may withdraw ``amount`` (major units) of ``currency``
    now: the first registered refusal (with its reason and what would unlock
    it), or allowed."""
    return policies.check(user, policies.WITHDRAW, amount=amount, currency=currency)
