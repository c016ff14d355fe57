"""The KYC app's REST endpoints, included at /api/v1/ by ``backoffice.api_urls``."""
