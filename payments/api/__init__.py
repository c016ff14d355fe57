"""The payments part of the REST API (/api/v1/): the same services and
selectors as the trader's room pages, for the mobile app.

Amounts are decimal strings in major units (``"12.50"``), never floats.
Requests that move money take an ``Idempotency-Key`` header: the same key with
the same request returns the first result, with a different request 409.
"""
