"""The IB programme's reactions to domain events (each registers itself)."""
