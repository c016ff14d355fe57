from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test.utils import override_settings

from backoffice.demo import seeders


class Command(BaseCommand):
    help = "Load the demo data of every app (idempotent) and print the demo logins."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("Demo data is not loaded in production.")
        lines: list[str] = []
        # The demo's people are made up: the notifications their story causes
        # (KYC decisions, ...) stay in the room and are not e-mailed, which
        # would bury the logins printed below. Sent after commit, hence around it.
        quiet = override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend")
        with quiet, transaction.atomic():
            for _name, seeder in seeders():
                lines.extend(seeder())
        self.stdout.write("")
        for line in lines:
            self.stdout.write(line)
        self.stdout.write("")
