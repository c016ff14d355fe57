"""PSP adapters. Each fills the hooks of :class:`.base.PaymentProviderBase`;
none moves money (the services do, through the ledger)."""

from backoffice.providers import Registry

PSPS = Registry(
    "PSP",
    {
        "manual": "payments.providers.manual.ManualWireProvider",
        "sandbox": "payments.providers.sandbox.SandboxProvider",
        "stripe": "payments.providers.stripe.StripeProvider",
        "btcpay": "payments.providers.btcpay.BTCPayProvider",
    },
)

RATE_PROVIDERS = Registry(
    "rate provider",
    {
        "manual": "payments.providers.rates.ManualRates",
        "ecb": "payments.providers.rates.ECBRates",
        "crypto": "payments.providers.rates.CryptoFeedRates",
    },
)


def psp_for(provider):
    """The adapter instance for a configured :class:`~payments.models.PaymentProvider`."""
    return PSPS.get(provider.kind)(provider)
