"""A default sign-up flow, the three legal documents in a first version, and
the Compliance role's permissions on the registration constructor."""

from django.db import migrations

ROLE_PERMISSIONS = {
    "Compliance": [
        f"accounts.{verb}_{model}"
        for model in (
            "registrationflow",
            "registrationfield",
            "legaldocument",
            "legaldocumentversion",
        )
        for verb in ("add", "change", "delete", "view")
    ]
    + ["accounts.view_consent"],
    "Support": ["accounts.view_registrationflow", "accounts.view_consent"],
    "Sales": ["accounts.view_registrationflow", "accounts.view_consent"],
}

DOCUMENTS = [
    (
        "terms",
        "terms",
        "Client agreement (terms and conditions)",
        "These terms govern your use of the trading services. Replace this text with "
        "your own client agreement before you go live.",
    ),
    (
        "privacy",
        "privacy",
        "Privacy policy",
        "How we collect, use and keep your personal data. Replace this text with your "
        "own privacy policy before you go live.",
    ),
    (
        "risk_disclosure",
        "risk-disclosure",
        "Risk disclosure",
        "Trading leveraged products such as CFDs and Forex carries a high level of risk "
        "and may not be suitable for all investors. You can lose more than your deposit.",
    ),
]

FIELDS = [
    # (step, order, profile field, label, required)
    (1, 10, "country", "Country of residence", True),
    (2, 10, "first_name", "First name", True),
    (2, 20, "last_name", "Last name", True),
    (2, 30, "date_of_birth", "Date of birth", True),
    (2, 40, "phone", "Phone", True),
]


def add_registration_defaults(apps, schema_editor):
    LegalDocument = apps.get_model("accounts", "LegalDocument")
    LegalDocumentVersion = apps.get_model("accounts", "LegalDocumentVersion")
    RegistrationFlow = apps.get_model("accounts", "RegistrationFlow")
    RegistrationField = apps.get_model("accounts", "RegistrationField")
    documents = []
    for kind, slug, title, body in DOCUMENTS:
        document, _ = LegalDocument.objects.get_or_create(
            slug=slug, defaults={"kind": kind, "title": title}
        )
        LegalDocumentVersion.objects.get_or_create(
            document=document, version="1.0", defaults={"body": body}
        )
        documents.append(document)
    if RegistrationFlow.objects.filter(is_default=True).exists():
        return
    flow = RegistrationFlow.objects.create(name="Default sign-up", is_default=True)
    flow.documents.set(documents)
    for step, order, field, label, required in FIELDS:
        RegistrationField.objects.create(
            flow=flow,
            name=field,
            profile_field=field,
            label=label,
            kind="date" if field == "date_of_birth" else "text",
            required=required,
            step=step,
            order=order,
        )


def grant_registration_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0008_registration_constructor")]

    operations = [
        migrations.RunPython(add_registration_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_registration_permissions, migrations.RunPython.noop),
    ]
