"""Trading accounts for the mobile app: the account types on offer, the
client's accounts with the figures the platform last reported, opening an
account, leverage, the trading password and a refresh of the figures.

The same services as the room's pages (``accounts.services.trading``) and the
same access getter: another client's account id is a 404.

Opening an account is idempotent on the client's Idempotency-Key, which the
service knows nothing of: the API keeps ``key → account id`` in the cache
for ``OPEN_KEY_TTL`` (``cache.add`` claims the key before the platform is
called, so that two concurrent requests with one key open one account; the
second is told 409 while the first is under way). A replay returns the
account without its passwords, which are shown once.
"""

from __future__ import annotations

from django.core.cache import cache
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from ..exceptions import TradingError, TwoFactorError
from ..models import AccountType, TradingAccount
from ..platforms.base import PlatformError
from ..selectors import trading as selectors
from ..services import totp_device_confirmed
from ..services import trading as services
from .common import (
    IDEMPOTENCY_PARAMETER,
    ApiError,
    errors,
    idempotency_key,
    key_digest,
    money,
    no_store,
    number,
    refused,
    replayable,
)

# How long a key names the account it opened (Stripe keeps keys for 24 hours),
# and how long a request may hold a key while the platform is being called.
OPEN_KEY_TTL = 24 * 60 * 60
OPEN_KEY_PENDING_TTL = 5 * 60
PENDING = "pending"

KEY_REUSED = (
    "This Idempotency-Key was already used to open another account (another type or "
    "leverage). Use a new key for a new account. Nothing was opened."
)
KEY_BUSY = (
    "A request with this Idempotency-Key is still being answered. Try again in a moment: "
    "the account is opened once."
)


# --- Serializers ----------------------------------------------------------------------


class AccountTypeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    demo = serializers.BooleanField(source="is_demo")
    platform = serializers.CharField(source="platform.identifier")
    platform_name = serializers.CharField(source="platform.name")
    currency = serializers.CharField()
    currency_digits = serializers.IntegerField(help_text="Decimal places of the account's money.")
    leverage_choices = serializers.ListField(
        child=serializers.IntegerField(), help_text="100 is 1:100."
    )
    default_leverage = serializers.IntegerField()
    min_first_transfer = serializers.SerializerMethodField(
        help_text="Live accounts: the smallest first transfer, in the account's currency."
    )
    demo_balance = serializers.SerializerMethodField(
        help_text="Demo accounts: the virtual money credited on opening (null: live)."
    )
    description = serializers.CharField()

    def get_min_first_transfer(self, account_type: AccountType) -> str:
        return number(account_type.min_first_transfer)

    def get_demo_balance(self, account_type: AccountType) -> str | None:
        return number(account_type.demo_balance) if account_type.is_demo else None


class TradingAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    login = serializers.CharField(help_text="The login on the trading platform.")
    platform = serializers.CharField(source="platform.identifier")
    platform_name = serializers.CharField(source="platform.name")
    server = serializers.SerializerMethodField(
        help_text='The server to type into the platform\'s terminal ("": none named).'
    )
    account_type = serializers.IntegerField(source="account_type_id")
    account_type_name = serializers.CharField(source="account_type.name")
    demo = serializers.BooleanField(source="is_demo")
    status = serializers.CharField(help_text="active or archived.")
    operable = serializers.SerializerMethodField(
        help_text="Whether leverage, password, refresh (and transfers, live) are possible."
    )
    currency = serializers.CharField()
    currency_digits = serializers.IntegerField()
    leverage = serializers.IntegerField(help_text="100 is 1:100.")
    leverage_choices = serializers.SerializerMethodField()
    balance = serializers.SerializerMethodField()
    equity = serializers.SerializerMethodField()
    margin = serializers.SerializerMethodField()
    free_margin = serializers.SerializerMethodField()
    margin_level = serializers.SerializerMethodField(
        help_text="Percent; null without open positions."
    )
    state_updated_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the platform last reported the figures (null: never).",
    )
    created_at = serializers.DateTimeField()

    def get_server(self, account: TradingAccount) -> str:
        return selectors.platform_server_name(account)

    def get_operable(self, account: TradingAccount) -> bool:
        return selectors.trading_account_operable(account)

    def get_leverage_choices(self, account: TradingAccount) -> list[int]:
        return sorted(set(account.account_type.leverage_choices or []))

    def get_balance(self, account: TradingAccount) -> str:
        return money(account.balance, account.currency_digits)

    def get_equity(self, account: TradingAccount) -> str:
        return money(account.equity, account.currency_digits)

    def get_margin(self, account: TradingAccount) -> str:
        return money(account.margin, account.currency_digits)

    def get_free_margin(self, account: TradingAccount) -> str:
        return money(account.free_margin, account.currency_digits)

    def get_margin_level(self, account: TradingAccount) -> str | None:
        return number(account.margin_level)


class OpenRequest(serializers.Serializer):
    account_type = serializers.IntegerField(
        help_text="An id from GET /api/v1/account-types/.",
    )
    leverage = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="One of the type's leverage_choices (the type's default when left out).",
    )


