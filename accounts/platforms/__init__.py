"""Trading-platform gateways. Each fills the operations of
:class:`.base.PlatformGateway`; none moves money in the ledger (the payments
services do, and call the gateway with the same idempotency key)."""

from backoffice.providers import Registry

GATEWAYS = Registry(
    "trading platform",
    {
        "demo": "accounts.platforms.demo.DemoGateway",
        "mt5": "accounts.platforms.mt5.MT5Gateway",
        "file": "accounts.platforms.files.FileImportGateway",
    },
)


def gateway_for(platform):
    """The gateway instance for a configured :class:`~accounts.models.Platform`."""
    return GATEWAYS.get(platform.kind)(platform)
