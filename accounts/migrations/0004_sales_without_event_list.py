"""Sales sees only its own clients: the event list of the admin shows every
client's events, so Sales reads a client's activity on the client's page
only."""

from django.db import migrations


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    sales = Group.objects.filter(name="Sales").first()
    permission = Permission.objects.filter(
        content_type__app_label="backoffice", codename="view_event"
    ).first()
    if sales is not None and permission is not None:
        sales.permissions.remove(permission)


def grant_back(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, {"Sales": ["backoffice.view_event"]})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_user_security_stamp")]

    operations = [migrations.RunPython(revoke, grant_back)]
