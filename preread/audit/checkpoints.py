"""Signed checkpoints of the audit trail, in a file the database never holds.

The hash chain (:mod:`.chain`) is unkeyed SHA-256: whoever can write the tables and disable
their triggers (a database superuser, the tables' owner, whoever holds the SQLite file) can
rewrite records and recompute every hash, and the chain verifies. A *checkpoint* (a record's
seq and hash) kept outside the database catches that: the rewritten trail no longer holds it.
``preread audit checkpoint`` signs the verified head with a key the database never sees and
appends it to a JSON-lines file; ``preread audit verify`` checks the chain against every line.

One line per checkpoint, appended, never rewritten (keys sorted)::

    {"alg":"HMAC-SHA256","at":"…Z","hash":"<64 hex>","prev":"<sig of the line before, or ''>",
     "record_at":"…Z","seq":42,"sig":"<64 hex>"}

``sig`` is HMAC-SHA256 (RFC 2104) with the key over the JSON of all other fields (sorted keys,
no whitespace). ``at`` is when the checkpoint was taken, ``record_at`` the time of record
``seq`` (null for the anchor): a checkpoint whose record is gone before the anchor although
it is inside the retention period (:data:`~preread.audit.log.MIN_RETENTION_DAYS`) shows an
anchor moved by someone other than the purge. ``prev`` links the lines, so a line removed from
the middle, reordered or edited breaks the file; a cut *end* of the file does not show in the
file itself: append-only storage (``chattr +a``, a WORM bucket) or copies shipped elsewhere
keep it whole.

The key is a file of at least 32 bytes (``PREREAD_AUDIT_CHECKPOINT_KEY_FILE``), created 0600
with 32 random bytes by the first checkpoint; whoever holds it can forge checkpoints, so it
belongs where the database's administrators cannot read it. Errors: :class:`CheckpointError`
(the file or key cannot be used), :class:`CheckpointsTampered` (a line does not verify).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from preread.audit.chain import Checkpoint, Problem, ProblemKind, VerifyResult, format_time
from preread.audit.log import MIN_RETENTION_DAYS, AuditError, AuditLog, retention_cutoff
from preread.private_files import write_private_file

__all__ = [
    "ALGORITHM",
    "CheckpointError",
    "CheckpointFile",
    "CheckpointSchedule",
    "CheckpointsTampered",
    "SignedCheckpoint",
    "TrailDoesNotVerify",
    "sign_head",
    "verify_signed",
]
log = logging.getLogger(__name__)

ALGORITHM = "HMAC-SHA256"
MIN_KEY_BYTES = 32


class CheckpointError(AuditError):
    """The checkpoint file or its key cannot be used (missing key, unreadable file)."""


class TrailDoesNotVerify(CheckpointError):
    """The trail does not verify against its signed checkpoints: its head is not signed."""


class CheckpointsTampered(CheckpointError):
    """A line of the checkpoint file does not verify: edited, forged, removed or reordered
    (or signed with another key). ``line`` is its number (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class SignedCheckpoint:
    """One verified line of the checkpoint file."""

    seq: int
    hash: str
    at: datetime
    record_at: datetime | None
    prev: str
    sig: str
    line: int
    source: Path

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.seq, self.hash)

    def describe(self) -> str:
        return (
            f"signed checkpoint {self.seq}:{self.hash[:12]}… of {format_time(self.at)},"
            f" line {self.line} of {self.source}"
        )


