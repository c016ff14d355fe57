"""The built-in demo platform: a trading platform that lives in our own
database (``DemoPlatform*`` tables), so that the back office runs with no
outside system. It behaves like a real one at this boundary: logins it
allocates, passwords it keeps (hashed), balance operations findable by their
key, free margin checked on debits, deals read after a cursor. The market
simulator (``accounts.platforms.simulator``) trades its accounts."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.db.models import F

from backoffice.money import MoneyError, from_minor, to_minor

from ..models import DemoPlatformAccount, DemoPlatformDeal, DemoPlatformOperation
from .base import AccountState, DealRecord, DealsPage, PlatformError, PlatformGateway

FIRST_LOGIN = 500_000


class DemoGateway(PlatformGateway):
    label = "Demo platform (built-in, in this database)"

    def _account(self, login: str, *, lock: bool = False) -> DemoPlatformAccount:
        qs = DemoPlatformAccount.objects.filter(platform=self.platform, login=login)
        if lock:
            qs = qs.select_for_update()
        account = qs.first()
        if account is None:
            raise PlatformError(f"No account {login} on the platform.", permanent=True)
        return account

    @transaction.atomic
    def account_create(
        self,
        *,
        group,
        currency,
        currency_digits,
        leverage,
        name,
        email,
        password,
        investor_password,
    ) -> str:
        account = DemoPlatformAccount.objects.create(
            platform=self.platform,
            login=f"new-{uuid.uuid4().hex[:24]}",
            name=name,
            group=group,
            currency=currency,
            currency_digits=currency_digits,
            leverage=leverage,
            password_hash=make_password(password),
        )
        account.login = str(FIRST_LOGIN + account.pk)
        account.save(update_fields=["login"])
        return account.login

    def leverage_change(self, *, login: str, leverage: int) -> None:
        if leverage <= 0:
            raise PlatformError("Leverage must be positive.", permanent=True)
        updated = DemoPlatformAccount.objects.filter(platform=self.platform, login=login).update(
            leverage=leverage
        )
        if not updated:
            raise PlatformError(f"No account {login} on the platform.", permanent=True)

    def password_change(self, *, login: str, password: str) -> None:
        updated = DemoPlatformAccount.objects.filter(platform=self.platform, login=login).update(
            password_hash=make_password(password)
        )
        if not updated:
            raise PlatformError(f"No account {login} on the platform.", permanent=True)

    def balance_operation(self, *, login: str, amount: Decimal, comment: str, key: str) -> str:
        existing = self._ticket(login, key)
        if existing is not None:
            return existing  # the same operation again: applied once
        try:
            with transaction.atomic():
                account = self._account(login, lock=True)
                try:
                    minor = to_minor(amount, account.currency_digits)
                except MoneyError as exc:
                    raise PlatformError(str(exc), permanent=True) from exc
                if minor == 0:
                    raise PlatformError("The amount cannot be zero.", permanent=True)
                free = account.balance + account.floating - account.margin
                if minor < 0 and -minor > free:
                    raise PlatformError(
                        f"Not enough free margin: {from_minor(free, account.currency_digits)} "
                        f"{account.currency} available.",
                        permanent=True,
                    )
                operation = DemoPlatformOperation.objects.create(
                    platform=self.platform,
                    login=login,
                    key=key,
                    amount=minor,
                    comment=comment[:100],
                )
                DemoPlatformAccount.objects.filter(pk=account.pk).update(
                    balance=F("balance") + minor
                )
        except IntegrityError:
            # The same key, concurrently: the other request applied it.
            found = self._ticket(login, key)
            if found is None:
                raise
            return found
        return str(operation.pk)

    def balance_operation_find(self, *, login: str, key: str) -> str | None:
        return self._ticket(login, key)

    def _ticket(self, login: str, key: str) -> str | None:
        pk = (
            DemoPlatformOperation.objects.filter(platform=self.platform, key=key, login=login)
            .values_list("pk", flat=True)
            .first()
        )
        return None if pk is None else str(pk)

    def account_state(self, *, login: str) -> AccountState:
        account = self._account(login)
        digits = account.currency_digits
        equity = account.balance + account.floating
        level = (
            (Decimal(equity) * 100 / Decimal(account.margin)).quantize(Decimal("0.01"))
            if account.margin
            else None
        )
        return AccountState(
            balance=from_minor(account.balance, digits),
            equity=from_minor(equity, digits),
            margin=from_minor(account.margin, digits),
            free_margin=from_minor(equity - account.margin, digits),
            margin_level=level,
            leverage=account.leverage,
        )

    def deals_since(self, cursor: str, *, limit: int = 10_000) -> DealsPage:
        after = int(cursor or 0)
        rows = list(
            DemoPlatformDeal.objects.filter(platform=self.platform, id__gt=after)
            .order_by("id")
            .values_list(
                "id",
                "login",
                "symbol",
                "side",
                "volume",
                "open_time",
                "close_time",
                "open_price",
                "close_price",
                "profit",
                "commission",
                "swap",
            )[: limit + 1]
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if not rows:
            return DealsPage([], cursor=cursor, more=False)
        digits = dict(
            DemoPlatformAccount.objects.filter(
                platform=self.platform, login__in={r[1] for r in rows}
            ).values_list("login", "currency_digits")
        )
        deals = [
            DealRecord(
                ticket=r[0],
                login=r[1],
                symbol=r[2],
                side=r[3],
                volume=r[4],
                open_time=r[5],
                close_time=r[6],
                open_price=r[7],
                close_price=r[8],
                profit=from_minor(r[9], digits.get(r[1], 2)),
                commission=from_minor(r[10], digits.get(r[1], 2)),
                swap=from_minor(r[11], digits.get(r[1], 2)),
            )
            for r in rows
        ]
        return DealsPage(deals, cursor=str(rows[-1][0]), more=more)
