"""Standard Webhooks (https://www.standardwebhooks.com) for finished reads: the registry and
its persisted outbox (:mod:`preread.webhooks.outbox`), signing, and the deliverer that empties
the outbox.

Typical use::

    store = WebhookStore(engine)
    policy = DestinationPolicy.from_settings(settings)  # the addresses webhooks may reach
    url = "https://ris.example.org/hooks/preread"
    policy.check(url)                                   # InvalidWebhookError saying why not
    webhook, secret = store.create("tenant-a", url)
    deliverer = Deliverer(store, webhook_client(None), policy=policy, timeout_s=10.0)
    deliverer.start(settings.webhook_interval_s)        # … deliverer.stop() at shutdown

A receiver checks each message with :func:`verify` (or any Standard Webhooks library).
"""

from preread.webhooks.addresses import (
    DestinationPolicy,
    RefusedAddressError,
    Resolver,
    UnresolvableHostError,
    system_resolver,
)
from preread.webhooks.delivery import (
    RETRY_SCHEDULE_S,
    Deliverer,
    DeliveryResult,
    DeliveryStats,
    public_result,
)
from preread.webhooks.outbox import (
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
from preread.webhooks.signing import SignatureError, new_secret, sign, verify

__all__ = [
    "EVENT_TYPES",
    "RETRY_SCHEDULE_S",
    "Deliverer",
    "DeliveryNotFoundError",
    "DeliveryRecord",
    "DeliveryResult",
    "DeliveryState",
    "DeliveryStateError",
    "DeliveryStats",
    "DestinationPolicy",
    "InvalidWebhookError",
    "RefusedAddressError",
    "Resolver",
    "SignatureError",
    "UnresolvableHostError",
    "WebhookError",
    "WebhookNotFoundError",
    "WebhookRecord",
    "WebhookStore",
    "new_secret",
    "public_result",
    "sign",
    "system_resolver",
    "verify",
]
