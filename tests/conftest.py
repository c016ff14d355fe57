"""Shared test set-up.

The suite runs on whatever DATABASE_URL / REDIS_URL say (CI: this machine's
PostgreSQL and Redis). Celery runs eagerly in-process unless a test starts a
real worker (tests marked ``worker``). With ``CI_REQUIRE_SERVICES=1`` the run
fails unless it is on PostgreSQL with a reachable Redis, instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
REQUIRE_SERVICES = os.environ.get("CI_REQUIRE_SERVICES") == "1"
TEST_PASSWORD = "Correct-Horse-Battery-9"


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip when a real service is missing locally; fail when CI requires it."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required by CI but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _record_database(django_db_setup, django_db_blocker):
    from django.db import connection

    ARTIFACTS.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        vendor = connection.vendor
        version = ""
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                version = cursor.fetchone()[0]
    (ARTIFACTS / "database.txt").write_text(f"{vendor} {version}\n")
    if REQUIRE_SERVICES and vendor != "postgresql":
        pytest.exit(f"CI requires PostgreSQL, but the tests run on {vendor}", returncode=3)
    if REQUIRE_SERVICES:
        import redis
        from django.conf import settings

        if not settings.REDIS_URL:
            pytest.exit("CI requires Redis, but REDIS_URL is not set", returncode=3)
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()


@pytest.fixture(scope="session", autouse=True)
def _celery_eager():
    from backoffice.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield


@pytest.fixture(autouse=True)
def _fast_and_clean(settings):
    from django.core.cache import cache

    from backoffice.selectors import brand_forget
    from kyc.selectors import rate_memo_clear

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Sessions as in production (cached, written through to the database), on
    # whatever cache this run has (Redis in CI, in-process otherwise), so that
    # pinned query counts are the same everywhere.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    cache.clear()
    brand_forget()
    rate_memo_clear()  # the KYC limits' rates of the last minute
    yield
    cache.clear()
    brand_forget()
    rate_memo_clear()


@pytest.fixture(autouse=True)
def kyc_document_root(settings, tmp_path_factory) -> Path:
    """KYC documents a test stores go to a fresh private folder of its own
    (never var/); a test that counts stored files asks for this fixture."""
    root = tmp_path_factory.mktemp("kyc-documents")
    settings.KYC_DOCUMENT_ROOT = root
    return root


@pytest.fixture
def password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def trader(db):
    from tests.factories import TraderFactory

    return TraderFactory()


@pytest.fixture
def redis_url() -> str:
    from django.conf import settings

    url = settings.REDIS_URL
    require_or_skip(bool(url), "REDIS_URL is not set")
    return url


def _is_transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(
        (marker is not None and marker.kwargs.get("transaction"))
        or "live_server" in item.fixturenames
        or "transactional_db" in item.fixturenames
    )


# Data migrations whose rows a transactional test's flush removes. A new data
# migration (roles, reference data) is added here too.
DATA_MIGRATIONS = [
    ("accounts.migrations.0002_roles", "create_roles"),
    ("accounts.migrations.0004_sales_without_event_list", "revoke"),
    ("payments.migrations.0002_currencies_and_ledger_triggers", "add_currencies"),
    ("payments.migrations.0003_ledger_permissions", "grant_ledger_permissions"),
    ("payments.migrations.0006_default_providers_and_permissions", "add_defaults"),
    ("payments.migrations.0006_default_providers_and_permissions", "grant_payment_permissions"),
    ("payments.migrations.0009_export_permissions", "grant_export_permissions"),
    ("accounts.migrations.0006_trading_defaults", "add_trading_defaults"),
    ("accounts.migrations.0006_trading_defaults", "grant_trading_permissions"),
    ("accounts.migrations.0009_registration_defaults", "add_registration_defaults"),
    ("accounts.migrations.0009_registration_defaults", "grant_registration_permissions"),
    ("kyc.migrations.0002_kyc_defaults", "add_kyc_defaults"),
    ("kyc.migrations.0002_kyc_defaults", "grant_kyc_permissions"),
    ("ib.migrations.0002_ib_defaults", "add_ib_defaults"),
    ("ib.migrations.0002_ib_defaults", "grant_ib_permissions"),
]


def restore_migration_rows() -> None:
    """Put back the rows data migrations wrote (roles, currencies), which the
    flush after a transactional test removes. Content types, permissions and
    the site come back through post_migrate, which the flush emits."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    from accounts.roles import ADMINISTRATOR, grant_administrator_everything

    if Group.objects.filter(name=ADMINISTRATOR).exists():
        return
    for module, function in DATA_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, None)
    grant_administrator_everything(sender=None)


@pytest.fixture(autouse=True)
def _migration_rows(request):
    if _is_transactional(request.node):
        request.getfixturevalue("transactional_db")
        restore_migration_rows()
    yield
