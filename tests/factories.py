from __future__ import annotations

from datetime import date

import factory
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ClientProfile, User

TEST_PASSWORD = "Correct-Horse-Battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):
        if create and extracted is not False:
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)
        if create:
            obj.save()


class TraderFactory(UserFactory):
    """A client with a profile, verified to KYC level 3 (no limits, so that
    tests about other things are not about KYC) unless ``kyc_level`` says
    otherwise (``kyc_level=False``: not started, the lowest level)."""

    profile = factory.RelatedFactory(
        "tests.factories.ClientProfileFactory", factory_related_name="user"
    )

    @factory.post_generation
    def kyc_level(obj, create, extracted, **kwargs):
        if create and extracted is not False:
            set_kyc_level(obj, 3 if extracted is None else extracted)


class ClientProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClientProfile

    user = factory.SubFactory(UserFactory)
    date_of_birth = date(1985, 5, 17)
    country = "GB"
    phone = "+442079460958"
    address_line1 = "1 Test Street"
    city = "London"
    postal_code = "EC1A 1BB"


class StaffFactory(UserFactory):
    is_staff = True

    @factory.post_generation
    def roles(obj, create, extracted, **kwargs):
        for role in extracted or []:
            obj.groups.add(Group.objects.get(name=role))


def set_kyc_level(user: User, number: int):
    """Put the client at KYC level ``number`` (test set-up, not a decision)."""
    from kyc.models import ClientKyc, Level

    level = Level.objects.get(number=number)
    kyc, _ = ClientKyc.objects.update_or_create(user=user, defaults={"level": level})
    return kyc


def enable_totp(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def totp_code(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code an authenticator app shows for this device (now + offset)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"


def open_trading_account(user, *, type_name: str = "Standard USD", leverage: int | None = None):
    """A trading account on the built-in demo platform, opened through the
    service (the platform allocates the login). Returns the TradingAccount."""
    from accounts.models import AccountType
    from accounts.services.trading import trading_account_open

    account_type = AccountType.objects.get(platform__identifier="demo", name=type_name)
    return trading_account_open(user=user, account_type=account_type, leverage=leverage).account


def signup_data(
    email: str = "new.trader@example.com", password: str = TEST_PASSWORD, **overrides
) -> dict[str, str]:
    """What a visitor posts to /accounts/signup/ for the default registration
    flow (country, names, date of birth, phone, the three consents), with
    ``overrides`` (a value of None leaves the field out)."""
    from accounts.registration import current_versions, flow_for

    flow = flow_for(country=overrides.get("country") or "GB")
    data = {
        "email": email,
        "password1": password,
        "password2": password,
        "flow": str(flow.pk),
        "country": "GB",
        "promo_code": "",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "date_of_birth": "1990-12-10",
        "phone": "+44 20 7946 0958",
    }
    for version in current_versions(flow_id=flow.pk):
        data[f"consent_{version.document.slug}"] = str(version.pk)
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
