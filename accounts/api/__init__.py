"""The REST API's sign-in: a token for the mobile app, with the same checks
as the sign-in page (password, confirmed e-mail, 2FA code, lock-out)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

from .. import services
from ..exceptions import ApiAuthError


class TokenRequest(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False, max_length=256)
    otp_code = serializers.CharField(required=False, allow_blank=True, max_length=32)


class SignInThrottle(AnonRateThrottle):
    scope = "sign_in"
    rate = "20/minute"


@extend_schema(
    request=TokenRequest,
    responses={200: inline_serializer("Token", {"token": serializers.CharField()})},
    summary="Get an API token (send otp_code when 2FA is on)",
)
@api_view(["POST"])
@permission_classes([AllowAny])
@throttle_classes([SignInThrottle])
def token_create(request):
    form = TokenRequest(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        token = services.api_token_issue(request=request._request, **form.validated_data)
    except ApiAuthError as exc:
        return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
    return Response({"token": token.key})


@extend_schema(request=None, responses={204: None}, summary="Revoke the API token")
@api_view(["DELETE"])
@permission_classes([IsAuthenticated])
def token_delete(request):
    services.api_token_revoke(user=request.user)
    return Response(status=status.HTTP_204_NO_CONTENT)
