"""Secrets stored in the database (provider API keys, webhook secrets),
encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The keys come from ``FIELD_ENCRYPTION_KEYS`` (comma-separated; the first
encrypts, all decrypt, so a key can be rotated). In development, with none
set, a key is derived from ``SECRET_KEY``; production settings require it.
A secret is never shown back: the admin only says whether one is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretError(Exception):
    pass


def development_key(purpose: str, secret_key: str) -> str:
    """A key for ``purpose`` derived from ``SECRET_KEY``, in the format of a
    Fernet key (32 bytes, URL-safe base64). Only for development, where no
    key is configured: production settings require real keys, so that
    rotating ``SECRET_KEY`` never makes stored data unreadable."""
    derived = hashlib.sha256(f"{purpose}:{secret_key}".encode()).digest()
    return base64.urlsafe_b64encode(derived).decode()


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        keys = (development_key("field-encryption", secret_key),)
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be Fernet keys "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')"
        ) from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: dict[str, str]) -> str:
    """Encrypt a dict of secrets to a token for a text column ("" for none)."""
    if not value:
        return ""
    return _current().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_current().decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretError(
            "Stored secrets cannot be decrypted: was FIELD_ENCRYPTION_KEYS changed "
            "without keeping the old key?"
        ) from exc
