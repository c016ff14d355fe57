"""Posting as one database function on PostgreSQL: the journal row (with the
idempotency key taken by ON CONFLICT), the wallet locks in id order, the
balance checks and updates and the entries, in one round trip instead of six.
The deferred balance trigger still checks double entry at commit.

Insufficient funds raise SQLSTATE BO001 with ``account,needed,available`` in
the detail; the Python side maps it to :class:`InsufficientFunds`.
"""

from django.db import migrations

FORWARD_SQL = """
CREATE OR REPLACE FUNCTION payments_ledger_post(
  p_kind text, p_key text, p_hash text, p_description text, p_metadata jsonb,
  p_actor bigint, p_reverses bigint, p_created timestamptz,
  p_accounts bigint[], p_amounts bigint[]
) RETURNS TABLE (journal_id bigint, replayed boolean, stored_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_id bigint;
  v_hash text;
  r record;
BEGIN
  INSERT INTO payments_journaltransaction
    (kind, idempotency_key, request_hash, description, metadata, actor_id, reverses_id, created_at)
  VALUES (p_kind, p_key, p_hash, p_description, p_metadata, p_actor, p_reverses, p_created)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    SELECT j.id, j.request_hash INTO v_id, v_hash
      FROM payments_journaltransaction j WHERE j.idempotency_key = p_key;
    RETURN QUERY SELECT v_id, true, v_hash;
    RETURN;
  END IF;

  FOR r IN
    SELECT a.id, a.balance, d.delta
      FROM payments_ledgeraccount a
      JOIN (SELECT t.acc, sum(t.amt)::bigint AS delta
              FROM unnest(p_accounts, p_amounts) AS t(acc, amt) GROUP BY t.acc) d
        ON d.acc = a.id
     WHERE a.kind = 'wallet'
     ORDER BY a.id
       FOR UPDATE OF a
  LOOP
    IF r.balance + r.delta < 0 THEN
      RAISE EXCEPTION 'insufficient funds in ledger account %', r.id
        USING ERRCODE = 'BO001', DETAIL = r.id || ',' || (-r.delta) || ',' || r.balance;
    END IF;
    IF r.delta <> 0 THEN
      UPDATE payments_ledgeraccount SET balance = r.balance + r.delta WHERE id = r.id;
    END IF;
  END LOOP;

  INSERT INTO payments_entry
    (transaction_id, account_id, currency_id, amount, balance_after, created_at)
  SELECT v_id, t.acc, a.currency_id, t.amt,
         CASE WHEN a.kind = 'wallet' THEN a.balance END, p_created
    FROM unnest(p_accounts, p_amounts) WITH ORDINALITY AS t(acc, amt, ord)
    JOIN payments_ledgeraccount a ON a.id = t.acc
   ORDER BY t.ord;

  RETURN QUERY SELECT v_id, false, p_hash;
END
$$;
"""

REVERSE_SQL = """
DROP FUNCTION IF EXISTS payments_ledger_post(
  text, text, text, text, jsonb, bigint, bigint, timestamptz, bigint[], bigint[]);
"""


def _run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


def create(apps, schema_editor):
    _run(schema_editor, FORWARD_SQL)


def drop(apps, schema_editor):
    _run(schema_editor, REVERSE_SQL)


class Migration(migrations.Migration):
    dependencies = [("payments", "0006_default_providers_and_permissions")]

    operations = [migrations.RunPython(create, drop)]
