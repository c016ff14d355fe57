"""Staff roles: Django groups with the permissions each job needs.

The groups are created by a migration (``accounts/migrations/0002_roles.py``,
which lists each role's permissions). Later apps add their own permissions to
these groups in their own migrations with :func:`grant`. The Administrator
role holds every permission; after each ``migrate`` it is granted the
permissions that new models brought.
"""

from __future__ import annotations

ADMINISTRATOR = "Administrator"
COMPLIANCE = "Compliance"
FINANCE = "Finance"
SALES = "Sales"
SUPPORT = "Support"
ROLES = (ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT)

# Roles whose view of clients is not limited to the clients assigned to them.
ALL_CLIENTS_ROLES = (ADMINISTRATOR, COMPLIANCE, FINANCE, SUPPORT)


def grant(apps, role_permissions: dict[str, list[str]]) -> None:
    """Create the groups (if missing) and give them the named permissions.

    Usable from a data migration (pass the migration's ``apps``). Creates the
    permissions first, since Django only creates them after ``migrate``.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # create_permissions skips app configs without a models module, which
        # is how the migration state's app configs look; put back what was
        # there, or the global registry's post_migrate would skip every app.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, verbosity=0, apps=apps)
        finally:
            app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in role_permissions.items():
        group, _ = Group.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".", 1)
            permission = Permission.objects.get(
                content_type__app_label=app_label, codename=codename
            )
            group.permissions.add(permission)


def grant_administrator_everything(sender, using="default", **kwargs) -> None:
    """post_migrate: the Administrator role holds every permission there is."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.using(using).filter(name=ADMINISTRATOR).first()
    if group is not None:
        group.permissions.set(Permission.objects.using(using).all())
