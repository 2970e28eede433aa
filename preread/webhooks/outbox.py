"""Webhooks and their persisted outbox (Standard Webhooks, https://www.standardwebhooks.com).

Two halves:

* functions inside a caller's :class:`~sqlalchemy.orm.Session` — the job store calls
  :func:`enqueue_event` in the transaction that moves a job to a final state, so a message
  exists if and only if that state change committed (the *transactional outbox*: nothing is
  sent from inside the transaction, and nothing is lost when a receiver is down);
* :class:`WebhookStore`: registering webhooks per tenant, and the deliverer's side of the
  outbox (:meth:`~WebhookStore.claim_due`, :meth:`~WebhookStore.record_attempt`).

A delivery is ``pending`` (``next_attempt_at`` says when it is due), ``delivered`` or
``failed`` (given up; :meth:`WebhookStore.redeliver` puts it back). Its id is the
``webhook-id`` header, the same on every attempt, so receivers can de-duplicate: delivery is
*at least once*. No ORM object leaves this module, and the signing secret leaves it only from
:meth:`WebhookStore.create` (once, for the tenant) and :meth:`WebhookStore.claim_due` (to sign).

Errors::

    StoreError
    └── WebhookError                (base of this module's errors)
        ├── InvalidWebhookError     (a URL, event type or description that cannot be used)
        ├── WebhookNotFoundError    (no such webhook *for this tenant*: another tenant's is
        │                            reported exactly like a missing one)
        ├── DeliveryNotFoundError   (no such delivery for this tenant)
        └── DeliveryStateError      (e.g. redelivering a message that did not fail)
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from preread.store.database import READ_ONLY
from preread.store.errors import StoreError
from preread.store.records import JobRecord
from preread.store.schema import WebhookDeliveryRow, WebhookRow
from preread.webhooks.signing import new_secret

Clock = Callable[[], datetime]

EVENT_TYPES = (
    "preread.completed",
    "preread.failed",
    "preread.not_applicable",
    "preread.not_authorized",
    "preread.reviewed",
    "preread.monitoring.alert",
)
"""The events a webhook can subscribe to: a job finished ``done``, ``failed``,
``not_applicable``, ``not_authorized`` (no grant covers the study); a radiologist signed a
review of a result (``preread.reviewed``, :mod:`preread.reviews`); a metric of a model version
in use went out of control on the tenant's studies (``preread.monitoring.alert``,
:mod:`preread.monitoring`)."""

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
MAX_ERROR_LENGTH = 500
MESSAGE_ID_PREFIX = "msg_"


class DeliveryState(StrEnum):
    """Where one message to one webhook is; the value is what the database stores."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# --- errors -------------------------------------------------------------------------------------


class WebhookError(StoreError):
    """Base of the errors of webhooks and their deliveries."""


class InvalidWebhookError(WebhookError):
    """A webhook cannot be registered as asked; the message names the problem."""


class WebhookNotFoundError(WebhookError):
    """The tenant has no webhook with that id (whether or not another tenant has)."""

    def __init__(self, webhook_id: str) -> None:
        self.webhook_id = webhook_id
        super().__init__(f"no webhook {webhook_id}")


class DeliveryNotFoundError(WebhookError):
    """The tenant has no delivery with that id (whether or not another tenant has)."""

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"no webhook delivery {delivery_id}")


class DeliveryStateError(WebhookError):
    """A delivery cannot do what was asked in its state (or its webhook's)."""


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRecord:
    """A registered webhook as a tenant sees it; the secret is deliberately not here."""

    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class DeliveryRecord:
    """One message to one webhook; ``id`` is its ``webhook-id`` header."""

    id: str
    webhook_id: str
    event_type: str
    payload: Mapping[str, Any]
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class Claim(NamedTuple):
    """A due delivery a deliverer now holds, with where to send it and the key to sign it."""

    delivery: DeliveryRecord
    url: str
    secret: str

    def __repr__(self) -> str:  # never print the secret (or the URL's query) in a log line
        return f"Claim(delivery={self.delivery.id!r}, webhook={self.delivery.webhook_id!r})"


