"""A Sumsub provider pointed at the local stand-in of its API, and a level 1
that asks for nothing but its check."""

from __future__ import annotations

import pytest

from backoffice.secrets import encrypt
from kyc.models import KycProvider, Level, Requirement
from tests.e2e.conftest import browser  # noqa: F401 - the browser tests' chromium

from .sumsub_server import APP_TOKEN, SECRET_KEY, WEBHOOK_SECRET, SumsubServer

LEVEL_NAME = "basic-kyc-level"


@pytest.fixture
def sumsub_server():
    with SumsubServer() as server:
        yield server


@pytest.fixture
def sumsub(sumsub_server, db) -> KycProvider:
    return KycProvider.objects.create(
        identifier="sumsub",
        kind="sumsub",
        name="Sumsub",
        settings={"base_url": sumsub_server.url, "timeout": 2},
        secrets=encrypt(
            {"app_token": APP_TOKEN, "secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET}
        ),
    )


@pytest.fixture
def check(sumsub) -> Requirement:
    """Level 1 asks for the Sumsub check alone (a broker that leaves identity
    documents to Sumsub)."""
    level = Level.objects.get(number=1)
    level.requirements.update(is_active=False)
    return Requirement.objects.create(
        level=level,
        name="Identity check",
        kind=Requirement.PROVIDER,
        provider=sumsub,
        provider_level=LEVEL_NAME,
        order=5,
    )


@pytest.fixture
def client_at_zero(db):
    from tests.factories import TraderFactory

    return TraderFactory(kyc_level=False)
