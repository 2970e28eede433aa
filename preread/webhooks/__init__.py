"""Standard Webhooks (https://www.standardwebhooks.com) for finished reads: signing, and the
deliverer that empties the persisted outbox of :mod:`preread.store.webhooks`.

Typical use::

    store = WebhookStore(engine)
    webhook, secret = store.create("tenant-a", "https://ris.example.org/hooks/preread")
    deliverer = Deliverer(store, httpx.Client(), timeout_s=settings.webhook_timeout_s)
    deliverer.start(settings.webhook_interval_s)       # … deliverer.stop() at shutdown

A receiver checks each message with :func:`verify` (or any Standard Webhooks library).
"""

from preread.store.webhooks import (
    EVENT_TYPES,
    DeliveryNotFoundError,
    DeliveryRecord,
    DeliveryState,
    DeliveryStateError,
    InvalidWebhookError,
    WebhookError,
    WebhookNotFoundError,
    WebhookRecord,
    WebhookStore,
)
from preread.webhooks.delivery import RETRY_SCHEDULE_S, Deliverer, DeliveryStats
from preread.webhooks.signing import SignatureError, new_secret, sign, verify

__all__ = [
    "EVENT_TYPES",
    "RETRY_SCHEDULE_S",
    "Deliverer",
    "DeliveryNotFoundError",
    "DeliveryRecord",
    "DeliveryState",
    "DeliveryStateError",
    "DeliveryStats",
    "InvalidWebhookError",
    "SignatureError",
    "WebhookError",
    "WebhookNotFoundError",
    "WebhookRecord",
    "WebhookStore",
    "new_secret",
    "sign",
    "verify",
]
