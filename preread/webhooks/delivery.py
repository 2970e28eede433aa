"""Sending the outbox: claim due messages, POST them signed, record what happened.

Each message is sent at least once: a receiver that is down, slow or failing gets it again on
the retry schedule below, always with the same ``webhook-id`` (receivers de-duplicate on it,
as Standard Webhooks asks). Answers:

* ``2xx``: delivered;
* ``410 Gone``: the receiver says the endpoint is gone: given up at once (``failed``; the
  tenant may fix it and redeliver);
* anything else — ``3xx`` (redirects are not followed: register the final URL), other ``4xx``,
  ``5xx``, timeouts, refused connections, an address the
  :class:`~preread.webhooks.addresses.DestinationPolicy` refuses: tried again per
  :data:`RETRY_SCHEDULE_S`; a ``Retry-After`` on ``429`` or ``503`` is honoured when it asks
  for longer (at most 12 h).

Before every attempt the URL's host is resolved again and every address checked; the request
goes to the checked address (``Host`` header and TLS server name unchanged), so DNS rebinding
cannot turn a registered public name into a way in to loopback or the internal network.

What a tenant sees of an attempt is a coarse :class:`DeliveryResult` (``delivered``,
``rejected`` with the status class, ``unreachable``, ``refused-address``): the delivery record
keeps the status and that word, never an error text from the network (it would make the
deliverer a port scanner). The details go to the operator's log, whose lines name the delivery
and webhook ids and the receiver's host only (never payloads, paths or query strings, which
may carry tokens).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from preread.store.errors import StoreError
from preread.webhooks.addresses import (
    Destination,
    DestinationPolicy,
    UnresolvableHostError,
)
from preread.webhooks.outbox import (
    Claim,
    Clock,
    DeliveryRecord,
    DeliveryState,
    InvalidWebhookError,
    WebhookStore,
    utcnow,
)
from preread.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

RETRY_SCHEDULE_S: tuple[int, ...] = (5, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200)
"""Seconds to wait after the 1st, 2nd, … failed attempt before the next one: 5 s, 30 s, 2 min,
5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 12 h. That is 12 attempts over 100,355 s (≈ 27.9 h)
after the first failure, so a receiver down for a day still gets every message; after the
12th failed attempt the message is ``failed`` (and can be redelivered by hand)."""

MAX_RETRY_AFTER_S = 43_200
"""The longest ``Retry-After`` honoured (12 h, the longest step of the schedule)."""

USER_AGENT = "PreRead-Webhooks/1"
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


class Outcome(StrEnum):
    """What one attempt means for its message."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


class DeliveryResult(StrEnum):
    """What a tenant may know of an attempt (stored as the delivery's ``last_error``)."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    """the receiver answered, not with 2xx (its status class is shown)"""
    UNREACHABLE = "unreachable"
    """no answer: the name did not resolve, the connection failed or timed out, TLS failed"""
    REFUSED_ADDRESS = "refused-address"
    """PreRead did not connect: the URL resolves to an address webhooks may not reach"""
    DISABLED = "disabled"
    """the webhook was disabled while the message waited"""


@dataclass(frozen=True)
class Attempt:
    """The result of one POST: the status (``None``: no answer), what the tenant may see of it
    and, for the operator's log only, the details of a failure."""

    outcome: Outcome
    status: int | None
    result: DeliveryResult
    detail: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class DeliveryStats:
    """What one :meth:`Deliverer.run_once` did: messages claimed, delivered, to be retried,
    given up, and those whose attempt could not be recorded (retried when their claim ends)."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: int = 0


# --- pure functions -----------------------------------------------------------------------------


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The bytes sent and signed: compact JSON with sorted keys, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def classify(status: int) -> Outcome:
    """What an HTTP status means for the message (see the module docstring)."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == GONE:
        return Outcome.GIVE_UP
    return Outcome.RETRY


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (RFC 9110 §10.2.3: delay-seconds or an
    HTTP-date); ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt_at(
    attempts: int,
    now: datetime,
    *,
    retry_after_s: float | None = None,
    schedule: tuple[int, ...] = RETRY_SCHEDULE_S,
) -> datetime | None:
    """When to try again after the ``attempts``-th attempt (counting it) failed at ``now``;
    ``None`` once the schedule is spent (give up). A ``retry_after_s`` longer than the
    schedule's step wins, up to :data:`MAX_RETRY_AFTER_S`."""
    if attempts < 1:
        raise ValueError(f"attempts counts the failed attempt: >= 1, got {attempts}")
    if attempts > len(schedule):
        return None
    delay = float(schedule[attempts - 1])
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=delay)