class CheckpointFile:
    """The JSON-lines file of signed checkpoints at ``path``, signed with the key at
    ``key_path`` (see the module docstring)."""

    def __init__(self, path: Path, key_path: Path) -> None:
        self.path = path
        self.key_path = key_path

    def read(self) -> list[SignedCheckpoint]:
        """Every line, verified (signature and link to the line before); [] without a file.

        Raises:
            CheckpointsTampered: at the first line that does not verify.
            CheckpointError: the file or the key cannot be read.
        """
        try:
            lines = self.path.read_text(encoding="ascii").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"cannot read the checkpoint file {self.path}: {exc}") from exc
        if not lines:
            return []
        key = self._key()
        out: list[SignedCheckpoint] = []
        for number, text in enumerate(lines, start=1):
            point = self._parse(text, number)
            if not hmac.compare_digest(point.sig, _sign(key, _payload(point))):
                raise self._tampered(number, "its signature does not verify (edited or forged)")
            expected_prev = out[-1].sig if out else ""
            if point.prev != expected_prev:
                raise self._tampered(number, "it does not follow the line before (lines removed)")
            out.append(point)
        return out

    def append(
        self, head: Checkpoint, record_at: datetime | None, at: datetime
    ) -> SignedCheckpoint:
        """Sign ``head`` (a verified head of the chain; ``record_at`` its record's time) taken at
        ``at`` and append it as one line. The first checkpoint creates the key if there is none
        (0600). Holds an exclusive lock on the file while it reads the last line and appends.

        Raises:
            CheckpointsTampered: the file does not verify (nothing is appended to it).
            CheckpointError: the file or the key cannot be used.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CheckpointError(f"cannot open the checkpoint file {self.path}: {exc}") from exc
        with os.fdopen(fd, "a", encoding="ascii") as sink:
            fcntl.flock(sink.fileno(), fcntl.LOCK_EX)
            before = self.read()
            key = self._key(create=not before)
            point = SignedCheckpoint(
                seq=head.seq,
                hash=head.hash,
                at=at.astimezone(UTC),
                record_at=None if record_at is None else record_at.astimezone(UTC),
                prev=before[-1].sig if before else "",
                sig="",
                line=len(before) + 1,
                source=self.path,
            )
            payload = _payload(point)
            point = replace(point, sig=_sign(key, payload))
            document = {**payload, "sig": point.sig}
            try:
                sink.write(json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
            except OSError as exc:
                raise CheckpointError(f"cannot append to {self.path}: {exc}") from exc
        return point

    def _key(self, *, create: bool = False) -> bytes:
        try:
            key = self.key_path.read_bytes().strip()
        except FileNotFoundError:
            if not create:
                raise CheckpointError(
                    f"the audit checkpoint key {self.key_path} is missing"
                    " (PREREAD_AUDIT_CHECKPOINT_KEY_FILE): the checkpoints cannot be verified"
                ) from None
            key = secrets.token_hex(MIN_KEY_BYTES).encode("ascii")
            try:
                write_private_file(self.key_path, key + b"\n", exclusive=True)
            except OSError as exc:
                raise CheckpointError(f"cannot create {self.key_path}: {exc}") from exc
        except OSError as exc:
            raise CheckpointError(f"cannot read the checkpoint key {self.key_path}: {exc}") from exc
        if len(key) < MIN_KEY_BYTES:
            raise CheckpointError(
                f"the audit checkpoint key {self.key_path} is shorter than {MIN_KEY_BYTES} bytes"
            )
        return key

    def _parse(self, text: str, number: int) -> SignedCheckpoint:
        try:
            doc = json.loads(text)
            if doc["alg"] != ALGORITHM:
                raise ValueError(f"algorithm {doc['alg']!r} is not {ALGORITHM}")
            point = Checkpoint.parse(f"{int(doc['seq'])}:{doc['hash']}")
            return SignedCheckpoint(
                seq=point.seq,
                hash=point.hash,
                at=_time(doc["at"]),
                record_at=None if doc["record_at"] is None else _time(doc["record_at"]),
                prev=str(doc["prev"]),
                sig=str(doc["sig"]),
                line=number,
                source=self.path,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise self._tampered(number, f"it is not a checkpoint ({exc})") from None

    def _tampered(self, number: int, why: str) -> CheckpointsTampered:
        return CheckpointsTampered(
            f"the checkpoint file {self.path} is broken at line {number}: {why}", number
        )


def verify_signed(
    log: AuditLog,
    signed: Sequence[SignedCheckpoint],
    *,
    expected_head: Checkpoint | None = None,
    now: datetime | None = None,
) -> VerifyResult:
    """:meth:`AuditLog.verify` against every signed checkpoint (and ``expected_head``).

    A problem about a checkpoint names its line. Besides the chain's own problems: a signed
    checkpoint now before the anchor although its record is younger than the retention period
    (:func:`~preread.audit.log.retention_cutoff` of ``now``) means the anchor was moved and
    records removed other than by the purge (reported as removed).
    """
    result = log.verify(expected_head, checkpoints=[s.checkpoint for s in signed])
    problem = result.first_problem
    if problem is None:
        cutoff = retention_cutoff(now or datetime.now(UTC), MIN_RETENTION_DAYS)
        problem = _removed_inside_retention(signed, result.anchor, cutoff)
    elif problem.checkpoint is not None:
        named = next((s for s in signed if s.checkpoint == problem.checkpoint), None)
        if named is not None:
            problem = replace(problem, message=f"{problem.message} ({named.describe()})")
    return replace(result, first_problem=problem)


def sign_head(
    trail: AuditLog, checkpoints: CheckpointFile, now: datetime, *, only_if_new: bool = False
) -> SignedCheckpoint | None:
    """Verify the trail against every signed checkpoint (:func:`verify_signed`), then sign its
    head into ``checkpoints``. ``only_if_new``: None, nothing appended, when the head is the
    last checkpoint's (nothing was recorded since).

    Raises:
        TrailDoesNotVerify: the trail does not verify (its message says where).
        CheckpointsTampered: a line of the file does not verify.
        CheckpointError, AuditError: the file, the key or the database cannot be used.
    """
    signed = checkpoints.read()
    result = verify_signed(trail, signed, now=now)
    if not result.ok:
        raise TrailDoesNotVerify(result.message)
    if only_if_new and signed and signed[-1].checkpoint == result.head:
        return None
    return checkpoints.append(result.head, result.head_at, now)


class CheckpointSchedule:
    """Signs the trail's head every ``interval_s`` when it moved: what the service's loop and
    the leader of ``preread watch`` run (``PREREAD_AUDIT_CHECKPOINT_INTERVAL_S``), so that a
    rewritten trail is caught without anyone remembering ``preread audit checkpoint``.

    A trail or file that does not verify is logged as an ERROR each time it is due, and nothing
    is signed: a checkpoint never vouches for a tampered trail. The first is due one interval
    after the start. Each one verifies the whole chain (a read of every record), so the loops
    call :meth:`poll`, which runs it beside them."""

    def __init__(
        self,
        trail: AuditLog,
        checkpoints: CheckpointFile,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trail = trail
        self.checkpoints = checkpoints
        self.interval_s = interval_s
        self._clock = clock
        self._last = clock()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """:meth:`run_if_due` in a thread of its own, at most one at a time: the loop that
        calls this (the watcher's, polling Orthanc) never waits while the chain is verified."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._clock() - self._last < self.interval_s:
            return
        self._thread = threading.Thread(
            target=self.run_if_due, name="preread-audit-checkpoint", daemon=True
        )
        self._thread.start()

    def run_if_due(self, now: datetime | None = None) -> SignedCheckpoint | None:
        """Sign the head if an interval has passed since the last try and the head moved;
        the checkpoint appended, else None."""
        if self._clock() - self._last < self.interval_s:
            return None
        self._last = self._clock()
        try:
            point = sign_head(
                self.trail, self.checkpoints, now or datetime.now(UTC), only_if_new=True
            )
        except AuditError as exc:  # CheckpointError and its kinds are AuditErrors
            log.error("scheduled audit checkpoint not taken: %s", exc)
            return None
        if point is not None:
            log.info("audit checkpoint %s signed (line %d)", point.checkpoint, point.line)
        return point


def _removed_inside_retention(
    signed: Sequence[SignedCheckpoint], anchor: Checkpoint, cutoff: datetime
) -> Problem | None:
    for point in sorted(signed, key=lambda s: s.seq):
        if point.seq > anchor.seq:
            return None
        if point.record_at is not None and point.record_at >= cutoff:
            return Problem(
                point.seq,
                ProblemKind.REMOVED,
                f"the chain starts after record {anchor.seq}, but record {point.seq} was"
                f" recorded at {format_time(point.record_at)}, inside the retention period:"
                f" records were removed other than by the purge ({point.describe()})",
                checkpoint=point.checkpoint,
            )
    return None


def _payload(point: SignedCheckpoint) -> dict[str, object]:
    return {
        "alg": ALGORITHM,
        "at": format_time(point.at),
        "hash": point.hash,
        "prev": point.prev,
        "record_at": None if point.record_at is None else format_time(point.record_at),
        "seq": point.seq,
    }


def _sign(key: bytes, payload: dict[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time")
    parsed = datetime.fromisoformat(value)
    format_time(parsed)  # refuses a naive time
    return parsed.astimezone(UTC)
