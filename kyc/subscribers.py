"""Reactions of the KYC app to domain events: tell the client about decisions
on their verification; follow a change of country of residence."""

from accounts.models import User
from backoffice.events import subscriber
from backoffice.models import Event
from backoffice.services import notification_create

_MESSAGES = {
    "kyc.approved": (
        "Verification item approved",
        "{name} was approved.",
    ),
    "kyc.rejected": (
        "Verification item rejected",
        "{name} was not accepted. Open Verification in your room to see why.",
    ),
    "kyc.resubmission_requested": (
        "Please send a verification item again",
        "We need {name} again. Open Verification in your room to see what to fix.",
    ),
    "kyc.expired": (
        "A verification document expired",
        "{name} has expired. Upload a new one in Verification to keep your limits.",
    ),
    "kyc.level_changed": (
        "Your verification level changed",
        "You are now at verification level {to} ({level}). See your limits in Verification.",
    ),
}


@subscriber(*_MESSAGES, name="kyc.notify_client")
def notify_client(event: Event) -> None:
    user = User.objects.filter(pk=event.client_id, is_active=True).first()
    if user is None:
        return
    title, body = _MESSAGES[event.name]
    values = {"name": "", "to": "", "level": "", **event.payload}
    notification_create(
        user=user, kind=event.name, title=title, body=body.format(**values), event=event
    )


@subscriber("client.profile_changed", name="kyc.country_refresh")
def country_refresh(event: Event) -> None:
    if "country" not in event.payload.get("fields", []):
        return
    from .services import kyc_country_refresh

    user = User.objects.filter(pk=event.client_id).first()
    if user is not None:
        kyc_country_refresh(user=user)
