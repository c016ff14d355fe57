from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Platform, TradingAccount
from accounts.platforms import simulator
from accounts.platforms.base import PlatformError
from accounts.services.trading import trading_account_refresh


class Command(BaseCommand):
    help = (
        "Trade the demo platform's accounts that hold money with the market simulator "
        "(deals backdated over the last days), then pull the new deals into the trading "
        "history. Not in production."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--deals", type=int, default=200, help="Deals per account (default 200)."
        )
        parser.add_argument(
            "--days", type=float, default=90, help="Over this many days before now (default 90)."
        )
        parser.add_argument(
            "--login",
            dest="logins",
            action="extend",
            nargs="+",
            default=None,
            metavar="LOGIN",
            help="Only these accounts (default: every account that holds money).",
        )
        parser.add_argument(
            "--platform",
            help="The identifier of one demo platform (default: every enabled one).",
        )
        parser.add_argument("--seed", help="Draw the same deals again for the same accounts.")
        parser.add_argument(
            "--no-sync",
            action="store_true",
            help="Leave the deals on the platform (no deal sync afterwards).",
        )

    def handle(self, *args, deals, days, logins, platform, seed, no_sync, **options):
        if settings.PRODUCTION:
            raise CommandError("The market simulator does not run in production.")
        if deals < 0:
            raise CommandError("--deals cannot be negative.")
        if days <= 0:
            raise CommandError("--days must be positive.")
        platforms = Platform.objects.filter(kind="demo")
        if platform:
            platforms = platforms.filter(identifier=platform)
            if not platforms.exists():
                raise CommandError(f"There is no demo platform {platform!r}.")
        else:
            platforms = platforms.filter(enabled=True)
        if not platforms.exists():
            raise CommandError("There is no enabled demo platform.")
        for target in platforms.order_by("pk"):
            result = simulator.run(
                platform=target, accounts=logins, counts=deals, days=days, seed=seed
            )
            self.stdout.write(
                f"{target.name}: {_n(result.deals, 'deal')} on {_n(result.accounts, 'account')} "
                f"over {_n(days, 'day')} in {result.seconds:.1f} s ({result.rate:,.0f} deals/s)"
                + (f"; {result.stop_outs} stop-outs" if result.stop_outs else "")
                + "."
            )
            for reason in result.skipped:
                self.stdout.write(f"  skipped {reason}")
            if logins and not result.accounts:
                self.stdout.write("  (none of the logins given holds money on this platform)")
            if no_sync or not result.deals:
                continue
            try:
                synced = simulator.deals_sync(target)
            except PlatformError as exc:
                raise CommandError(f"The deal sync failed: {exc}") from exc
            if synced is None:
                self.stdout.write("  No deal sync installed: the deals stay on the platform.")
                continue
            accounts = TradingAccount.objects.filter(
                platform=target, status=TradingAccount.ACTIVE
            ).select_related("platform")
            if logins:
                accounts = accounts.filter(login__in=logins)
            refreshed = sum(trading_account_refresh(account=a) for a in accounts.iterator())
            self.stdout.write(
                f"  Into the trading history: {synced.describe()}; "
                f"balances of {_n(refreshed, 'account')} refreshed."
            )


def _n(count: float, noun: str) -> str:
    number = f"{int(count):,}" if count == int(count) else f"{count:g}"
    return f"{number} {noun}" + ("" if count == 1 else "s")
