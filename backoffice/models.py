"""Tables shared by every app: the domain event outbox, notifications, branding."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.utils import timezone


class Event(models.Model):
    """A domain event, written in the same transaction as the change behind it.

    After commit every subscriber of ``name`` runs as a Celery task; the sweeper
    re-dispatches what was not delivered. The rows of one client are also that
    client's activity timeline.
    """

    name = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=64, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The client the event concerns, for the activity timeline.",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    payload = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)
    # When the sweeper last (re)dispatched it; drives the re-dispatch delay.
    dispatched_at = models.DateTimeField(default=timezone.now)
    # Set once every subscriber has a delivery record.
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["client", "-created_at"], name="event_client_timeline"),
            models.Index(fields=["subject_type", "subject_id"], name="event_subject"),
            models.Index(
                fields=["dispatched_at"],
                condition=models.Q(completed_at__isnull=True),
                name="event_pending",
            ),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class EventDelivery(models.Model):
    """Proof that one subscriber handled one event: at most one per pair.

    The row is written in the same transaction as the subscriber's own changes,
    so a subscriber that fails leaves no row and is tried again.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.CharField(max_length=128)
    delivered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscriber"], name="one_delivery_per_subscriber"
            )
        ]
        verbose_name_plural = "event deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} → {self.subscriber}"


class Notification(models.Model):
    """A message to a user, shown in their room and optionally sent by e-mail."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="notification_user_recent")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


color_validator = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour like #1a73e8.")


class Brand(models.Model):
    """White-label branding of the room and e-mails. One row."""

    CACHE_KEY = "backoffice:brand:v1"

    name = models.CharField(max_length=100, default="Back office")
    logo = models.ImageField(upload_to="brand/", blank=True)
    primary_color = models.CharField(max_length=7, default="#1f4fd1", validators=[color_validator])
    accent_color = models.CharField(max_length=7, default="#0f9d76", validators=[color_validator])
    text_color = models.CharField(max_length=7, default="#1b2330", validators=[color_validator])
    background_color = models.CharField(
        max_length=7, default="#f4f6fa", validators=[color_validator]
    )
    support_email = models.EmailField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "brand"
        verbose_name_plural = "brand"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        from .selectors import brand_forget

        self.pk = 1
        super().save(*args, **kwargs)
        transaction.on_commit(brand_forget)