def host_of(url: str) -> str:
    """The part of a URL a log line may show: ``scheme://host[:port]`` (no path, no query)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def describe_status(status: int, retry_after_s: float | None) -> str:
    """The error recorded for an answer that is not 2xx."""
    if status == GONE:
        return "HTTP 410 Gone: the receiver says this endpoint is gone; not retried"
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed (register the final URL)"
    if retry_after_s is not None:
        return f"HTTP {status} (Retry-After {retry_after_s:g} s)"
    return f"HTTP {status}"


def describe_exception(exc: Exception, urls: tuple[str, ...], timeout_s: float) -> str:
    """The log's details of an attempt that got no answer, with the ``urls`` tried cut to
    their hosts."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s ({type(exc).__name__})"
    text = str(exc)
    for url in urls:
        text = text.replace(url, host_of(url))
    return f"{type(exc).__name__}: {text or 'no details'}"


def status_class(status: int | None) -> str | None:
    """``"4xx"`` for 404: the most of an answer's status a tenant is shown."""
    return None if status is None else f"{status // 100}xx"


def public_result(delivery: DeliveryRecord) -> DeliveryResult | None:
    """The coarse result of a delivery's last attempt (``None``: not tried yet), read from
    what :class:`Deliverer` records; older records' error texts are never passed on."""
    if delivery.state is DeliveryState.DELIVERED:
        return DeliveryResult.DELIVERED
    if delivery.last_error == "webhook disabled":
        return DeliveryResult.DISABLED
    if delivery.last_error in (DeliveryResult.REFUSED_ADDRESS, DeliveryResult.UNREACHABLE):
        return DeliveryResult(delivery.last_error)
    if delivery.last_status is not None:
        return DeliveryResult.REJECTED
    if delivery.last_attempt_at is not None:
        return DeliveryResult.UNREACHABLE
    return None


# --- the deliverer ------------------------------------------------------------------------------


