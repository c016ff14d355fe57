"""Views of the trader's room for money, one module per area (wallets,
deposits, withdrawals, conversions); the PSP webhooks are in :mod:`.webhooks`."""
