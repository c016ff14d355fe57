"""The IB programme's settings row and the roles' permissions."""

from django.db import migrations

IB_CONFIG = ("plan", "planrule", "material", "settings")
ROLE_PERMISSIONS = {
    "Compliance": [
        "ib.view_partner",
        "ib.change_partner",
        "ib.approve_partner",
        "ib.move_partner",
        "ib.view_referral",
        "ib.view_referrallink",
        "ib.view_material",
        "ib.view_plan",
        "ib.view_commission",
        "ib.view_payout",
    ],
    "Sales": [
        "ib.view_partner",
        "ib.add_partner",
        "ib.change_partner",
        "ib.approve_partner",
        "ib.move_partner",
        "ib.view_referral",
        "ib.view_plan",
        "ib.view_referrallink",
        "ib.view_commission",
        "ib.view_material",
        "ib.add_material",
        "ib.change_material",
    ],
    "Finance": [f"ib.{verb}_{model}" for model in IB_CONFIG for verb in ("add", "change", "view")]
    + [
        "ib.view_partner",
        "ib.change_partner",
        "ib.pay_partner",
        "ib.view_commission",
        "ib.view_payout",
        "ib.view_referral",
        "ib.view_referrallink",
        "ib.view_planversion",
    ],
    "Support": ["ib.view_partner", "ib.view_referral", "ib.view_commission", "ib.view_payout"],
}


def add_ib_defaults(apps, schema_editor):
    Settings = apps.get_model("ib", "Settings")
    Settings.objects.get_or_create(pk=1)


def grant_ib_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("ib", "0001_initial"), ("accounts", "0010_instrument_spread_markup")]

    operations = [
        migrations.RunPython(add_ib_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_ib_permissions, migrations.RunPython.noop),
    ]
