"""People: users (e-mail is the login), client profiles, staff roles."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_countries.fields import CountryField
from phonenumber_field.modelfields import PhoneNumberField


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


def new_security_stamp() -> str:
    return secrets.token_hex(16)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField("e-mail address", unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(
        default=False, help_text="Staff can sign in to the administration."
    )
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Part of every session's auth hash: changing it signs out the user's
    # other sessions (see accounts.services.sessions_invalidate_others).
    security_stamp = models.CharField(max_length=32, default=new_security_stamp, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = "user"
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    def get_short_name(self) -> str:
        return self.first_name or self.email

    def _get_session_auth_hash(self, secret=None) -> str:
        # Django's hash covers the password only; ours also covers the
        # security stamp, rotated when two-factor authentication changes.
        return salted_hmac(
            "accounts.User.get_session_auth_hash",
            f"{self.password}:{self.security_stamp}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()


class ClientManager(UserManager):
    def get_queryset(self):
        return super().get_queryset().filter(is_staff=False)


class Client(User):
    """A trader, as staff manage them in the admin."""

    objects = ClientManager()

    class Meta:
        proxy = True
        verbose_name = "client"
        permissions = [("assign_manager", "Can assign clients to a manager")]


class StaffManager(UserManager):
    def get_queryset(self):
        return super().get_queryset().filter(is_staff=True)


class StaffUser(User):
    objects = StaffManager()

    class Meta:
        proxy = True
        verbose_name = "staff user"


class ClientProfile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    date_of_birth = models.DateField(null=True, blank=True)
    country = CountryField(blank=True, help_text="Country of residence.")
    phone = PhoneNumberField(blank=True)
    address_line1 = models.CharField("address", max_length=200, blank=True)
    address_line2 = models.CharField("address (line 2)", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField("state or region", max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    language = models.CharField(max_length=10, choices=settings.LANGUAGES, default="en")
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_clients",
        limit_choices_to={"is_staff": True},
        help_text="The staff member (sales manager) the client is assigned to.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    REQUIRED_FOR_COMPLETE = (
        "date_of_birth",
        "country",
        "phone",
        "address_line1",
        "city",
        "postal_code",
    )

    class Meta:
        verbose_name = "client profile"

    def __str__(self) -> str:
        return f"Profile of {self.user_id}"

    @property
    def is_complete(self) -> bool:
        names = bool(self.user.first_name and self.user.last_name)
        return names and all(getattr(self, f) for f in self.REQUIRED_FOR_COMPLETE)