NOT_OFFERED = "Choose one of the account types offered (GET /api/v1/account-types/)."


def _chosen(types: list[AccountType], data: dict) -> tuple[AccountType, int]:
    """The type asked for among ``types`` (those the client may open), and
    the leverage (the type's default when none was sent); 400 otherwise."""
    account_type = next((t for t in types if t.pk == data["account_type"]), None)
    if account_type is None:
        raise serializers.ValidationError({"account_type": [NOT_OFFERED]})
    leverage = data.get("leverage")
    if leverage is None:
        leverage = account_type.default_leverage
    choices = sorted(set(account_type.leverage_choices or []))
    if leverage not in choices:
        offered = ", ".join(str(x) for x in choices)
        raise serializers.ValidationError(
            {"leverage": [f"1:{leverage} is not offered for this account type ({offered})."]}
        )
    return account_type, leverage


class OpenedSerializer(serializers.Serializer):
    account = TradingAccountSerializer()
    password = serializers.CharField(
        allow_null=True,
        help_text="The trading password, shown once (null on a replay: reset it with "
        "POST /api/v1/trading-accounts/{id}/password/).",
    )
    investor_password = serializers.CharField(
        allow_null=True, help_text="The read-only (investor) password, shown once."
    )


class LeverageRequest(serializers.Serializer):
    leverage = serializers.IntegerField(help_text="One of the account's leverage_choices.")

    def validate_leverage(self, value: int) -> int:
        account: TradingAccount = self.context["account"]
        choices = sorted(set(account.account_type.leverage_choices or []))
        if value not in choices:
            offered = ", ".join(str(x) for x in choices)
            raise serializers.ValidationError(
                f"1:{value} is not offered for this account ({offered})."
            )
        return value


class PasswordRequest(serializers.Serializer):
    otp_code = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        help_text="The code from your authenticator app (or a backup code), when 2FA is on.",
    )


class PasswordSerializer(serializers.Serializer):
    password = serializers.CharField(help_text="The new trading password, shown once.")


# --- Errors ---------------------------------------------------------------------------


def _refusal(exc: TradingError) -> ApiError:
    """A service's refusal: 502 when the platform could not be reached (try
    again), 422 otherwise (with what would unlock a policy's refusal)."""
    cause = exc.__cause__
    if isinstance(cause, PlatformError) and not cause.permanent:
        return ApiError(str(exc), code="platform_unavailable", status_code=502)
    decision = exc.decision if exc.decision is not None and not exc.decision.allowed else None
    return refused(str(exc), decision=decision)


def _operable(account: TradingAccount) -> None:
    if not selectors.trading_account_operable(account):
        if account.status != TradingAccount.ACTIVE:
            raise refused("This account is archived.", code="read_only")
        raise refused(
            "This account is read-only (its platform opens no accounts, or is switched off).",
            code="read_only",
        )


# --- Account types and accounts -------------------------------------------------------


@extend_schema(
    responses={200: AccountTypeSerializer(many=True), **errors(401)},
    summary="The account types you may open (live first, then demo)",
    description="Whether a live account is allowed now (KYC, restrictions) is answered "
    "when opening: 422 `not_allowed` with what would unlock it.",
)
@api_view(["GET"])
def account_type_list(request):
    types = selectors.account_types_available(user=request.user)
    return Response(AccountTypeSerializer(types.all, many=True).data)


@extend_schema(
    methods=["GET"],
    responses={200: TradingAccountSerializer(many=True), **errors(401)},
    summary="Your trading accounts (active first, newest first), with cached figures",
)
@extend_schema(
    methods=["POST"],
    request=OpenRequest,
    parameters=[IDEMPOTENCY_PARAMETER],
    responses={201: OpenedSerializer, **errors(400, 401, 409, 422, 502)},
    summary="Open a trading account: the passwords are shown once",
    description=(
        "A live account asks the broker's rules first: 422 `not_allowed` with `unlock` "
        "(e.g. verify your identity). A replay with the same Idempotency-Key (within 24 "
        "hours) returns the same account with `password: null` and opens nothing; the "
        "same key for another type or leverage is 409 `idempotency_conflict`, and while "
        "the first request is still under way 409 `idempotency_in_progress`. "
        "A platform that does not answer: 502 `platform_unavailable` (nothing opened; "
        "retry with the same key)."
    ),
)
@api_view(["GET", "POST"])
def trading_account_collection(request):
    if request.method == "POST":
        return _trading_account_open(request)
    cards = selectors.trading_accounts_for_user(user=request.user)
    return Response(TradingAccountSerializer([c.account for c in cards], many=True).data)


