"""Reactions of the accounts app to domain events."""

from backoffice.events import subscriber
from backoffice.models import Event
from backoffice.services import notification_create

from .models import User

_MESSAGES = {
    "security.2fa_enabled": (
        "Two-factor authentication is on",
        "Two-factor authentication was enabled on your account. From now on every sign-in "
        "asks for a code from your authenticator app. If this was not you, contact support "
        "at once.",
    ),
    "security.2fa_disabled": (
        "Two-factor authentication is off",
        "Two-factor authentication was disabled on your account. If this was not you, "
        "change your password and contact support at once.",
    ),
    "client.email_confirmed": (
        "Welcome",
        "Your e-mail address is confirmed. Complete your profile and secure your account "
        "with two-factor authentication from your room.",
    ),
}


@subscriber(*_MESSAGES, name="accounts.notify_client")
def notify_client(event: Event) -> None:
    """Tell the client, in the room and by e-mail, about changes to their account."""
    user = User.objects.filter(pk=event.client_id, is_active=True).first()
    if user is None:
        return
    title, body = _MESSAGES[event.name]
    notification_create(user=user, kind=event.name, title=title, body=body, event=event)
