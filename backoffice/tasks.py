from celery import shared_task

from . import services


@shared_task(
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
    acks_late=True,
)
def outbox_deliver(event_id: int, subscriber_id: str) -> bool:
    return services.event_deliver(event_id=event_id, subscriber_id=subscriber_id)


@shared_task
def outbox_sweep() -> int:
    return services.outbox_sweep()
