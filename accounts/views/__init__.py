"""The trader's room: dashboard, profile, security; and the sign-in code step."""

from __future__ import annotations

from base64 import b32encode
from urllib.parse import urlencode

import segno
from allauth.account.internal.decorators import login_stage_required
from allauth.account.internal.stagekit import stash_login
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login

from backoffice.events import publish
from backoffice.selectors import notifications_recent, room_version
from backoffice.services import notifications_mark_read

from .. import selectors, services
from ..adapter import client_ip
from ..exceptions import TwoFactorError
from ..forms import CodeForm, ProfileForm, TotpCodeForm
from ..registration import consents_pending
from ..stages import TwoFactorStage

MAX_CODE_ATTEMPTS_PER_SIGN_IN = 5


@require_http_methods(["GET", "POST"])
@login_stage_required(stage=TwoFactorStage.key, redirect_urlname="account_login")
def two_factor_authenticate(request: HttpRequest) -> HttpResponse:
    stage = request._login_stage
    user = stage.login.user
    form = CodeForm(request.POST or None)
    form.fields["code"].widget.attrs["autofocus"] = True
    if request.method == "POST" and form.is_valid():
        error = "That code is not valid. Codes change every 30 seconds and each can be used once."
        try:
            device = services.two_factor_verify(user=user, token=form.cleaned_data["code"])
        except TwoFactorError as exc:  # throttled after wrong codes
            device, error = None, str(exc)
        if device is not None:
            request.session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            return stage.exit()
        failures = stage.state.get("failures", 0) + 1
        stage.state["failures"] = failures
        publish(
            "security.login_failed",
            user,
            {"reason": "second_factor", "ip": client_ip(request), "attempt": failures},
        )
        if failures >= MAX_CODE_ATTEMPTS_PER_SIGN_IN:
            messages.error(request, "Too many wrong codes. Sign in again.")
            return stage.abort()
        stash_login(request, stage.login)
        form.add_error("code", error)
    return render(request, "account/two_factor_authenticate.html", {"form": form})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    # Read only when a cached fragment is missing (see the template).
    data = SimpleLazyObject(lambda: selectors.dashboard_for_user(user=user))
    context = {
        "dashboard": data,
        "notifications": SimpleLazyObject(lambda: data.notifications),
        # New versions of legal documents to accept (a banner; one query).
        "consents_pending": SimpleLazyObject(lambda: list(consents_pending(user=user))),
        "room_version": room_version(user.pk),
        "nav_active": "dashboard",
    }
    return render(request, "room/dashboard.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    current = selectors.profile_for_user(user=request.user)
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            services.client_profile_update(
                actor=request.user, user=request.user, data=form.cleaned_data
            )
            messages.success(request, "Your profile is saved.")
            return redirect("room:profile")
        messages.error(request, "Please correct the fields marked below.")
    else:
        form = ProfileForm(initial=ProfileForm.initial_for(request.user, current))
    return render(request, "room/profile.html", {"form": form, "nav_active": "profile"})


def _safe_next(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _qr_svg(uri: str) -> str:
    # No fixed size (a viewBox only), so that CSS can fit it to a phone.
    return segno.make(uri, error="m").svg_inline(
        scale=5, border=2, dark="#111", light="#fff", omitsize=True
    )


@login_required
@never_cache
def security(request: HttpRequest, *, code_form: CodeForm | None = None, status: int = 200):
    state = selectors.two_factor_state(user=request.user)
    context = {
        "state": state,
        "nav_active": "security",
        "next": _safe_next(request),
        "code_form": code_form or TotpCodeForm(),
        "regen_form": TotpCodeForm(auto_id="regen_%s"),
        "disable_form": CodeForm(auto_id="disable_%s"),
    }
    if state.pending_device is not None:
        device = state.pending_device
        secret = b32encode(device.bin_key).decode().rstrip("=")
        context["secret"] = secret
        context["secret_grouped"] = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        context["qr_svg"] = _qr_svg(device.config_url)
    return render(request, "room/security.html", context, status=status)


@login_required
@require_POST
def totp_start(request: HttpRequest) -> HttpResponse:
    try:
        services.totp_enrolment_start(user=request.user)
    except TwoFactorError as exc:
        messages.error(request, str(exc))
    return _back_to_security(request)


@login_required
@require_POST
@never_cache
def totp_confirm(request: HttpRequest) -> HttpResponse:
    form = TotpCodeForm(request.POST)
    if not form.is_valid():
        return security(request, code_form=form, status=400)
    try:
        codes = services.totp_enrolment_confirm(user=request.user, token=form.cleaned_data["code"])
    except TwoFactorError as exc:
        form.add_error("code", str(exc))
        return security(request, code_form=form, status=400)
    # This session has just proved the second factor; other sessions end.
    otp_login(request, services.totp_device_confirmed(request.user))
    update_session_auth_hash(request, request.user)
    messages.success(request, "Two-factor authentication is on.")
    return _show_backup_codes(request, codes)


@login_required
@require_POST
@never_cache
def backup_codes_regenerate(request: HttpRequest) -> HttpResponse:
    form = TotpCodeForm(request.POST)
    if form.is_valid():
        try:
            codes = services.backup_codes_regenerate(
                user=request.user, token=form.cleaned_data["code"]
            )
        except TwoFactorError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "New backup codes made; the old ones no longer work.")
            return _show_backup_codes(request, codes)
    else:
        messages.error(request, form.errors["code"][0])
    return _back_to_security(request)


@login_required
@require_POST
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            services.two_factor_disable(user=request.user, token=form.cleaned_data["code"])
        except TwoFactorError as exc:
            messages.error(request, f"Two-factor authentication is still on. {exc}")
        else:
            update_session_auth_hash(request, request.user)
            messages.success(request, "Two-factor authentication is off.")
    else:
        messages.error(request, form.errors["code"][0])
    return _back_to_security(request)


@login_required
@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    notifications_mark_read(user=request.user)
    if request.htmx:
        return render(
            request,
            "room/_notifications.html",
            {
                "notifications": notifications_recent(user=request.user),
                "room_version": room_version(request.user.pk),
            },
        )
    return redirect("room:dashboard")


def _show_backup_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    pretty = [f"{c[:5]}-{c[5:]}" for c in codes]
    response = render(
        request,
        "room/backup_codes.html",
        {"codes": pretty, "next": _safe_next(request), "nav_active": "security"},
    )
    response["Cache-Control"] = "no-store"
    return response


def _back_to_security(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    response = redirect("room:security")
    if next_url:
        response["Location"] += "?" + urlencode({"next": next_url})
    return response
