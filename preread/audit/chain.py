"""The audit trail's hash chain, as pure functions: no database, no clock.

Every record is linked to the one before it::

    hash(n) = SHA-256( prev_hash(n) ‖ canonical(seq n, fields n) )      prev_hash(n) = hash(n-1)

with ``prev_hash(1) = GENESIS`` (64 zeros). ``canonical`` is JSON with sorted keys and no
whitespace (ASCII only), so the same record always hashes the same on every machine and
database. Changing a record's content breaks its own hash; removing or renumbering records
breaks the sequence or the link after them. Retention removes the oldest records on purpose:
it first moves the *anchor* (the last removed record's seq and hash), and the first retained
record must chain to it.

What the chain alone cannot show is a *truncated tail*: removing the newest records (or the
whole table) leaves a chain that verifies; nor a *rewritten* trail: SHA-256 has no key, so
whoever can write the table can recompute every hash. Checkpoints kept outside the database
catch both: :func:`verify_chain` takes them (``expected_head``, ``checkpoints``) and the chain
must still contain each of those records with that hash. ``preread audit checkpoint`` signs
them into a file the database never sees (:mod:`preread.audit.checkpoints`).

Numbers in ``detail`` are put in one form before hashing (:func:`normalize_detail`): PostgreSQL's
``jsonb`` gives back ``1e+20`` as ``100000000000000000000`` and ``1.0`` as ``1.0``, so an
integral float is written as the integer it equals; other floats keep their shortest repr,
which ``jsonb`` returns unchanged in value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = [
    "GENESIS",
    "ORIGIN",
    "Checkpoint",
    "Fields",
    "Json",
    "Link",
    "Problem",
    "ProblemKind",
    "VerifyResult",
    "canonical",
    "format_time",
    "link_hash",
    "normalize_detail",
    "verify_chain",
]

GENESIS = "0" * 64
"""The ``prev_hash`` of the very first record."""

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"


@dataclass(frozen=True)
class Fields:
    """What one record says, i.e. what its hash covers besides ``seq`` and ``prev_hash``."""

    at: datetime
    actor: str
    action: str
    outcome: str
    tenant: str | None
    purpose: str | None
    study_instance_uid: str | None
    detail: Mapping[str, Json]


@dataclass(frozen=True)
class Link:
    """One stored record as the chain sees it."""

    seq: int
    fields: Fields
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A point on the chain: record ``seq`` had hash ``hash``.

    Used for the anchor (where the retained chain starts) and for a head an operator stored
    elsewhere. Written ``"<seq>:<hash>"`` (:meth:`parse` reads it back).
    """

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """``"<seq>:<hash>"`` as a checkpoint; ValueError when it is not one."""
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64 or not _is_hex(digest):
            raise ValueError(f"{text!r} is not a checkpoint '<seq>:<64 hex digits>'")
        return cls(int(seq), digest.lower())


ORIGIN = Checkpoint(0, GENESIS)
"""The anchor of a chain from which nothing was ever removed."""


class ProblemKind(StrEnum):
    """What is wrong at the first problem :func:`verify_chain` finds."""

    CHANGED = "changed"
    """A record's content no longer matches its hash, or a record was rewritten with a new hash
    (the next record, or the operator's checkpoint, still holds the old one)."""
    REMOVED = "removed"
    """Records are missing: a gap in ``seq``, or the tail before an expected head."""
    ANCHOR = "anchor"
    """The first retained record does not chain to the retention anchor."""


@dataclass(frozen=True)
class Problem:
    """The first problem in the chain: at record ``seq``, what, and (removed) which seqs."""

    seq: int
    kind: ProblemKind
    message: str
    missing: tuple[int, int] | None = None
    """For :attr:`ProblemKind.REMOVED`: the first and last missing seq."""
    checkpoint: Checkpoint | None = None
    """The checkpoint kept elsewhere that the chain contradicts, if that is the problem."""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of verifying the chain.

    ``checked`` records were read; ``head`` is the last one that verified (the anchor when there
    was none) and ``head_at`` its time (None for the anchor); ``anchor`` is where the chain
    started; ``first_problem`` is None when the chain is intact.
    """

    checked: int
    head: Checkpoint
    first_problem: Problem | None = None
    anchor: Checkpoint = ORIGIN
    head_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.first_problem is None

    @property
    def message(self) -> str:
        if self.first_problem is None:
            return f"audit trail intact: {self.checked} records"
        p = self.first_problem
        return f"audit trail broken at record {p.seq} ({p.kind}): {p.message}"


def format_time(at: datetime) -> str:
    """``at`` in ISO 8601 UTC with microseconds (``2025-03-01T08:00:00.000000Z``).

    Raises ValueError for a naive datetime: the chain only holds absolute times.
    """
    return check_aware(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_aware(at: datetime) -> datetime:
    """``at``, if it is timezone-aware; ValueError for a naive datetime (the chain only holds
    absolute times)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: audit times must be timezone-aware")
    return at


def normalize_detail(detail: Mapping[str, Any]) -> dict[str, Json]:
    """``detail`` as plain JSON values in the one form the chain hashes (see module docstring).

    Mappings become dicts (string keys only), tuples and lists become lists, integral floats
    become ints. Raises ValueError for anything JSON cannot hold as the same value (NaN,
    infinities, sets, bytes, non-string keys, NUL characters which PostgreSQL refuses).
    """
    value = _normalize(detail, "detail")
    assert isinstance(value, dict)
    return value