class Deliverer:
    """Sends due outbox messages with ``client`` (passed in; its proxies, TLS settings and
    connection pool are the caller's), one batch per :meth:`run_once`, or in a thread.

    ``policy`` says which addresses may be reached (default: public ones only, resolved by the
    operating system); it is checked before every attempt. ``timeout_s`` bounds each phase of
    a request (connect, send, each read) and the reading of the answer; at most
    ``max_body_bytes`` of an answer are read (then dropped), so a receiver cannot keep the
    deliverer downloading. A claim lasts ``lease_s`` (default: long enough for
    a whole batch of slow receivers); when a deliverer dies holding one, another sends the
    message after it — with the same ``webhook-id``.
    """

    def __init__(
        self,
        store: WebhookStore,
        client: httpx.Client,
        *,
        policy: DestinationPolicy | None = None,
        clock: Clock = utcnow,
        timeout_s: float = 10.0,
        max_body_bytes: int = 64 * 1024,
        batch_size: int = 10,
        lease_s: float | None = None,
        schedule: tuple[int, ...] = RETRY_SCHEDULE_S,
    ) -> None:
        if timeout_s <= 0 or max_body_bytes < 0 or batch_size < 1:
            raise ValueError(
                f"need timeout_s > 0, max_body_bytes >= 0, batch_size >= 1; got {timeout_s},"
                f" {max_body_bytes}, {batch_size}"
            )
        self.store = store
        self._client = client
        self.policy = policy if policy is not None else DestinationPolicy()
        self._clock = clock
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.batch_size = batch_size
        self.lease_s = lease_s if lease_s is not None else batch_size * 4 * timeout_s + 60
        self.schedule = schedule
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one round ----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> DeliveryStats:
        """Claim the messages due at ``now`` (default: the clock), send each once, record it.

        With ``now`` given, it is also the time of every attempt (tests step a fake clock);
        otherwise each attempt reads the clock as it starts.
        """
        claims = self.store.claim_due(now or self._clock(), self.batch_size, self.lease_s)
        counts = dict.fromkeys(Outcome, 0)
        errors = 0
        for claim in claims:
            try:
                counts[self._deliver(claim, now or self._clock())] += 1
            except Exception:  # the claim runs out and the message is tried again
                errors += 1
                log.exception(
                    "webhook delivery %s to webhook %s: attempt not recorded",
                    claim.delivery.id,
                    claim.delivery.webhook_id,
                )
        return DeliveryStats(
            claimed=len(claims),
            delivered=counts[Outcome.DELIVERED],
            retrying=counts[Outcome.RETRY],
            failed=counts[Outcome.GIVE_UP],
            errors=errors,
        )

    def _deliver(self, claim: Claim, at: datetime) -> Outcome:
        delivery = claim.delivery
        attempt = self.send(claim, at)
        outcome = attempt.outcome
        retry_at = None
        if outcome is Outcome.RETRY:
            retry_at = next_attempt_at(
                delivery.attempts + 1,
                at,
                retry_after_s=attempt.retry_after_s,
                schedule=self.schedule,
            )
            if retry_at is None:
                outcome = Outcome.GIVE_UP
        self.store.record_attempt(
            delivery.id,
            ok=outcome is Outcome.DELIVERED,
            status=attempt.status,
            error=None if outcome is Outcome.DELIVERED else attempt.result.value,
            now=at,
            next_attempt_at=retry_at,
        )
        where = (delivery.id, delivery.webhook_id, host_of(claim.url), delivery.attempts + 1)
        if outcome is Outcome.DELIVERED:
            log.info("webhook delivery %s to webhook %s (%s): delivered, attempt %d", *where)
        elif outcome is Outcome.RETRY:
            log.warning(
                "webhook delivery %s to webhook %s (%s): attempt %d failed (%s); next at %s",
                *where,
                attempt.detail,
                retry_at and retry_at.isoformat(),
            )
        else:
            log.error(
                "webhook delivery %s to webhook %s (%s): attempt %d failed (%s); given up",
                *where,
                attempt.detail,
            )
        return outcome

    def send(self, claim: Claim, at: datetime) -> Attempt:
        """POST one claimed message, signed for time ``at``, to an address of its URL that
        :attr:`policy` allows (checked now); never raises for network trouble (a failure is an
        :class:`Attempt` like any other answer)."""
        try:
            destination = self.policy.check(claim.url)
        except UnresolvableHostError as exc:
            return Attempt(Outcome.RETRY, None, DeliveryResult.UNREACHABLE, str(exc))
        except InvalidWebhookError as exc:  # RefusedAddressError, or https only by now
            return Attempt(Outcome.RETRY, None, DeliveryResult.REFUSED_ADDRESS, str(exc))
        body = encode_body(claim.delivery.payload)
        headers = {
            "host": destination.host_header,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(claim.secret, claim.delivery.id, int(at.timestamp()), body),
        }
        try:
            response = self._post(destination, headers, body)
        except Exception as exc:
            tried = (claim.url, str(destination.pinned_url))
            detail = describe_exception(exc, tried, self.timeout_s)
            return Attempt(Outcome.RETRY, None, DeliveryResult.UNREACHABLE, detail)
        try:
            self._drain(response)
        finally:
            response.close()
        status = response.status_code
        outcome = classify(status)
        if outcome is Outcome.DELIVERED:
            return Attempt(outcome, status, DeliveryResult.DELIVERED)
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"), at)
        detail = describe_status(status, retry_after)
        return Attempt(outcome, status, DeliveryResult.REJECTED, detail, retry_after)

    def _post(
        self, destination: Destination, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        """Open the request to the checked address; redirects are never followed."""
        server_name = destination.server_name
        request = self._client.build_request(
            "POST",
            destination.pinned_url,
            content=body,
            headers=headers,
            timeout=self.timeout_s,
            extensions={"sni_hostname": server_name} if server_name else None,
        )
        return self._client.send(request, stream=True, follow_redirects=False)

    def _drain(self, response: httpx.Response) -> None:
        """Read (and drop) at most ``max_body_bytes`` of the answer within ``timeout_s``; the
        status is what counts, and a receiver that keeps talking is simply cut off."""
        deadline = time.monotonic() + self.timeout_s
        read = 0
        try:
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= self.max_body_bytes or time.monotonic() > deadline:
                    return
        except httpx.HTTPError:
            return

    # --- in a thread --------------------------------------------------------------------------

    def start(self, interval_s: float) -> None:
        """Run :meth:`run_once` every ``interval_s`` seconds in a daemon thread (at once again
        while batches come back full). Exceptions are logged; they never end the thread."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the webhook deliverer is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="preread-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the thread after its current round (waiting up to ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            full = False
            try:
                full = self.run_once().claimed >= self.batch_size
            except StoreError as exc:  # the database restarting, a full disk: back next round
                log.warning(
                    "webhook delivery round failed: the store is unavailable (%s); next in %g s",
                    type(exc).__name__,
                    interval_s,
                )
            except Exception:
                log.exception("webhook delivery round failed; next in %g s", interval_s)
            if not full:
                self._stop.wait(interval_s)
