"""Staff roles as Django groups, with the permissions each job needs."""

from django.db import migrations

ROLE_PERMISSIONS = {
    "Administrator": [],  # granted every permission after each migrate
    "Compliance": [
        "accounts.view_client",
        "accounts.change_client",
        "accounts.view_clientprofile",
        "accounts.change_clientprofile",
        "backoffice.view_event",
        "backoffice.view_notification",
        "auditlog.view_logentry",
    ],
    "Finance": [
        "accounts.view_client",
        "accounts.view_clientprofile",
        "backoffice.view_event",
    ],
    "Sales": [
        "accounts.view_client",
        "accounts.change_client",
        "accounts.view_clientprofile",
        "accounts.change_clientprofile",
        "backoffice.view_event",
    ],
    "Support": [
        "accounts.view_client",
        "accounts.view_clientprofile",
        "backoffice.view_event",
        "backoffice.view_notification",
        "auditlog.view_logentry",
    ],
}


def create_roles(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("backoffice", "0001_initial"),
        ("auditlog", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