def canonical(seq: int, fields: Fields) -> bytes:
    """The bytes a record's hash covers besides ``prev_hash``: its seq and fields as JSON with
    sorted keys, no whitespace, ASCII only, times as :func:`format_time`."""
    document = {
        "seq": seq,
        "at": format_time(fields.at),
        "actor": fields.actor,
        "action": fields.action,
        "outcome": fields.outcome,
        "tenant": fields.tenant,
        "purpose": fields.purpose,
        "study_instance_uid": fields.study_instance_uid,
        "detail": normalize_detail(fields.detail),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("ascii")


def link_hash(prev_hash: str, seq: int, fields: Fields) -> str:
    """SHA-256 (hex) of ``prev_hash`` (its ASCII hex) followed by :func:`canonical`."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(seq, fields))
    return digest.hexdigest()


def verify_chain(
    records: Iterable[Link],
    *,
    anchor: Checkpoint,
    expected_head: Checkpoint | None = None,
    checkpoints: Iterable[Checkpoint] = (),
) -> VerifyResult:
    """Check ``records`` (in ascending seq order, streamed) against each other and ``anchor``.

    Stops at the first problem (:class:`ProblemKind`): a gap in seq (removed, naming the missing
    seqs), a record whose hash does not match its content (changed), a record whose
    ``prev_hash`` is not the previous record's hash (the previous one was rewritten: changed),
    the first record not chaining to ``anchor`` (anchor). ``expected_head`` and ``checkpoints``
    are points stored elsewhere: the chain must hold each of them, same seq, same hash (this
    catches a truncated tail and a rewritten, re-chained history); one before the anchor was
    purged and is not checked here. The problem then names it (:attr:`Problem.checkpoint`).
    Memory use is constant in the number of records (plus the checkpoints).
    """
    expected: dict[int, list[Checkpoint]] = {}
    for point in (*checkpoints, *(() if expected_head is None else (expected_head,))):
        expected.setdefault(point.seq, []).append(point)
    prev, checked = anchor, 0
    prev_at: datetime | None = None
    for link in records:
        problem = _link_problem(link, prev, anchor) or _first(
            _checkpoint_problem(link.seq, link.hash, point) for point in expected.get(link.seq, ())
        )
        if problem is not None:
            return VerifyResult(checked, prev, problem, anchor, prev_at)
        checked += 1
        prev, prev_at = Checkpoint(link.seq, link.hash), link.fields.at
    problem = _first(
        _head_problem(prev, anchor, point) for seq in sorted(expected) for point in expected[seq]
    )
    return VerifyResult(checked, prev, problem, anchor, prev_at)


def _first(problems: Iterable[Problem | None]) -> Problem | None:
    return next((p for p in problems if p is not None), None)


def _link_problem(link: Link, prev: Checkpoint, anchor: Checkpoint) -> Problem | None:
    expected_seq = prev.seq + 1
    if link.seq > expected_seq:
        missing = (expected_seq, link.seq - 1)
        return Problem(
            expected_seq, ProblemKind.REMOVED, f"{_seqs(missing)} missing", missing=missing
        )
    if link.seq < expected_seq:  # seq is the primary key: only records the anchor covers
        return Problem(
            link.seq,
            ProblemKind.ANCHOR,
            f"record {link.seq} is at or before the anchor (after seq {anchor.seq})",
        )
    if link_hash(link.prev_hash, link.seq, link.fields) != link.hash:
        return Problem(link.seq, ProblemKind.CHANGED, "its content does not match its hash")
    if link.prev_hash == prev.hash:
        return None
    if prev.seq == anchor.seq:
        return Problem(
            link.seq,
            ProblemKind.ANCHOR,
            f"it does not chain to the anchor (record {anchor.seq}, {anchor.hash[:12]}…)",
        )
    return Problem(
        prev.seq,
        ProblemKind.CHANGED,
        f"record {link.seq} chained to another hash: record {prev.seq} was rewritten",
    )


def _checkpoint_problem(seq: int, digest: str, expected: Checkpoint) -> Problem | None:
    if digest == expected.hash:
        return None
    return Problem(
        seq,
        ProblemKind.CHANGED,
        f"its hash is not the checkpointed {expected.hash[:12]}…: history was rewritten",
        checkpoint=expected,
    )


def _head_problem(head: Checkpoint, anchor: Checkpoint, expected: Checkpoint) -> Problem | None:
    if expected.seq > head.seq:
        missing = (head.seq + 1, expected.seq)
        return Problem(
            head.seq + 1,
            ProblemKind.REMOVED,
            f"{_seqs(missing)} missing: the chain ends before the checkpoint {expected.seq}",
            missing=missing,
            checkpoint=expected,
        )
    if expected.seq == anchor.seq and expected.seq > 0:  # purged up to exactly the checkpoint
        return _checkpoint_problem(anchor.seq, anchor.hash, expected)
    return None  # checked on the way, or purged by retention before the anchor


def _seqs(span: tuple[int, int]) -> str:
    first, last = span
    return f"record {first}" if first == last else f"records {first}-{last}"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _normalize(value: object, where: str) -> Json:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{where}: NUL characters cannot be stored")
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value, where)
    if isinstance(value, Mapping):
        return _normalize_mapping(value, where)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_normalize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _normalize_mapping(value: Mapping[Any, Any], where: str) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: key {key!r} is not a string")
        if "\x00" in key:
            raise ValueError(f"{where}: NUL characters cannot be stored")
        kind = type(item)
        if (kind is str and "\x00" not in item) or kind is int or item is None or kind is bool:
            out[key] = item  # the common values, already in their one form (no path string)
        else:
            out[key] = _normalize(item, f"{where}.{key}")
    return out


def _number(value: float, where: str) -> int | float:
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a JSON number")
    exact = Decimal(repr(value))
    return int(exact) if exact == exact.to_integral_value() else value
