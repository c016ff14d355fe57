"""The IB programme's reactions to domain events (each registers itself)."""

from backoffice.events import subscriber
from backoffice.models import Event


@subscriber("client.registered", name="ib.attribute_signup")
def attribute_signup(event: Event) -> None:
    """A sign-up brought a partner's click token or promo code: attribute it."""
    from .services.referrals import referral_attribute_signup

    payload = event.payload or {}
    if event.client_id is None or not (payload.get("referral") or payload.get("campaign")):
        return
    referral_attribute_signup(
        client_id=event.client_id,
        click_token=str(payload.get("referral") or ""),
        promo_code=str(payload.get("campaign") or ""),
    )


@subscriber("deposit.completed", name="ib.cpa_on_deposit")
def cpa_on_deposit(event: Event) -> None:
    """A completed deposit may earn the client's partner their CPA (once)."""
    from .services.cpa import cpa_on_deposit as cpa

    if event.subject_type == "payments.deposit" and event.subject_id:
        cpa(int(event.subject_id))


@subscriber("deals.imported", name="ib.accrue_imported_deals")
def accrue_imported_deals(event: Event) -> None:
    """New deals: accrue their commissions (``ib.tasks.accrue_deals``).

    Enqueued inside the delivery's transaction on purpose: if the broker is
    down the delivery fails and the outbox sweeper delivers it again, where
    an on-commit enqueue would be lost. The deals are already committed (the
    event is delivered after the import's commit), so a worker may start at
    once."""
    from .tasks import accrue_deals

    payload = event.payload or {}
    first, last = payload.get("first_id"), payload.get("last_id")
    if not first or not last:
        return
    platform_id = (
        int(event.subject_id)
        if event.subject_type == "accounts.platform" and event.subject_id
        else None
    )
    accrue_deals.delay(int(first), int(last), platform_id)
