"""Currencies, and on PostgreSQL the database's own guard of double entry:
a deferred constraint trigger refuses a transaction whose entries do not sum
to zero per currency, and entries can be neither updated nor deleted."""

from django.db import migrations

CURRENCIES = [
    # code, name, exponent, kind, symbol, order
    ("USD", "US dollar", 2, "fiat", "$", 10),
    ("EUR", "Euro", 2, "fiat", "€", 20),
    ("GBP", "Pound sterling", 2, "fiat", "£", 30),
    ("JPY", "Japanese yen", 0, "fiat", "¥", 40),
    ("CHF", "Swiss franc", 2, "fiat", "CHF", 50),
    ("BTC", "Bitcoin", 8, "crypto", "₿", 60),
    # Ether in gwei (9 places): wei (18) would overflow 64-bit integers at ~9 ETH.
    ("ETH", "Ether", 9, "crypto", "Ξ", 70),
    ("USDT", "Tether USD", 6, "crypto", "₮", 80),
]

FORWARD_SQL = """
CREATE OR REPLACE FUNCTION payments_entry_check_balanced() RETURNS trigger AS $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM payments_entry
    WHERE transaction_id = NEW.transaction_id
    GROUP BY currency_id HAVING SUM(amount) <> 0
  ) THEN
    RAISE EXCEPTION 'journal transaction % does not sum to zero per currency',
      NEW.transaction_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER payments_entry_balanced
  AFTER INSERT ON payments_entry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION payments_entry_check_balanced();

CREATE OR REPLACE FUNCTION payments_entry_check_currency() RETURNS trigger AS $$
BEGIN
  IF NEW.currency_id IS DISTINCT FROM
     (SELECT currency_id FROM payments_ledgeraccount WHERE id = NEW.account_id) THEN
    RAISE EXCEPTION 'entry currency % differs from its account''s', NEW.currency_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_entry_currency
  BEFORE INSERT ON payments_entry
  FOR EACH ROW EXECUTE FUNCTION payments_entry_check_currency();

CREATE OR REPLACE FUNCTION payments_entry_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'ledger entries are append-only: post a reversal instead'
    USING ERRCODE = 'check_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_entry_append_only
  BEFORE UPDATE OR DELETE ON payments_entry
  FOR EACH ROW EXECUTE FUNCTION payments_entry_append_only();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS payments_entry_append_only ON payments_entry;
DROP FUNCTION IF EXISTS payments_entry_append_only();
DROP TRIGGER IF EXISTS payments_entry_currency ON payments_entry;
DROP FUNCTION IF EXISTS payments_entry_check_currency();
DROP TRIGGER IF EXISTS payments_entry_balanced ON payments_entry;
DROP FUNCTION IF EXISTS payments_entry_check_balanced();
"""


def add_currencies(apps, schema_editor):
    Currency = apps.get_model("payments", "Currency")
    for code, name, exponent, kind, symbol, order in CURRENCIES:
        Currency.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "exponent": exponent,
                "kind": kind,
                "symbol": symbol,
                "display_order": order,
            },
        )


def _run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        # A plain cursor: no parameters, so the '%' of RAISE stays as it is.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


def triggers(apps, schema_editor):
    _run(schema_editor, FORWARD_SQL)


def drop_triggers(apps, schema_editor):
    _run(schema_editor, REVERSE_SQL)


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [
        migrations.RunPython(add_currencies, migrations.RunPython.noop),
        migrations.RunPython(triggers, drop_triggers),
    ]
