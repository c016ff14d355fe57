"""Writes to the KYC configuration that are more than saving a form: a
provider's secrets (encrypted, never logged, recorded as an event)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from backoffice.events import publish
from backoffice.secrets import decrypt, encrypt

from ..models import KycProvider


@transaction.atomic
def kyc_provider_secrets_set(
    *, actor, provider: KycProvider, values: dict[str, str], clear: Iterable[str] = ()
) -> KycProvider:
    """Store secrets of a KYC provider, encrypted: blank values keep what is
    stored, ``clear`` names secrets to remove. The event says which names
    changed, never a value."""
    clear = sorted(clear)
    locked = KycProvider.objects.select_for_update().get(pk=provider.pk)
    current = decrypt(locked.secrets)
    for name in clear:
        current.pop(name, None)
    current.update({name: value for name, value in values.items() if value})
    locked.secrets = encrypt(current)
    locked.save(update_fields=["secrets"])
    publish(
        "kyc_provider.secrets_changed",
        locked,
        {
            "provider": locked.identifier,
            "set": sorted(name for name, value in values.items() if value),
            "cleared": clear,
        },
        actor=actor,
    )
    provider.secrets = locked.secrets
    return locked
