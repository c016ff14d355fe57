"""A working KYC configuration out of the box (every part editable in the
admin): four levels with limits, their requirements, an appropriateness test,
the reasons reviewers pick from, the built-in manual-review provider, a few
country rules, and the roles' permissions."""

from decimal import Decimal

from django.db import migrations

KYC_MODELS = (
    "level",
    "requirement",
    "questionnaire",
    "question",
    "countryrule",
    "reviewreason",
    "kycprovider",
)
ROLE_PERMISSIONS = {
    "Compliance": [f"kyc.{verb}_{model}" for model in KYC_MODELS for verb in ("add", "change", "view")]
    + [
        "kyc.view_clientkyc",
        "kyc.change_clientkyc",
        "kyc.view_submission",
        "kyc.review_submission",
        "kyc.view_kyc_document",
        "kyc.view_review",
        "kyc.view_levelchange",
    ],
    "Support": ["kyc.view_clientkyc", "kyc.view_submission", "kyc.view_level"],
    "Finance": ["kyc.view_clientkyc", "kyc.view_level"],
    # Sales see their own clients' verification (the admin scopes them).
    "Sales": ["kyc.view_clientkyc", "kyc.view_submission", "kyc.view_kyc_document", "kyc.view_level"],
}

LEVELS = [
    # number, name, description, deposit day/month, withdrawal day/month,
    # live accounts, withdrawals, transfers, four eyes
    (0, "Unverified", "Deposit a little and try the platform.", "1000", "2000", None, None,
     False, False, True, False),
    (1, "Basic", "Open live accounts and withdraw.", "10000", "25000", "5000", "10000",
     True, True, True, False),
    (2, "Verified", "Higher limits.", "50000", "200000", "25000", "100000",
     True, True, True, False),
    (3, "Enhanced", "No limits; approved by two reviewers.", None, None, None, None,
     True, True, True, True),
]

QUESTIONS = [
    # name, label, kind, choices, scores
    ("experience", "How long have you traded leveraged products (CFDs, Forex)?", "choice",
     "none|Never\nunder_1|Less than a year\n1_3|1 to 3 years\nover_3|More than 3 years",
     {"none": 0, "under_1": 1, "1_3": 2, "over_3": 3}),
    ("leverage", "With leverage of 1:100, a 1 % move against your position loses…", "choice",
     "1|1 % of the margin\n10|10 % of the margin\n100|100 % of the margin",
     {"1": 0, "10": 0, "100": 2}),
    ("stop_out", "What happens when your margin level falls below the stop-out level?",
     "choice",
     "nothing|Nothing\nclosed|Positions are closed, starting with the largest loss\n"
     "deposit|The broker deposits money for you",
     {"nothing": 0, "closed": 2, "deposit": 0}),
    ("risk_understood", "I understand that I can lose all the money I deposit.", "checkbox",
     "", {"true": 1}),
]

REQUIREMENTS = [
    # level, name, kind, kinds, back, max age, expiry, questionnaire?, only for rules, order
    (1, "Identity document", "document", ["passport", "national_id", "driving_licence"],
     True, None, True, False, False, 10),
    (1, "Appropriateness test", "questionnaire", [], True, None, False, True, False, 20),
    (1, "Source of funds (high-risk countries)", "document", ["source_of_funds"],
     False, 365, False, False, True, 30),
    (2, "Proof of address", "document", ["proof_of_address"], False, 90, False, False, False, 10),
    (2, "Selfie with your document", "document", ["selfie"], False, None, False, False, False, 20),
    (3, "Source of funds", "document", ["source_of_funds"], False, 365, False, False, False, 10),
]

REASONS = [
    ("unreadable", "The document is not readable: blurred, dark or cut off.", "resubmit", 10),
    ("expired", "The document has expired.", "resubmit", 20),
    ("name_mismatch", "The name does not match your profile.", "both", 30),
    ("too_old", "The document is older than we can accept.", "resubmit", 40),
    ("wrong_document", "This is not the document we asked for.", "resubmit", 50),
    ("both_sides", "We need both sides of the card.", "resubmit", 60),
    ("suspected_forgery", "We could not accept this document.", "reject", 70),
    ("failed_test", "The answers show the product is not appropriate for you.", "reject", 80),
    ("other", "Another reason (see the note).", "both", 90),
]