# --- pure functions -----------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def event_payload(job: JobRecord, event_type: str, now: datetime) -> dict[str, Any]:
    """The Standard Webhooks payload (``type``, ``timestamp``, ``data``) of a finished job.

    It says *which* job finished and how, and links to where an authorized client reads the
    rest. It never carries patient identifiers: no patient id or name, and not ``job.reason``
    either (its text may quote DICOM tags); ``reason_code`` is a fixed vocabulary.
    """
    _check_event_type(event_type)
    return {
        "type": event_type,
        "timestamp": iso_utc(now),
        "data": {
            "job_id": job.id,
            "study_instance_uid": job.study_instance_uid,
            "model": {"id": job.model_id, "version": job.model_version},
            "state": job.state.value,
            "findings": findings_count(job),
            "lung_rads_category": lung_rads_category(job),
            "reason_code": job.reason_code,
            "links": {
                "job": f"/api/v1/jobs/{job.id}",
                "report": f"/api/v1/studies/{job.study_instance_uid}/report",
            },
        },
    }


def findings_count(job: JobRecord) -> int | None:
    """How many findings the job's result lists (``None`` when it has no result)."""
    findings = (job.result or {}).get("findings")
    if isinstance(findings, list):
        return len(findings)
    return job.findings_count


def lung_rads_category(job: JobRecord) -> str | None:
    """The exam's Lung-RADS v2022 category of the job's result (``None``: not assessed, not
    determinable, or no result) — a category, never patient data."""
    lung_rads = (job.result or {}).get("lung_rads")
    category = lung_rads.get("category") if isinstance(lung_rads, dict) else None
    return category if isinstance(category, str) else None


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` (``2025-03-01T08:00:00Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_url(url: str) -> str:
    """``url`` if a webhook may be sent to it, else :class:`InvalidWebhookError` saying why.

    It must be absolute ``http`` or ``https`` with a host, without user name or password (they
    would be stored and shown in clear: use the signature to authenticate instead), without a
    fragment (never sent) and without spaces or control characters.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookError(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidWebhookError("the webhook URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidWebhookError("the webhook URL cannot be parsed") from None
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "none"
        raise InvalidWebhookError(f"the webhook URL must be http or https, not {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookError(
            "the webhook URL must not contain a user name or password; "
            "receivers authenticate messages by their signature"
        )
    if not parts.hostname:
        raise InvalidWebhookError("the webhook URL has no host")
    try:
        parts.port  # noqa: B018 — parsing the port is the check
    except ValueError:
        raise InvalidWebhookError("the webhook URL has an invalid port") from None
    if parts.fragment or url.endswith("#"):
        raise InvalidWebhookError("the webhook URL must not have a #fragment (it is never sent)")
    return url


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    """The subscribed event types, de-duplicated in :data:`EVENT_TYPES` order."""
    wanted = set(events)
    unknown = sorted(wanted.difference(EVENT_TYPES))
    if unknown:
        raise InvalidWebhookError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    if not wanted:
        raise InvalidWebhookError("a webhook must subscribe to at least one event type")
    return tuple(e for e in EVENT_TYPES if e in wanted)


def _check_event_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise WebhookError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")


def webhook_record(row: WebhookRow) -> WebhookRecord:
    return WebhookRecord(
        id=row.id,
        tenant=row.tenant,
        url=row.url,
        events=tuple(row.events.split()),
        description=row.description,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def delivery_record(row: WebhookDeliveryRow) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        webhook_id=row.webhook_id,
        event_type=row.event_type,
        payload=dict(row.payload),
        state=DeliveryState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


# --- inside the caller's transaction ------------------------------------------------------------


def enqueue_event(
    session: Session, *, tenant: str, event_type: str, payload: dict[str, Any], now: datetime
) -> int:
    """Queue ``payload`` for every enabled webhook of ``tenant`` subscribed to ``event_type``.

    Runs in the caller's transaction: the messages commit, or roll back, with whatever else it
    changes. Each is ``pending`` and due at ``now``; returns how many were queued.
    """
    _check_event_type(event_type)
    stmt = (
        select(WebhookRow)
        .where(WebhookRow.tenant == tenant, WebhookRow.disabled_at.is_(None))
        .order_by(WebhookRow.created_at, WebhookRow.id)
    )
    targets = [row for row in session.scalars(stmt) if event_type in row.events.split()]
    session.add_all(
        WebhookDeliveryRow(
            id=MESSAGE_ID_PREFIX + uuid.uuid4().hex,
            webhook_id=row.id,
            event_type=event_type,
            payload=payload,
            state=DeliveryState.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for row in targets
    )
    session.flush()
    return len(targets)


def _webhook_row(session: Session, tenant: str, webhook_id: str) -> WebhookRow:
    stmt = select(WebhookRow).where(WebhookRow.id == webhook_id, WebhookRow.tenant == tenant)
    row = session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise WebhookNotFoundError(webhook_id)
    return row


def _delivery_row(
    session: Session, delivery_id: str, tenant: str | None, *, lock: bool = False
) -> WebhookDeliveryRow:
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id)
    if tenant is not None:
        stmt = stmt.join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id).where(
            WebhookRow.tenant == tenant
        )
    if lock:
        stmt = stmt.with_for_update(of=WebhookDeliveryRow)
    row = session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise DeliveryNotFoundError(delivery_id)
    return row


# --- the store ----------------------------------------------------------------------------------


class WebhookStore:
    """Tenants' webhooks and the outbox of their messages, on the job store's database.

    Every method runs in a transaction of its own; database errors are raised as
    :class:`StoreError`. Methods taking a ``tenant`` see only that tenant's webhooks.
    ``clock`` gives aware UTC times (a test passes a fake one).
    """

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self._clock = clock
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        try:
            with (self._writer if write else self._reader).begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"webhook store transaction failed: {exc}") from exc

    # --- registration -------------------------------------------------------------------------

    def create(
        self,
        tenant: str,
        url: str,
        events: Iterable[str] = EVENT_TYPES,
        description: str = "",
    ) -> tuple[WebhookRecord, str]:
        """Register ``url`` for ``tenant``; returns the webhook and its signing secret.

        The secret is shown this once: the tenant keeps it to verify signatures. Raises
        :class:`InvalidWebhookError` naming what is wrong with the URL, events or description.
        """
        if not tenant:
            raise InvalidWebhookError("a webhook needs a tenant")
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidWebhookError(
                f"the description is longer than {MAX_DESCRIPTION_LENGTH} characters"
            )
        row = WebhookRow(
            id=str(uuid.uuid4()),
            tenant=tenant,
            url=check_url(url),
            secret=new_secret(),
            events=" ".join(check_events(events)),
            description=description,
            created_at=self._clock(),
            disabled_at=None,
        )
        with self._session(write=True) as session:
            session.add(row)
            session.flush()
            return webhook_record(row), row.secret

    def list(self, tenant: str) -> builtins.list[WebhookRecord]:
        """The tenant's webhooks, oldest first (disabled ones included)."""
        stmt = (
            select(WebhookRow)
            .where(WebhookRow.tenant == tenant)
            .order_by(WebhookRow.created_at, WebhookRow.id)
        )
        with self._session(write=False) as session:
            return [webhook_record(row) for row in session.scalars(stmt)]

    def get(self, tenant: str, webhook_id: str) -> WebhookRecord:
        """One of the tenant's webhooks; :class:`WebhookNotFoundError` otherwise."""
        with self._session(write=False) as session:
            return webhook_record(_webhook_row(session, tenant, webhook_id))

    def disable(self, tenant: str, webhook_id: str) -> WebhookRecord:
        """Stop sending to the webhook. Its pending messages become ``failed`` ("webhook
        disabled"), so none waits for ever; disabling twice changes nothing."""
        now = self._clock()
        with self._session(write=True) as session:
            row = _webhook_row(session, tenant, webhook_id)
            if row.disabled_at is None:
                row.disabled_at = now
                pending = select(WebhookDeliveryRow).where(
                    WebhookDeliveryRow.webhook_id == row.id,
                    WebhookDeliveryRow.state == DeliveryState.PENDING.value,
                )
                for delivery in session.scalars(pending.with_for_update()):
                    delivery.state = DeliveryState.FAILED.value
                    delivery.next_attempt_at = None
                    delivery.last_error = "webhook disabled"
            session.flush()
            return webhook_record(row)

    def delete(self, tenant: str, webhook_id: str) -> None:
        """Remove the webhook and every message queued or sent to it."""
        with self._session(write=True) as session:
            row = _webhook_row(session, tenant, webhook_id)
            session.execute(
                delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == row.id)
            )
            session.delete(row)

    # --- deliveries, as the tenant sees them --------------------------------------------------

    def deliveries(
        self, tenant: str, webhook_id: str, limit: int = 50
    ) -> builtins.list[DeliveryRecord]:
        """The webhook's latest ``limit`` messages, newest first."""
        stmt = (
            select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.webhook_id == webhook_id)
            .order_by(WebhookDeliveryRow.created_at.desc(), WebhookDeliveryRow.id.desc())
            .limit(limit)
        )
        with self._session(write=False) as session:
            _webhook_row(session, tenant, webhook_id)
            return [delivery_record(row) for row in session.scalars(stmt)]

    def delivery(self, tenant: str, delivery_id: str) -> DeliveryRecord:
        """One of the tenant's messages; :class:`DeliveryNotFoundError` otherwise."""
        with self._session(write=False) as session:
            return delivery_record(_delivery_row(session, delivery_id, tenant))

    def redeliver(self, tenant: str, delivery_id: str) -> DeliveryRecord:
        """Send a ``failed`` message again, now, with the whole retry schedule ahead of it
        (``attempts`` starts again from 0; the last status and error stay until the next try).

        Raises :class:`DeliveryStateError` when it is not ``failed`` or its webhook is disabled.
        """
        now = self._clock()
        with self._session(write=True) as session:
            row = _delivery_row(session, delivery_id, tenant, lock=True)
            if row.state != DeliveryState.FAILED.value:
                raise DeliveryStateError(
                    f"webhook delivery {delivery_id} is {row.state}: only a failed one can be"
                    " delivered again"
                )
            webhook = _webhook_row(session, tenant, row.webhook_id)
            if webhook.disabled_at is not None:
                raise DeliveryStateError(
                    f"webhook {webhook.id} is disabled: its deliveries cannot be sent again"
                )
            row.state = DeliveryState.PENDING.value
            row.attempts = 0
            row.next_attempt_at = now
            session.flush()
            return delivery_record(row)

    # --- the deliverer's side -----------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int, lease_s: float) -> builtins.list[Claim]:
        """Take up to ``limit`` pending messages due at ``now`` (oldest due first) of enabled
        webhooks, for ``lease_s`` seconds: their ``next_attempt_at`` moves to ``now + lease_s``,
        so no other deliverer takes them meanwhile (and one that crashed is retried after it).

        PostgreSQL locks the rows with ``FOR UPDATE SKIP LOCKED`` (concurrent deliverers take
        different rows); SQLite's ``BEGIN IMMEDIATE`` runs one claim at a time.
        """
        if limit < 1 or lease_s <= 0:
            raise ValueError(f"limit ({limit}) and lease_s ({lease_s}) must be positive")
        stmt = (
            select(WebhookDeliveryRow, WebhookRow.url, WebhookRow.secret)
            .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
            .where(
                WebhookDeliveryRow.state == DeliveryState.PENDING.value,
                WebhookDeliveryRow.next_attempt_at <= now,
                WebhookRow.disabled_at.is_(None),
            )
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
            .execution_options(populate_existing=True)
        )
        lease_until = now + timedelta(seconds=lease_s)
        with self._session(write=True) as session:
            claims: builtins.list[tuple[WebhookDeliveryRow, str, str]] = []
            for row, url, secret in session.execute(stmt).all():
                row.next_attempt_at = lease_until
                claims.append((row, url, secret))
            session.flush()
            return [Claim(delivery_record(row), url, secret) for row, url, secret in claims]

    def record_attempt(
        self,
        delivery_id: str,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        now: datetime,
        next_attempt_at: datetime | None,
    ) -> DeliveryRecord:
        """Record one attempt at sending a claimed message (``attempts`` grows by one).

        ``ok``: ``delivered``. A failure of a ``pending`` message with ``next_attempt_at``:
        ``pending`` until then; without: ``failed`` (given up). A message already ``delivered``
        (another deliverer took it over after this one's lease expired) is left as it is, and
        a ``failed`` one (its webhook was disabled meanwhile) stays failed unless this attempt
        succeeded. ``error`` is kept, shortened to 500 characters: it must not contain the body.
        """
        with self._session(write=True) as session:
            row = _delivery_row(session, delivery_id, None, lock=True)
            if row.state == DeliveryState.DELIVERED.value:
                return delivery_record(row)
            row.attempts += 1
            row.last_attempt_at = now
            row.last_status = status
            row.last_error = None if ok else (error or "failed")[:MAX_ERROR_LENGTH]
            if ok:
                row.state = DeliveryState.DELIVERED.value
                row.delivered_at = now
                row.next_attempt_at = None
            elif row.state == DeliveryState.PENDING.value:
                row.next_attempt_at = next_attempt_at
                if next_attempt_at is None:
                    row.state = DeliveryState.FAILED.value
            session.flush()
            return delivery_record(row)
