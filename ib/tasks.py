"""Celery tasks of the IB programme (accrual, settlements, payouts)."""
