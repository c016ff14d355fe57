"""Permissions to adjust wallets and reverse transactions by hand, and what
each staff role may see and do in the ledger. Administrator holds every
permission already (granted after each migrate)."""

from django.db import migrations

ROLE_PERMISSIONS = {
    "Finance": [
        "payments.view_currency",
        "payments.view_ledgeraccount",
        "payments.view_journaltransaction",
        "payments.view_entry",
        "payments.adjust_wallet",
        "payments.reverse_transaction",
    ],
    "Compliance": [
        "payments.view_ledgeraccount",
        "payments.view_journaltransaction",
        "payments.view_entry",
    ],
    "Support": [
        "payments.view_ledgeraccount",
        "payments.view_journaltransaction",
        "payments.view_entry",
    ],
}


def grant_ledger_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


def revoke_ledger_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in ROLE_PERMISSIONS.items():
        group = Group.objects.filter(name=role).first()
        if group is None:
            continue
        codenames = [name.split(".", 1)[1] for name in names]
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="payments", codename__in=codenames)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_currencies_and_ledger_triggers"),
        ("accounts", "0002_roles"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="journaltransaction",
            options={
                "ordering": ["-id"],
                "permissions": [("reverse_transaction", "Can reverse a ledger transaction")],
            },
        ),
        migrations.AlterModelOptions(
            name="ledgeraccount",
            options={"permissions": [("adjust_wallet", "Can credit or debit a wallet by hand")]},
        ),
        migrations.RunPython(grant_ledger_permissions, revoke_ledger_permissions),
    ]
