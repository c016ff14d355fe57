"""What every part of the REST API shares: one shape for errors,
``{"detail": "...for people", "code": "...for programs"}`` (400s also carry
``errors`` by field). Set as ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler


def _first_message(errors) -> tuple[str, str]:
    """(field path, message) of the first error in DRF's nested errors."""
    if isinstance(errors, dict):
        for name, value in errors.items():
            path, message = _first_message(value)
            if message:
                label = "" if name in ("non_field_errors", "detail") else str(name)
                return ".".join(p for p in (label, path) if p), message
    elif isinstance(errors, list):
        for value in errors:
            path, message = _first_message(value)
            if message:
                return path, message
    elif errors:
        return "", str(errors)
    return "", ""


def exception_handler(exc, context):
    """DRF's handler, with every error in the shape ``{"detail", "code"}``."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and "code" in data:
        return response  # ours already
    if isinstance(exc, ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        path, message = _first_message(errors)
        response.data = {
            "detail": f"{path}: {message}" if path else message,
            "code": "invalid",
            "errors": errors,
        }
        return response
    if isinstance(exc, Http404):
        code = "not_found"
    elif isinstance(exc, PermissionDenied):
        code = "permission_denied"
    else:
        codes = exc.get_codes() if isinstance(exc, APIException) else "error"
        code = codes if isinstance(codes, str) else "error"
    detail = data.get("detail", "") if isinstance(data, dict) else _first_message(data)[1]
    response.data = {"detail": str(detail), "code": code}
    return response
