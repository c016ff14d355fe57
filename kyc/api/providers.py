"""A token for a verification provider's mobile SDK (Sumsub's MobileSDK):
the app asks for one per check and hands it to the SDK, which talks to the
provider directly; the result comes back to us by the provider's webhook.

The same service and access getter as the room's "Verify with …" button:
a requirement that is not a provider check open to this client is a 404.
Errors take the API's one shape, ``{"detail", "code"}``: 404 no such check,
422 the client may not start it now (approved, rejected, a blocked country),
429 too many tokens asked for, 502 the provider failed (nothing changed).
"""

from __future__ import annotations

import logging

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import throttle_classes
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from payments.api.common import ApiError, api_view, errors

from ..exceptions import KycError
from ..providers.base import ProviderError
from ..services.providers import provider_access_token, provider_requirement_get_for_user

logger = logging.getLogger(__name__)


class AccessTokenThrottle(UserRateThrottle):
    """Each token costs a call to the provider: a few a minute are plenty."""

    scope = "kyc_access_token"
    rate = "10/minute"


class AccessTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Pass it to the provider's SDK; short-lived.")
    provider = serializers.CharField(help_text="The provider's identifier here, e.g. sumsub.")
    level_name = serializers.CharField(help_text="The provider's level (flow) for this check.")


@extend_schema(
    request=None,
    responses={200: AccessTokenSerializer, **errors(401, 404, 422, 429, 502)},
    summary="Get a token for the verification provider's mobile SDK",
)
@api_view(["POST"])
@throttle_classes([AccessTokenThrottle])
def access_token(request, requirement_id: int):
    requirement = provider_requirement_get_for_user(
        user=request.user, requirement_id=requirement_id
    )
    try:
        access = provider_access_token(user=request.user, requirement=requirement)
    except KycError as exc:
        raise ApiError(
            str(exc), code="not_allowed", status_code=status.HTTP_422_UNPROCESSABLE_ENTITY
        ) from exc
    except ProviderError as exc:
        logger.warning(
            "KYC SDK token for requirement %s, user %s: %s", requirement.pk, request.user.pk, exc
        )
        raise ApiError(
            f"{requirement.provider.name} cannot give a token at the moment; try again later.",
            code="provider_error",
            status_code=status.HTTP_502_BAD_GATEWAY,
        ) from exc
    data = AccessTokenSerializer(
        {"token": access.token, "provider": access.provider, "level_name": access.level_name}
    ).data
    response = Response(data)
    response["Cache-Control"] = "no-store"
    return response
