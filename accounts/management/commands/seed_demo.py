from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.demo import seed_demo


class Command(BaseCommand):
    help = "Load the demo data (idempotent) and print the demo logins."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("Demo data is not loaded in production.")
        logins = seed_demo()
        width = max(len(login.email) for login in logins)
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Demo logins"))
        self.stdout.write(f"  password for all: {settings.DEMO_PASSWORD}")
        for login in logins:
            line = f"  {login.email:<{width}}  {login.role}"
            if login.totp_secret:
                line += f"  (authenticator key {login.totp_secret})"
            self.stdout.write(line)
        self.stdout.write("")
        self.stdout.write(
            "  Staff sign in at /admin/ with the password, then a code from an authenticator\n"
            "  app holding the key shown, or print the current code with:\n"
            "    .venv/bin/python manage.py demo_otp administrator@demo.test"
        )
        self.stdout.write("")
