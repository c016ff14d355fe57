"""Shared by the deposit and webhook tests: a local HTTP server standing in
for an outside system at the network boundary, and small builders."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from backoffice.secrets import encrypt
from payments.models import Deposit, PaymentMethod, PaymentProvider
from payments.services import wallet_open
from payments.services.deposits import deposit_create, deposit_start


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)


# handler(method, path, headers, body) -> (status, json-able body)
Handler = Callable[[str, str, dict, bytes], tuple[int, object]]


@contextmanager
def fake_server(handler: Handler) -> Iterator[FakeServer]:
    """An HTTP server on 127.0.0.1 answering with ``handler``, recording
    every request."""
    server_state = FakeServer(url="")

    class _Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            server_state.requests.append(Recorded(self.command, self.path, headers, body))
            status, payload = handler(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_test")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


def provider_with(kind: str, identifier: str, *, settings=None, secrets=None) -> PaymentProvider:
    return PaymentProvider.objects.create(
        identifier=identifier,
        kind=kind,
        name=identifier.capitalize(),
        settings=settings or {},
        secrets=encrypt(secrets or {}),
    )


def method_for(provider: PaymentProvider, currencies=("USD",), **extra) -> PaymentMethod:
    method = PaymentMethod.objects.create(
        provider=provider, name=extra.pop("name", f"{provider.name} method"), **extra
    )
    method.currencies.set(currencies)
    return method


def deposit_for(user, method: PaymentMethod, amount: str, currency: str = "USD") -> Deposit:
    wallet = wallet_open(user=user, currency=currency)
    return deposit_create(user=user, wallet=wallet, method=method, amount=Decimal(amount))


def started(user, method: PaymentMethod, amount: str, currency: str = "USD") -> Deposit:
    deposit = deposit_for(user, method, amount, currency)
    deposit_start(deposit=deposit, return_url="http://testserver/room/wallets/deposit/x/")
    deposit.refresh_from_db()
    return deposit


def wallet_balance(deposit: Deposit) -> int:
    deposit.wallet.refresh_from_db()
    return deposit.wallet.balance
