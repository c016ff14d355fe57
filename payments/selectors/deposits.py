"""Reads for deposits: the payment methods a client may deposit with, their
deposits (through an access getter that 404s on anyone else's), and the
one rule of which method serves whom (also used by the services)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Prefetch, Q, Sum
from django.http import Http404

from accounts.selectors import profile_for_user
from backoffice.money import from_minor

from ..models import Currency, Deposit, PaymentMethod

DEPOSIT_DIRECTIONS = (PaymentMethod.DEPOSIT, PaymentMethod.BOTH)


def client_country(*, user) -> str:
    """The client's country of residence (ISO code), "" when not given."""
    country = profile_for_user(user=user).country
    return country.code if country else ""


def method_refusal(method: PaymentMethod, *, country: str, currency_code: str) -> str | None:
    """Why ``method`` cannot take this client's deposit into a wallet in
    ``currency_code``, in words for the client; ``None`` when it can.

    Reads ``method.provider`` and ``method.currencies`` (prefetch them)."""
    name = method.name
    if not method.enabled or not method.provider.enabled:
        return f"{name} is not available at the moment. Choose another method."
    if method.direction not in DEPOSIT_DIRECTIONS:
        return f"{name} cannot be used for deposits. Choose another method."
    if currency_code not in {c.code for c in method.currencies.all()}:
        return f"{name} does not take deposits into a {currency_code} wallet."
    allowed = {c.code for c in method.countries}
    if allowed and not country:
        return f"Add your country of residence to your profile to deposit by {name}."
    if allowed and country not in allowed:
        return f"{name} is not available in your country."
    return None


def _methods():
    return (
        PaymentMethod.objects.filter(
            enabled=True, provider__enabled=True, direction__in=DEPOSIT_DIRECTIONS
        )
        .select_related("provider", "provider_currency")
        .prefetch_related(
            Prefetch("currencies", queryset=Currency.objects.filter(is_active=True).order_by())
        )
        .order_by("display_order", "name", "pk")
    )


def deposit_methods_for(*, user, country: str | None = None) -> list[PaymentMethod]:
    """The methods this client may deposit with (any currency), by display
    order. Each has ``currencies`` prefetched (active ones only)."""
    if country is None:
        country = client_country(user=user)
    return [
        method
        for method in _methods()
        if method.currencies.all()
        and (not method.countries or country in {c.code for c in method.countries})
    ]


def deposit_currencies(methods: list[PaymentMethod]) -> list[Currency]:
    """The wallet currencies these methods serve, in the currencies' order."""
    seen: dict[str, Currency] = {}
    for method in methods:
        for currency in method.currencies.all():
            seen.setdefault(currency.code, currency)
    return sorted(seen.values(), key=lambda c: (c.display_order, c.code))


def methods_for_currency(methods: list[PaymentMethod], currency_code: str) -> list[PaymentMethod]:
    return [m for m in methods if currency_code in {c.code for c in m.currencies.all()}]


def deposit_method_get(*, method_id: int) -> PaymentMethod | None:
    """A method by id, with what :func:`method_refusal` reads (the caller
    decides whether the client may use it)."""
    return (
        PaymentMethod.objects.filter(pk=method_id)
        .select_related("provider", "provider_currency")
        .prefetch_related("currencies")
        .first()
    )


def deposit_get_for_user(*, user, reference: str) -> Deposit:
    """The client's own deposit by reference, or 404 (never another's)."""
    deposit = (
        Deposit.objects.filter(reference=reference.upper(), user=user)
        .select_related("method", "provider", "currency", "wallet__currency")
        .first()
    )
    if deposit is None:
        raise Http404("No such deposit.")
    return deposit


def deposits_recent_for_user(*, user, limit: int = 10) -> list[Deposit]:
    return list(
        Deposit.objects.filter(user=user)
        .select_related("method", "currency", "wallet__currency")
        .order_by("-id")[:limit]
    )


def deposit_totals_since(
    *, user, day, month, open_since=None
) -> list[tuple[str, Decimal, Decimal]]:
    """Per currency paid in: the sum of the client's deposits started since
    ``day`` and since ``month`` (major units), in one query. Completed and
    flagged deposits count; deposits still open (created, pending) count when
    started after ``open_since`` (money on its way is money a limit is about,
    but a checkout abandoned yesterday must not hold the limit for a month);
    failed ones never."""
    settled = Q(status__in=(Deposit.COMPLETED, Deposit.FLAGGED))
    open_ = Q(status__in=(Deposit.CREATED, Deposit.PENDING))
    if open_since is not None:
        open_ &= Q(created_at__gte=open_since)
    rows = (
        Deposit.objects.filter(user=user, created_at__gte=min(day, month))
        .filter(settled | open_)
        .values("currency_id", "currency__exponent")
        .annotate(
            day=Sum("amount", filter=Q(created_at__gte=day), default=0),
            month=Sum("amount", filter=Q(created_at__gte=month), default=0),
        )
        .order_by()
    )
    return [
        (
            row["currency_id"],
            from_minor(row["day"], row["currency__exponent"]),
            from_minor(row["month"], row["currency__exponent"]),
        )
        for row in rows
    ]
