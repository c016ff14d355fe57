"""The manual bank wire: the client is shown the broker's bank details and the
deposit's unique reference, pays from their bank, and Finance matches the
incoming payment to the deposit in the admin (``deposit_match_wire``).

Settings (all shown to the client): ``beneficiary``, ``iban``, ``bic``,
``bank``, and optionally ``account_number`` and ``sort_code`` / ``routing_number``
for domestic wires. No secrets, no webhooks, no automatic payouts.
"""

from __future__ import annotations

from backoffice.money import from_minor

from .base import DepositStart, PaymentProviderBase, PayoutResult, WebhookRejected

# The order and wording of the bank details shown to the client.
BANK_FIELDS = [
    ("beneficiary", "Beneficiary"),
    ("bank", "Bank"),
    ("iban", "IBAN"),
    ("bic", "BIC / SWIFT"),
    ("account_number", "Account number"),
    ("sort_code", "Sort code"),
    ("routing_number", "Routing number"),
]


class ManualWireProvider(PaymentProviderBase):
    label = "Manual bank wire"
    automatic_payouts = False

    def deposit_start(self, deposit, *, return_url: str) -> DepositStart:
        rows = self.deposit_instructions(deposit)
        text = "\n".join(f"{label}: {value}" for label, value in rows)
        note = (deposit.method.instructions or "").strip()
        if note:
            text = f"{text}\n\n{note}"
        return DepositStart(instructions=text)

    def deposit_instructions(self, deposit) -> list[tuple[str, str]]:
        rows = [
            (label, str(self.settings[key]).strip())
            for key, label in BANK_FIELDS
            if str(self.settings.get(key) or "").strip()
        ]
        amount = from_minor(deposit.amount, deposit.currency.exponent)
        rows.append(("Amount", f"{amount:,} {deposit.currency_id}"))
        rows.append(("Payment reference", deposit.reference))
        return rows

    def webhook_verify(self, request) -> None:
        raise WebhookRejected("Bank wires are matched by Finance; they have no webhooks.")

    def webhook_parse(self, request):
        raise WebhookRejected("Bank wires are matched by Finance; they have no webhooks.")

    def payout(self, withdrawal) -> PayoutResult:
        return PayoutResult(paid=False)
