"""On PostgreSQL, one composite foreign key for a deal's account, platform
and client (accounts.models.Deal): (account_id, platform_id, client_id) →
the trading account's (id, platform_id, user_id). A deal whose client or
platform is not its account's cannot be stored, and the commit checks one
key per deal instead of three (docs/PERFORMANCE.md, "deal ingestion").
SQLite (the embedded default) cannot add a constraint to a table; there the
ingestion code is the check."""

from django.db import migrations

ADD = (
    "ALTER TABLE accounts_deal ADD CONSTRAINT deal_account_consistent "
    "FOREIGN KEY (account_id, platform_id, client_id) "
    "REFERENCES accounts_tradingaccount (id, platform_id, user_id) "
    "ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED"
)
DROP = "ALTER TABLE accounts_deal DROP CONSTRAINT IF EXISTS deal_account_consistent"


def add(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ADD)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_trading_defaults")]

    operations = [migrations.RunPython(add, drop)]
