"""Fewer indexes on the ledger's hot tables: each is written on every posting.
Entries keep (account, id) and (account, time, id), which also serve the
account's foreign key; kind, actor and currency are not searched."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0007_ledger_post_function"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="journaltransaction",
            name="kind",
            field=models.CharField(max_length=32),
        ),
        migrations.AlterField(
            model_name="journaltransaction",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="payments.ledgeraccount",
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="currency",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="payments.currency",
            ),
        ),
    ]
