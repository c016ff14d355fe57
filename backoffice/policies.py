"""The policy registry: may this client do this now?

An app that decides (``kyc`` with its level limits, ``antifraud`` with its
restrictions) registers a policy for an action; an app that acts (``payments``
before a withdrawal, ``accounts`` before opening a live account) asks
:func:`check`. Neither imports the other, so the apps stay free of import
cycles (ARCHITECTURE.md, "Policies").

A policy is a function ``(user, **context) -> Decision | None``; ``None`` (or
an allowed decision) lets the next policy speak. The first refusal wins.
With no policy registered, everything is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The actions asked about. Naming them in one place keeps askers and policies
# from drifting apart by a typo.
DEPOSIT = "deposit"
WITHDRAW = "withdraw"
TRANSFER = "transfer"
CONVERT = "convert"
OPEN_LIVE_ACCOUNT = "open_live_account"
# Asked before anyone exists: ``check(None, REGISTER, country="XX")``.
REGISTER = "register"
ACTIONS = {DEPOSIT, WITHDRAW, TRANSFER, CONVERT, OPEN_LIVE_ACCOUNT, REGISTER}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # What would unlock the action, for the client ("Verify your identity").
    unlock: str = ""
    # The URL name of the page that unlocks it, when there is one.
    unlock_url: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)

Policy = Callable[..., "Decision | None"]
_policies: dict[str, list[tuple[str, Policy]]] = {}


def register(action: str, name: str, policy: Policy) -> None:
    """Register ``policy`` for ``action`` under ``name`` (registering the same
    name again replaces it, so that ``ready()`` may run twice)."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown policy action {action!r}; add it to backoffice.policies.ACTIONS")
    entries = [entry for entry in _policies.setdefault(action, []) if entry[0] != name]
    entries.append((name, policy))
    _policies[action] = entries


def unregister(action: str, name: str) -> None:
    _policies[action] = [entry for entry in _policies.get(action, []) if entry[0] != name]


def check(user, action: str, **context) -> Decision:
    """Whether ``user`` may do ``action`` now (with context such as
    ``amount=Decimal(...)``, ``currency="USD"``): the first refusal, or allowed."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown policy action {action!r}")
    for _name, policy in _policies.get(action, []):
        decision = policy(user, **context)
        if decision is not None and not decision.allowed:
            return decision
    return ALLOWED