def _trading_account_open(request):
    key = idempotency_key(request)
    form = OpenRequest(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    # The request as sent (a leverage left out is not the same request as the
    # default leverage named), so that a replay is recognised before the
    # offer is checked again: the offer may have changed since.
    sent_leverage = data.get("leverage")
    fingerprint = key_digest(data["account_type"], "" if sent_leverage is None else sent_leverage)
    cache_key = f"api:trading-open:{request.user.pk}:{key_digest(key)}"
    claim = cache.get(cache_key)
    if claim is not None:
        return _open_replay(request, claim, fingerprint)
    types = selectors.account_types_available(user=request.user).all
    account_type, leverage = _chosen(types, data)
    claim = {"request": fingerprint, "account": PENDING}
    if not cache.add(cache_key, claim, timeout=OPEN_KEY_PENDING_TTL):
        return _open_replay(request, cache.get(cache_key), fingerprint)  # lost a race
    try:
        opened = services.trading_account_open(
            user=request.user, account_type=account_type, leverage=leverage
        )
    except TradingError as exc:
        cache.delete(cache_key)  # nothing was opened: the key may be used again
        raise _refusal(exc) from exc
    except BaseException:
        cache.delete(cache_key)
        raise
    cache.set(cache_key, {"request": fingerprint, "account": opened.account.pk}, OPEN_KEY_TTL)
    body = OpenedSerializer(
        {
            "account": opened.account,
            "password": opened.password,
            "investor_password": opened.investor_password,
        }
    ).data
    return no_store(Response(body, status=status.HTTP_201_CREATED))


def _open_replay(request, claim: dict | None, fingerprint: str) -> Response:
    if claim is None:  # the first request failed and let go of the key just now
        raise ApiError(KEY_BUSY, code="idempotency_in_progress", status_code=409)
    if claim.get("request") != fingerprint:
        raise ApiError(KEY_REUSED, code="idempotency_conflict", status_code=409)
    if claim.get("account") == PENDING:
        raise ApiError(KEY_BUSY, code="idempotency_in_progress", status_code=409)
    account = selectors.trading_account_get_for_user(user=request.user, account_id=claim["account"])
    body = OpenedSerializer({"account": account, "password": None, "investor_password": None})
    response = Response(body.data, status=status.HTTP_201_CREATED)
    return no_store(replayable(response, replayed=True))


@extend_schema(
    responses={200: TradingAccountSerializer, **errors(401, 404)},
    summary="One of your trading accounts",
)
@api_view(["GET"])
def trading_account_detail(request, account_id: int):
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    return Response(TradingAccountSerializer(account).data)


@extend_schema(
    request=LeverageRequest,
    responses={200: TradingAccountSerializer, **errors(400, 401, 404, 422, 502)},
    summary="Change the leverage (one of the account's leverage_choices)",
)
@api_view(["POST"])
def trading_account_leverage(request, account_id: int):
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    form = LeverageRequest(data=request.data, context={"account": account})
    form.is_valid(raise_exception=True)
    _operable(account)
    try:
        account = services.trading_account_leverage_change(
            user=request.user, account=account, leverage=form.validated_data["leverage"]
        )
    except TradingError as exc:
        raise _refusal(exc) from exc
    return Response(TradingAccountSerializer(account).data)


@extend_schema(
    request=PasswordRequest,
    responses={200: PasswordSerializer, **errors(400, 401, 403, 404, 422, 429, 502)},
    summary="Reset the trading password: the new one is shown once",
    description=(
        "When 2FA is on, send `otp_code`: without it the answer is 400 `otp_required`, "
        "with a wrong one 403 `otp_invalid`, after too many wrong codes 429 "
        "`otp_throttled`. The password is in this response only (no-store)."
    ),
)
@api_view(["POST"])
def trading_account_password(request, account_id: int):
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    form = PasswordRequest(data=request.data)
    form.is_valid(raise_exception=True)
    code = (form.validated_data.get("otp_code") or "").strip()
    _operable(account)
    two_factor = totp_device_confirmed(request.user) is not None
    if two_factor and not code:
        raise ApiError(
            "Enter the code from your authenticator app (otp_code).", code="otp_required"
        )
    try:
        password = services.trading_account_password_reset(
            user=request.user, account=account, otp_code=code
        )
    except TradingError as exc:
        cause = exc.__cause__
        if isinstance(cause, TwoFactorError):
            raise ApiError(str(exc), code="otp_throttled", status_code=429) from exc
        if two_factor and not isinstance(cause, PlatformError):
            # The account was checked above: what is left before the platform
            # is called is the code.
            raise ApiError(str(exc), code="otp_invalid", status_code=403) from exc
        raise _refusal(exc) from exc
    return no_store(Response(PasswordSerializer({"password": password}).data))


@extend_schema(
    request=None,
    responses={200: TradingAccountSerializer, **errors(401, 404, 422, 502)},
    summary="Read the figures from the platform now",
    description="A platform that does not answer: 502 `platform_unavailable` (the cached "
    "figures stay; GET the account for them).",
)
@api_view(["POST"])
def trading_account_refresh(request, account_id: int):
    account = selectors.trading_account_get_for_user(user=request.user, account_id=account_id)
    _operable(account)
    if not services.trading_account_refresh(account=account):
        raise ApiError(
            "The trading platform did not answer; the figures are the last ones we have.",
            code="platform_unavailable",
            status_code=502,
        )
    return Response(TradingAccountSerializer(account).data)
