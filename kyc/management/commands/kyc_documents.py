from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from kyc import documents


class Command(BaseCommand):
    help = (
        "Maintain the encrypted KYC document storage: --reencrypt rewrites every file "
        "under the first key of KYC_DOCUMENT_KEYS (the last step of a key rotation), "
        "--prune-orphans deletes stored files that no document row names."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reencrypt", action="store_true")
        parser.add_argument("--prune-orphans", action="store_true")
        parser.add_argument(
            "--older-than-hours",
            type=float,
            default=1.0,
            help="With --prune-orphans: only files written longer ago than this.",
        )

    def handle(self, *args, reencrypt: bool, prune_orphans: bool, **options):
        if not (reencrypt or prune_orphans):
            raise CommandError("Say what to do: --reencrypt and/or --prune-orphans.")
        if reencrypt:
            count = documents.documents_reencrypt()
            self.stdout.write(f"Re-encrypted {count} document file(s) under the current key.")
        if prune_orphans:
            older = timedelta(hours=options["older_than_hours"])
            count = documents.documents_orphans_delete(older_than=older)
            self.stdout.write(f"Deleted {count} orphan file(s).")
