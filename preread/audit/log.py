"""The audit log in the job store's database: append, verify, read, and retention.

Each access to patient data is one :class:`AuditEvent`; :meth:`AuditLog.record` stores it as the
next link of the hash chain (:mod:`preread.audit.chain`) in table ``audit_events``. Records
leave only through :meth:`AuditLog.purge`, past retention, as its own recorded event: the
triggers (migrations 0003, 0004) refuse every UPDATE, every TRUNCATE, and every DELETE unless
the purge runs (a transaction-local flag only :func:`_purging` sets) and the retention anchor
covers the record; the anchor (table ``audit_anchor``) is moved only by the purge, forward, to a
stored record. These keep out SQL that is not the purge code; someone who can disable
triggers (a database superuser, the tables' owner, whoever holds the SQLite file) is caught by
the signed checkpoints of :mod:`preread.audit.checkpoints` instead.

Appends are serialized so that the chain never forks: on PostgreSQL by a transaction-level
advisory lock (:data:`APPEND_LOCK`), on SQLite by the write lock that ``BEGIN IMMEDIATE`` takes
(engines from :func:`preread.store.make_engine`). The primary key on ``seq`` is the last line:
two appends that read the same head cannot both commit.

Errors: :class:`AuditError` (a :class:`~preread.errors.PrereadError`) for everything this module
fails to do, with the action named, so that "a failed audit write stops the action it
describes" is one ``except`` for callers; ValueError for an :class:`AuditEvent` that must not be
recorded (e.g. a patient identifier in ``detail``).
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from preread.audit.chain import (
    ORIGIN,
    Checkpoint,
    Fields,
    Json,
    Link,
    VerifyResult,
    check_aware,
    link_hash,
    normalize_detail,
    verify_chain,
)
from preread.errors import PrereadError
from preread.store.database import AUDIT_PURGING, READ_ONLY
from preread.store.schema import AuditAnchorRow, AuditEventRow

Clock = Callable[[], datetime]

APPEND_LOCK = 0x61756474  # "audt": PostgreSQL advisory lock key held while appending or purging
DEFAULT_RETENTION_DAYS = 180
MIN_RETENTION_DAYS = 180
"""PRC Cybersecurity Law art. 21(3): network logs are kept for no less than six months."""
STREAM_BATCH = 500  # rows fetched at a time when streaming the table
_MAX_LENGTHS = {"actor": 255, "tenant": 64, "purpose": 32, "study_instance_uid": 64}
_ANCHOR_ID = 1


class AuditAction(StrEnum):
    """What was done; the value is what the database stores."""

    STUDY_RECEIVED = "study.received"
    PIXELS_FETCH = "pixels.fetch"
    INFERENCE_RUN = "inference.run"
    RESULTS_STORE = "results.store"
    REPORT_READ = "report.read"
    ANALYSIS_REQUEST = "analysis.request"
    """A client asked for a study to be (re)read (``POST /api/v1/studies/{uid}/analyze``)."""
    EXPORT = "export"
    DEID = "deid"
    DATASET_INCLUDE = "dataset.include"
    GRANT_CREATE = "grant.create"
    GRANT_REVOKE = "grant.revoke"
    GRANT_CHANGE = "grant.change"
    AUTH_FAILED = "auth.failed"
    ACCESS_REFUSED = "access.refused"
    AUDIT_EXPORT = "audit.export"
    """The audit trail itself was exported (DICOM's "Audit Log Used")."""
    AUDIT_PURGE = "audit.purge"
    """Retention removed old records (recorded by :meth:`AuditLog.purge` itself)."""
    USER_SIGN_IN = "user.sign_in"
    """A person signed in and a browser session began (failures: ``auth.failed``)."""
    USER_SIGN_OUT = "user.sign_out"
    """A person signed out (their session ended server-side)."""
    USER_CREATE = "user.create"
    USER_CHANGE = "user.change"
    """A user account was disabled, enabled or had its password reset (``detail.change``)."""
    REVIEW_SIGN = "review.sign"
    """A radiologist signed a review of an AI result (:mod:`preread.reviews`), or was refused."""
    PRIORS_QUERY = "priors.query"
    """The hospital's PACS was asked (C-FIND) for the earlier CTs of the patient of the study
    being read (:mod:`preread.followup.priors`)."""
    PRIORS_RETRIEVE = "priors.retrieve"
    """A prior study was moved (C-MOVE) from the hospital's PACS into PreRead's Orthanc."""
    MODEL_STAGE = "model.stage"
    """An operator moved a model version (shadow, promote, rollback, retire): who, why, and
    a promotion's gate figures (:mod:`preread.lifecycle`)."""
    BACKFILL_QUERY = "backfill.query"
    """The hospital's PACS was asked (C-FIND) for the CT studies of a date range, to re-read the
    archive (:mod:`preread.backfill`)."""
    BACKFILL_RETRIEVE = "backfill.retrieve"
    """An archived study was moved (C-MOVE) from the PACS into PreRead's Orthanc to be re-read."""
    FINAL_REPORT_RECEIVE = "final_report.receive"
    """A hospital's final radiology report of an exam was received (HL7 v2 over MLLP, or FHIR)
    and stored to be compared with the AI (:mod:`preread.finalreports`); the detail names the
    channel and the stored report's id and version, never the accession number or the text."""


class Outcome(StrEnum):
    """How it ended: done, refused by policy, or failed."""

    SUCCESS = "success"
    REFUSED = "refused"
    FAILURE = "failure"


class AuditError(PrereadError):
    """The audit log could not do what was asked (the message names the action)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditEvent:
    """One access to patient data (or to the authorizations that govern it), before storing.

    ``detail`` holds JSON values about the access (job id, model, counts, a refusal's reason)
    and **never patient identifiers**: the trail is read by auditors and exported, and it
    identifies the study by its Study Instance UID only. Keys that look like one (``patient_id``,
    ``PatientName``, ``birth_date``, ``mrn``, …, at any depth) raise ValueError, as do values
    JSON cannot hold; ``detail`` is stored as :func:`~preread.audit.chain.normalize_detail`
    makes it. ``action`` and ``outcome`` accept their string values too.
    """

    actor: str
    action: AuditAction
    outcome: Outcome
    tenant: str | None = None
    purpose: str | None = None
    study_instance_uid: str | None = None
    detail: Mapping[str, Json] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", AuditAction(self.action))
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.actor:
            raise ValueError("an audit event needs an actor")
        for name, limit in _MAX_LENGTHS.items():
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                raise ValueError(f"{name} is longer than {limit} characters")
        detail = normalize_detail(self.detail)
        _refuse_patient_keys(detail)
        object.__setattr__(self, "detail", detail)

    def fields(self, at: datetime) -> Fields:
        """What the chain hashes when this event is recorded at ``at``."""
        return Fields(
            at=at,
            actor=self.actor,
            action=self.action.value,
            outcome=self.outcome.value,
            tenant=self.tenant,
            purpose=self.purpose,
            study_instance_uid=self.study_instance_uid,
            detail=self.detail,
        )


@dataclass(frozen=True)
class AuditRecord:
    """A stored :class:`AuditEvent`: its place in the chain, its time and its hashes."""

    event: AuditEvent
    seq: int
    at: datetime
    prev_hash: str
    hash: str

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.seq, self.hash)


class AuditLog:
    """The hash-chained audit trail in the job store's database (SQLite or PostgreSQL).

    ``engine`` should come from :func:`preread.store.make_engine` (on SQLite its
    ``BEGIN IMMEDIATE`` is what serializes appends); ``clock`` gives aware UTC times.
    """

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self.engine = engine
        self._clock = clock
        self._writer = sessionmaker(engine, expire_on_commit=False)
        snapshot = (  # one consistent view of anchor and records while streaming
            {"isolation_level": "REPEATABLE READ"}
            if engine.dialect.name == "postgresql"
            else {READ_ONLY: True}
        )
        self._reader = sessionmaker(engine.execution_options(**snapshot))

    def record(self, event: AuditEvent, *, session: Session | None = None) -> AuditRecord:
        """Append ``event`` as the newest record and return it.

        With ``session`` (the caller's open transaction) the record commits or rolls back with
        the caller's own changes; record last, just before committing, as appends wait for each
        other until that commit (PostgreSQL: keep the session READ COMMITTED, the default, so
        that the head read after the lock is the newest). Without, it commits on its own.

        Raises:
            AuditError: anything failed (database, clock, commit): do not carry out, or roll
                back, the action the event describes.
        """
        try:
            if session is not None:
                return self._append(session, event)
            with self._writer.begin() as own:
                return self._append(own, event)
        except Exception as exc:
            raise AuditError(f"audit record of {event.action} failed: {exc}") from exc

    def record_many(
        self, events: Sequence[AuditEvent], *, connection: Connection | None = None
    ) -> list[AuditRecord]:
        """Append ``events`` in order in one transaction (one lock, one head read, one insert):
        all are recorded, or none (:class:`AuditError`). The group commit of
        :class:`~preread.audit.batch.AuditWriter` uses it, on a ``connection`` it keeps open
        between batches (no pool checkout, no liveness ping per batch: one round trip and the
        GIL time of a checkout fewer on the report API's hot path)."""
        if not events:
            return []
        try:
            if connection is not None:
                with connection.begin():
                    return self._append_all(connection, events)
            with self._writer.begin() as session:
                return self._append_all(session.connection(), events)
        except Exception as exc:
            actions = ", ".join(sorted({e.action.value for e in events}))
            raise AuditError(f"audit record of {actions} failed: {exc}") from exc

    def checkpoint(self) -> Checkpoint:
        """The head of the chain now (the anchor, or :data:`~preread.audit.chain.ORIGIN`, when
        there is no record): store it outside this database and pass it to :meth:`verify` later
        to detect records removed from the end."""
        with _failing_as("reading the audit head"), self._reader() as session:
            return _head(session.connection())

    def verify(
        self, expected_head: Checkpoint | None = None, *, checkpoints: Sequence[Checkpoint] = ()
    ) -> VerifyResult:
        """Check the whole stored chain from the anchor, streaming it in seq order.

        ``expected_head`` and ``checkpoints`` are :meth:`checkpoint` values kept elsewhere: the
        chain must still hold each (this is the only way to detect a truncated tail or a
        rewritten and re-chained trail). Problems are reported in the result, not raised;
        AuditError only when the database cannot be read.
        """
        with _failing_as("verifying the audit trail"), self._reader() as session:
            links = (_link(row) for row in _stream(session, _by_seq()))
            return verify_chain(
                links,
                anchor=_anchor(session.connection()),
                expected_head=expected_head,
                checkpoints=checkpoints,
            )

    def records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        study_uid: str | None = None,
        tenant: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditRecord]:
        """Stored records in seq order: ``since <= at < until``, of one study or tenant.

        Streams from one read transaction, which stays open until the iterator is exhausted or
        closed.
        """
        query = _by_seq()
        if since is not None:
            query = query.where(AuditEventRow.at >= since)
        if until is not None:
            query = query.where(AuditEventRow.at < until)
        if study_uid is not None:
            query = query.where(AuditEventRow.study_instance_uid == study_uid)
        if tenant is not None:
            query = query.where(AuditEventRow.tenant == tenant)
        if limit is not None:
            query = query.limit(limit)
        with _failing_as("reading audit records"), self._reader() as session:
            for row in _stream(session, query):
                yield _record(row)

    def purge(
        self,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        now: datetime | None = None,
        *,
        allow_short: bool = False,
        actor: str = "retention",
    ) -> int:
        """Remove the records older than the retention period; returns how many.

        In one transaction: verify the records to be removed (evidence of tampering is never
        purged), move the anchor to the last of them, delete them (the triggers allow exactly
        that, and only while this method has its flag set), and record an ``audit.purge``
        event. Only a prefix of the chain all older than
        the cutoff goes, so a record inside the period is never removed because of clock skew.
        The cutoff is :func:`retention_cutoff`.

        Raises:
            AuditError: ``retention_days`` is under :data:`MIN_RETENTION_DAYS` without
                ``allow_short``, the records to remove do not verify, or the database failed.
        """
        cutoff = retention_cutoff(now or self._clock(), retention_days, allow_short=allow_short)
        with _failing_as("purging the audit trail"), self._writer.begin() as session:
            _lock(session.connection())
            anchor = _anchor(session.connection())
            last = _last_before(session, cutoff)
            if last is None or last <= anchor.seq:
                return 0
            doomed = (_link(r) for r in _stream(session, _by_seq().where(_seq_upto(last + 1))))
            checked = verify_chain(doomed, anchor=anchor)
            if not checked.ok:
                raise AuditError(f"refusing to purge evidence: {checked.message}")
            last_hash = session.scalars(
                select(AuditEventRow.hash).where(AuditEventRow.seq == last)
            ).one()
            with _purging(session):
                _move_anchor(session, Checkpoint(last, last_hash), self._clock())
                deleted = _delete_upto(session, last)
            detail: dict[str, Json] = {
                "after_seq": last,
                "after_hash": last_hash,
                "deleted": deleted,
                "cutoff": cutoff.isoformat(),
                "retention_days": retention_days,
            }
            self._append(
                session, AuditEvent(actor, AuditAction.AUDIT_PURGE, Outcome.SUCCESS, detail=detail)
            )
            return deleted

    def _append(self, session: Session, event: AuditEvent) -> AuditRecord:
        # the caller's pending changes first, as before any statement of the session: never
        # flushed while this transaction holds the append lock
        session.flush()
        return self._append_all(session.connection(), [event])[0]

    def _append_all(
        self, connection: Connection, events: Sequence[AuditEvent]
    ) -> list[AuditRecord]:
        """Chain ``events`` after the head, under the append lock, with one insert (Core
        statements on the connection: the ORM adds nothing here, and this is the group
        commit's hot path)."""
        _lock(connection)
        records = self.chained(_head(connection), events)
        # a Core insert (one executemany), not the ORM's bulk path: nothing here needs the ORM
        connection.execute(insert(AuditEventRow), [_row(r) for r in records])
        return records

    def chained(self, head: Checkpoint, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """``events`` as the records that follow ``head`` (times from this log's clock): what
        an append stores, under the append lock, after reading the head."""
        records: list[AuditRecord] = []
        for event in events:
            seq, at = head.seq + 1, _utc(self._clock())
            digest = link_hash(head.hash, seq, event.fields(at))
            records.append(AuditRecord(event, seq, at, head.hash, digest))
            head = Checkpoint(seq, digest)
        return records


@dataclass(frozen=True)
class PgAppend:
    """An append's statements as PostgreSQL SQL with psycopg's ``%(name)s`` parameters,
    compiled once from the statements :meth:`AuditLog.record_many` sends (the lock, the head,
    the anchor, the insert): for an append on a psycopg connection of its own
    (:mod:`preread.audit.batch`'s event-loop path). The insert goes as one ``executemany`` (a
    pipeline), as SQLAlchemy sends it; one ``INSERT ... SELECT FROM unnest(...)`` per batch
    was measured slower (the report route under ``bench/api_reports.py``'s load: about 2,000
    against 2,400-2,600 requests per second, 2026-12-06)."""

    lock: str
    lock_params: Mapping[str, Any]
    head: str
    head_params: Mapping[str, Any]
    anchor: str
    anchor_params: Mapping[str, Any]
    insert: str

    @classmethod
    @functools.cache
    def compiled(cls) -> PgAppend:
        from sqlalchemy.dialects.postgresql import psycopg

        dialect = psycopg.dialect()  # type: ignore[no-untyped-call]

        def sql(statement: Any, **params: Any) -> tuple[str, dict[str, Any]]:
            compiled = statement.compile(dialect=dialect)
            return str(compiled), {**compiled.params, **params}

        lock = sql(_LOCK, key=APPEND_LOCK)
        head = sql(_HEAD)
        anchor = sql(_ANCHOR)
        insert_sql = str(insert(AuditEventRow).compile(dialect=dialect))
        return cls(lock[0], lock[1], head[0], head[1], anchor[0], anchor[1], insert_sql)

    @staticmethod
    def row(record: AuditRecord) -> dict[str, object]:
        """The insert's parameters: :func:`_row`'s, ``detail`` as JSONB (psycopg's adapter)."""
        from psycopg.types.json import Jsonb

        row = _row(record)
        row["detail"] = Jsonb(row["detail"])
        return row


def _row(record: AuditRecord) -> dict[str, object]:
    event = record.event
    return {
        "seq": record.seq,
        "at": record.at,
        "actor": event.actor,
        "tenant": event.tenant,
        "purpose": event.purpose,
        "study_instance_uid": event.study_instance_uid,
        "action": event.action.value,
        "outcome": event.outcome.value,
        "detail": dict(event.detail),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


@contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """Anything but an AuditError raised inside becomes one, saying what failed."""
    try:
        yield
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"{what} failed: {exc}") from exc


def retention_cutoff(now: datetime, retention_days: int, *, allow_short: bool = False) -> datetime:
    """Records before this time may be purged: ``retention_days`` before ``now``.

    Unless ``allow_short``, the cutoff is also never inside the last six *calendar* months
    (180 days are less than six months when they span July–December), and ``retention_days``
    under :data:`MIN_RETENTION_DAYS` is refused: the PRC Cybersecurity Law (art. 21(3)) requires
    network logs to be kept for no less than six months.
    """
    if retention_days < 0:
        raise AuditError(f"retention_days must be >= 0, got {retention_days}")
    cutoff = now - timedelta(days=retention_days)
    if allow_short:
        return cutoff
    if retention_days < MIN_RETENTION_DAYS:
        raise AuditError(
            f"refusing to keep audit records only {retention_days} days: the PRC Cybersecurity"
            f" Law (art. 21(3)) requires network logs to be kept at least six months"
            f" ({MIN_RETENTION_DAYS} days or more; allow_short overrides, e.g. for tests)"
        )
    return min(cutoff, _months_before(now, 6))


def _months_before(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 - months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


_PATIENT_KEY_PARTS = (
    "patientid",
    "patientname",
    "patientsname",
    "patientaddress",
    "birth",
    "nationalid",
    "idcard",
    "medicalrecord",
    "socialsecurity",
)
_PATIENT_KEYS = frozenset({"patient", "mrn", "ssn"})


def _refuse_patient_keys(detail: Json, where: str = "detail") -> None:
    if isinstance(detail, list):
        for i, item in enumerate(detail):
            _refuse_patient_keys(item, f"{where}[{i}]")
    elif isinstance(detail, dict):
        for key, value in detail.items():
            if _names_patient(key):
                raise ValueError(f"{where}.{key}: audit details must not carry patient identifiers")
            if isinstance(value, dict | list):
                _refuse_patient_keys(value, f"{where}.{key}")


@functools.lru_cache(maxsize=4096)
def _names_patient(key: str) -> bool:
    """Whether a detail key looks like a patient identifier's (the same few keys recur in
    every record: the verdict is cached)."""
    flat = "".join(c for c in key.lower() if c.isalnum())
    return flat in _PATIENT_KEYS or any(part in flat for part in _PATIENT_KEY_PARTS)


@contextmanager
def _purging(session: Session) -> Iterator[None]:
    """The flag the audit triggers require to move the anchor and delete records (migration
    0004), set for the statements inside only: PostgreSQL's transaction-local
    ``preread.audit_purge``; on SQLite the connection's ``info``, which the SQL function
    ``preread_audit_purging()`` reads."""
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    flag = text("SELECT set_config('preread.audit_purge', :value, true)")
    if postgres:
        session.execute(flag, {"value": "on"})
    else:
        connection.info[AUDIT_PURGING] = True
    try:
        yield
    finally:
        connection.info.pop(AUDIT_PURGING, None)
    if postgres:  # not after a failure: the transaction is aborted, and the flag ends with it
        session.execute(flag, {"value": ""})


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK, {"key": APPEND_LOCK})


def _anchor(connection: Connection) -> Checkpoint:
    row = connection.execute(_ANCHOR).first()
    return ORIGIN if row is None else Checkpoint(row.after_seq, row.after_hash)


def _head(connection: Connection) -> Checkpoint:
    row = connection.execute(_HEAD).first()
    return _anchor(connection) if row is None else Checkpoint(row.seq, row.hash)


_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_HEAD = select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
_ANCHOR = select(AuditAnchorRow.after_seq, AuditAnchorRow.after_hash).where(
    AuditAnchorRow.id == _ANCHOR_ID
)


def _last_before(session: Session, cutoff: datetime) -> int | None:
    """The last seq such that it and every record before it are older than ``cutoff``."""
    first_kept = session.scalar(
        select(func.min(AuditEventRow.seq)).where(AuditEventRow.at >= cutoff)
    )
    if first_kept is not None:
        return int(first_kept) - 1
    last = session.scalar(select(func.max(AuditEventRow.seq)))
    return None if last is None else int(last)


def _move_anchor(session: Session, anchor: Checkpoint, at: datetime) -> None:
    row = session.get(AuditAnchorRow, _ANCHOR_ID)
    if row is None:
        session.add(
            AuditAnchorRow(
                id=_ANCHOR_ID, after_seq=anchor.seq, after_hash=anchor.hash, updated_at=at
            )
        )
    else:
        row.after_seq, row.after_hash, row.updated_at = anchor.seq, anchor.hash, at
    session.flush()


def _delete_upto(session: Session, seq: int) -> int:
    result = session.execute(
        delete(AuditEventRow).where(_seq_upto(seq)),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0))


def _utc(at: datetime) -> datetime:
    return check_aware(at).astimezone(UTC)  # a naive time is never taken for local time


def _by_seq() -> Select[AuditEventRow]:
    return select(AuditEventRow).order_by(AuditEventRow.seq)


def _seq_upto(seq: int) -> Any:
    return AuditEventRow.seq <= seq


def _stream(session: Session, query: Select[AuditEventRow]) -> Iterator[AuditEventRow]:
    """Rows of ``query`` a batch at a time (a server-side cursor on PostgreSQL)."""
    for row in session.scalars(query, execution_options={"yield_per": STREAM_BATCH}):
        yield row
        session.expunge(row)  # keep memory flat: the identity map holds no row read


def _link(row: AuditEventRow) -> Link:
    return Link(row.seq, _fields(row), row.prev_hash, row.hash)


def _fields(row: AuditEventRow) -> Fields:
    return Fields(
        at=row.at,
        actor=row.actor,
        action=row.action,
        outcome=row.outcome,
        tenant=row.tenant,
        purpose=row.purpose,
        study_instance_uid=row.study_instance_uid,
        detail=row.detail,
    )


def _record(row: AuditEventRow) -> AuditRecord:
    try:
        event = AuditEvent(
            actor=row.actor,
            action=AuditAction(row.action),
            outcome=Outcome(row.outcome),
            tenant=row.tenant,
            purpose=row.purpose,
            study_instance_uid=row.study_instance_uid,
            detail=row.detail,
        )
    except ValueError as exc:
        raise AuditError(f"audit record {row.seq} cannot be read: {exc}") from exc
    return AuditRecord(event, row.seq, row.at, row.prev_hash, row.hash)