COUNTRIES = [
    # country, blocked, high risk, note
    ("KP", True, True, "Sanctioned"),
    ("IR", True, True, "Sanctioned"),
    ("SY", True, True, "Sanctioned"),
    ("CU", True, True, "Sanctioned"),
    ("AF", False, True, "High risk (FATF)"),
    ("MM", False, True, "High risk (FATF)"),
    ("NG", False, True, "Increased monitoring (FATF)"),
]


def add_kyc_defaults(apps, schema_editor):
    Level = apps.get_model("kyc", "Level")
    Requirement = apps.get_model("kyc", "Requirement")
    Questionnaire = apps.get_model("kyc", "Questionnaire")
    Question = apps.get_model("kyc", "Question")
    ReviewReason = apps.get_model("kyc", "ReviewReason")
    KycProvider = apps.get_model("kyc", "KycProvider")
    CountryRule = apps.get_model("kyc", "CountryRule")
    Currency = apps.get_model("payments", "Currency")
    if not Currency.objects.filter(code="USD").exists():
        return
    KycProvider.objects.get_or_create(
        identifier="manual", defaults={"kind": "manual", "name": "Manual review (built-in)"}
    )
    for code, text, use, order in REASONS:
        ReviewReason.objects.get_or_create(
            code=code, defaults={"text": text, "use": use, "order": order}
        )
    if Level.objects.exists():
        return  # configured already: never overwrite staff's work
    levels = {}

    def limit(value):
        return Decimal(value) if value is not None else None

    for (number, name, description, dd, dm, wd, wm, live, withdraw, transfer, four) in LEVELS:
        levels[number] = Level.objects.create(
            number=number,
            name=name,
            description=description,
            limits_currency_id="USD",
            deposit_daily_limit=limit(dd),
            deposit_monthly_limit=limit(dm),
            withdrawal_daily_limit=limit(wd),
            withdrawal_monthly_limit=limit(wm),
            allows_live_accounts=live,
            allows_withdrawals=withdraw,
            allows_transfers=transfer,
            four_eyes=four,
        )
    test = Questionnaire.objects.create(
        name="Appropriateness test",
        description="A few questions about your trading experience, as the regulator asks.",
        pass_mark=5,
        approve_on_pass=True,
    )
    for order, (name, label, kind, choices, scores) in enumerate(QUESTIONS, start=1):
        Question.objects.create(
            questionnaire=test,
            name=name,
            label=label,
            kind=kind,
            choices=choices,
            scores=scores,
            required=True,
            order=order * 10,
        )
    extra = None
    for (level, name, kind, kinds, back, max_age, expiry, questionnaire, only_rules,
         order) in REQUIREMENTS:
        requirement = Requirement.objects.create(
            level=levels[level],
            name=name,
            kind=kind,
            document_kinds=kinds,
            back_side_required=back,
            max_age_days=max_age,
            expiry_required=expiry,
            questionnaire=test if questionnaire else None,
            only_for_country_rules=only_rules,
            order=order,
        )
        if only_rules:
            extra = requirement
    for country, blocked, high_risk, note in COUNTRIES:
        rule, created = CountryRule.objects.get_or_create(
            country=country, defaults={"blocked": blocked, "high_risk": high_risk, "note": note}
        )
        if created and high_risk and not blocked and extra is not None:
            rule.extra_requirements.add(extra)


def grant_kyc_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("kyc", "0001_kyc_constructor"),
        ("payments", "0010_trading_transfer"),
        ("accounts", "0009_registration_defaults"),
    ]

    operations = [
        migrations.RunPython(add_kyc_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_kyc_permissions, migrations.RunPython.noop),
    ]
