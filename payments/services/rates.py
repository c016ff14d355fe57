"""Exchange rates: refreshed from the rate providers, or set by Finance.

A source's rates are stored one row per pair (:class:`~payments.models.Rate`,
the latest only); :mod:`payments.selectors.rates` picks among sources and
refuses rates older than their source allows. Providers fetch; only this
module writes rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from backoffice.secrets import SecretError, decrypt, encrypt

from ..exceptions import LedgerError
from ..models import Currency, Rate, RateSource
from ..providers import RATE_PROVIDERS
from ..providers.base import ProviderError
from ..providers.rates import FetchedRate
from .ledger import currency_get

logger = logging.getLogger(__name__)

# Rate columns: 30 digits, 12 after the point.
RATE_PLACES = 12
RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
RATE_LIMIT = Decimal(10) ** (30 - RATE_PLACES)
LAST_ERROR_MAX = 2000


class RateError(LedgerError):
    """A rate that cannot be stored (the message is for people)."""


@dataclass(frozen=True)
class RefreshResult:
    source: RateSource
    stored: int = 0
    skipped: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def rates_refresh(*, source: RateSource) -> RefreshResult:
    """Fetch ``source``'s rates and store those between active currencies.

    The provider is called outside any transaction (a slow feed must not
    hold a database connection in a transaction); what it returns is then
    stored in one. A failure is recorded in ``source.last_error`` and
    returned, never raised: the beat task goes on with the next source, and
    the rates already stored stay (they age out by the source's max age).
    """
    try:
        provider = RATE_PROVIDERS.get(source.kind)(source)
        fetched = provider.fetch()
    except KeyError:
        return _record_failure(source, f"No rate provider implementation {source.kind!r}.")
    except SecretError as exc:
        return _record_failure(source, str(exc))
    except ProviderError as exc:
        return _record_failure(source, str(exc))
    return _store(source, fetched)


def rates_refresh_all() -> list[RefreshResult]:
    """Refresh every enabled source whose provider fetches (not manual rates).

    One source's failure, even an unexpected one, never stops the others.
    """
    results = []
    for source in RateSource.objects.filter(enabled=True).order_by("priority", "identifier"):
        if source.kind in RATE_PROVIDERS and not RATE_PROVIDERS.get(source.kind).automatic:
            continue
        try:
            results.append(rates_refresh(source=source))
        except Exception as exc:  # a bug in a provider must not stop beat
            logger.exception("rates: refreshing %s failed", source.identifier)
            results.append(_record_failure(source, f"Unexpected error: {exc.__class__.__name__}."))
    return results


def _record_failure(source: RateSource, message: str) -> RefreshResult:
    logger.warning("rates: %s: %s", source.identifier, message)
    message = message[:LAST_ERROR_MAX]
    # An UPDATE of one column, not save(): no audit-log noise from beat.
    RateSource.objects.filter(pk=source.pk).update(last_error=message)
    source.last_error = message
    return RefreshResult(source=source, error=message)


@transaction.atomic
def _store(source: RateSource, fetched: list[FetchedRate]) -> RefreshResult:
    now = timezone.now()
    active = set(Currency.objects.filter(is_active=True).values_list("code", flat=True))
    rows: dict[tuple[str, str], Rate] = {}
    skipped = 0
    for item in fetched:
        base, quote = item.base.strip().upper(), item.quote.strip().upper()
        rate = _storable(item.rate)
        if base == quote or base not in active or quote not in active or rate is None:
            skipped += 1
            continue
        as_of = item.as_of if timezone.is_aware(item.as_of) else item.as_of.replace(tzinfo=UTC)
        rows[(base, quote)] = Rate(
            source=source, base_id=base, quote_id=quote, rate=rate, as_of=as_of, fetched_at=now
        )
    if rows:
        Rate.objects.bulk_create(
            rows.values(),
            update_conflicts=True,
            unique_fields=["source", "base", "quote"],
            update_fields=["rate", "as_of", "fetched_at"],
        )
    RateSource.objects.filter(pk=source.pk).update(last_refreshed_at=now, last_error="")
    source.last_refreshed_at, source.last_error = now, ""
    return RefreshResult(source=source, stored=len(rows), skipped=skipped)


def _storable(rate: Decimal) -> Decimal | None:
    """The rate rounded to the column's 12 places, or None if it does not fit."""
    try:
        value = Decimal(rate)
        if not value.is_finite() or value >= RATE_LIMIT:
            return None
        value = value.quantize(RATE_QUANTUM)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return value if value > 0 else None


def manual_source() -> RateSource:
    source = RateSource.objects.filter(kind="manual").order_by("priority", "identifier").first()
    if source is None:
        raise RateError("There is no manual rate source. Add one (kind “manual”) first.")
    return source


@transaction.atomic
def rate_set_manual(*, actor, base: Currency | str, quote: Currency | str, rate: Decimal) -> Rate:
    """Set 1 ``base`` = ``rate`` ``quote`` in the manual source, as of now.

    Refused with a message: an unknown or inactive currency, the same
    currency twice, a rate that is not a positive number of at most 12
    decimal places. Audited by the audit log (the admin registers Rate).
    """
    base_currency = currency_get(base.code if isinstance(base, Currency) else base)
    quote_currency = currency_get(quote.code if isinstance(quote, Currency) else quote)
    if base_currency.code == quote_currency.code:
        raise RateError("A rate needs two different currencies.")
    value = _validated(rate)
    source = manual_source()
    now = timezone.now()
    row, _ = Rate.objects.update_or_create(
        source=source,
        base=base_currency,
        quote=quote_currency,
        defaults={"rate": value, "as_of": now, "fetched_at": now},
    )
    RateSource.objects.filter(pk=source.pk).update(last_refreshed_at=now, last_error="")
    logger.info(
        "rates: %s set 1 %s = %s %s (manual)",
        getattr(actor, "pk", None),
        base_currency.code,
        value,
        quote_currency.code,
    )
    return row


def _validated(rate: Decimal) -> Decimal:
    if isinstance(rate, float | bool):
        raise RateError("Give the rate as a decimal number.")
    try:
        value = Decimal(rate)
    except (InvalidOperation, TypeError, ValueError):
        raise RateError("The rate must be a number.") from None
    if not value.is_finite() or value <= 0:
        raise RateError("The rate must be a positive number.")
    if value >= RATE_LIMIT:
        raise RateError("The rate is too large.")
    if value != value.quantize(RATE_QUANTUM):
        raise RateError(f"A rate has at most {RATE_PLACES} decimal places.")
    return value.quantize(RATE_QUANTUM)


@transaction.atomic
def rate_source_save(
    *,
    actor,
    source: RateSource,
    secrets: dict[str, str] | None = None,
    clear_secrets: bool = False,
) -> RateSource:
    """Save a rate source's configuration (as edited in the admin).

    ``secrets``: new values to set (blank values keep the stored ones);
    ``clear_secrets`` removes every stored secret first. Secrets are stored
    encrypted and never returned. The audit log records the change (without
    the secrets).
    """
    if source.kind not in RATE_PROVIDERS:
        raise RateError(f"There is no rate provider implementation {source.kind!r}.")
    if not isinstance(source.settings, dict):
        raise RateError("Settings must be a JSON object.")
    try:
        stored = {} if clear_secrets else decrypt(source.secrets)
    except SecretError as exc:
        raise RateError(f"{exc} Clear the secrets and enter them again.") from None
    stored.update({name: value for name, value in (secrets or {}).items() if value})
    source.secrets = encrypt(stored)
    source.save()
    logger.info(
        "rates: %s saved source %s (secrets %s)",
        getattr(actor, "pk", None),
        source.identifier,
        "cleared" if clear_secrets else ("changed" if secrets else "kept"),
    )
    return source
