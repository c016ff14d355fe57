"""Demo data for the embedded default, contributed by each app.

Each app registers a seeder in ``AppConfig.ready()``; ``manage.py seed_demo``
runs them in order (accounts first, then the apps that build on it). Seeders
are idempotent and return lines to print (logins, hints).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from unittest import mock

from django.utils import timezone

Seeder = Callable[[], list[str]]

_seeders: list[tuple[int, str, Seeder]] = []


def register(name: str, seeder: Seeder, *, order: int = 100) -> None:
    if any(existing == name for _, existing, _ in _seeders):
        return
    _seeders.append((order, name, seeder))


def seeders() -> list[tuple[str, Seeder]]:
    return [(name, seeder) for _, name, seeder in sorted(_seeders, key=lambda s: (s[0], s[1]))]


@contextmanager
def clock(at: datetime) -> Iterator[None]:
    """Run the services with the clock set back to ``at``: demo history is
    posted as it would have happened (ledger entries are append-only, so a
    past is posted, not edited afterwards)."""
    with mock.patch.object(timezone, "now", return_value=at):
        yield
