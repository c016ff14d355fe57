from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backoffice.demo import seeders


class Command(BaseCommand):
    help = "Load the demo data of every app (idempotent) and print the demo logins."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("Demo data is not loaded in production.")
        lines: list[str] = []
        with transaction.atomic():
            for _name, seeder in seeders():
                lines.extend(seeder())
        self.stdout.write("")
        for line in lines:
            self.stdout.write(line)
        self.stdout.write("")
