import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from accounts import roles, services
from accounts.demo import seed_demo
from accounts.models import ClientProfile, User
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def test_roles_exist_with_their_permissions():
    names = set(Group.objects.values_list("name", flat=True))
    assert set(roles.ROLES) <= names
    support = set(
        Group.objects.get(name=roles.SUPPORT).permissions.values_list("codename", flat=True)
    )
    assert "view_client" in support
    assert not {c for c in support if c.startswith(("change_", "add_", "delete_"))}
    admin_perms = Group.objects.get(name=roles.ADMINISTRATOR).permissions.count()
    assert admin_perms == Permission.objects.count()


def test_seed_demo_is_idempotent(capsys):
    call_command("seed_demo")
    counts = (User.objects.count(), ClientProfile.objects.count())
    call_command("seed_demo")
    assert (User.objects.count(), ClientProfile.objects.count()) == counts
    out = capsys.readouterr().out
    assert "administrator@demo.test" in out and "demo_otp" in out
    sales = User.objects.get(email="sales@demo.test")
    assert sales.groups.filter(name=roles.SALES).exists()
    assert ClientProfile.objects.filter(manager=sales).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_demo_story_notifies_in_the_room_but_sends_no_mail(mailoutbox):
    from backoffice.models import Notification

    call_command("seed_demo")  # commits: notifications are made after commit
    assert Notification.objects.filter(kind="kyc.level_changed").exists()
    assert mailoutbox == []


def test_demo_staff_sign_in_with_the_printed_code(client, capsys, settings):
    settings.DEMO_PASSWORD = TEST_PASSWORD
    seed_demo()
    call_command("demo_otp", "support@demo.test")
    code = capsys.readouterr().out.strip()
    client.post("/accounts/login/", {"login": "support@demo.test", "password": TEST_PASSWORD})
    assert client.post("/accounts/2fa/", {"code": code}).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_blocked_client_cannot_sign_in(client, trader):
    admin_user = User.objects.create_user("boss@example.com", TEST_PASSWORD, is_staff=True)
    services.client_set_active(actor=admin_user, user=trader, active=False)
    response = client.post("/accounts/login/", {"login": trader.email, "password": TEST_PASSWORD})
    assert "_auth_user_id" not in client.session
    assert response.status_code in (200, 302)
    assert client.get("/room/").status_code == 302
