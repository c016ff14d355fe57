"""KYC provider adapters. Each fills the hooks of :class:`.base.KycProviderBase`;
none writes a model (the services do: ``kyc.services.providers``)."""

from backoffice.providers import Registry

KYC_PROVIDERS = Registry(
    "KYC provider",
    {
        "manual": "kyc.providers.manual.ManualReviewProvider",
        "sumsub": "kyc.providers.sumsub.SumsubProvider",
    },
)


def provider_for(provider):
    """The adapter instance for a configured :class:`~kyc.models.KycProvider`."""
    return KYC_PROVIDERS.get(provider.kind)(provider)
