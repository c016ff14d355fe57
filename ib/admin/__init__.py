"""The IB programme in the admin: each part registers its models in its own module."""
