"""Prior CT studies of a patient from the hospital's PACS, by DICOM query/retrieve.

When a chest CT is read, the comparison with earlier CTs of the same patient needs those studies
in PreRead's Orthanc. They live on the hospital's PACS, a DICOM peer listed in PreRead's Orthanc
(``DicomModalities``, :class:`~dicom_gateway.orthanc_server.DicomPeer`). PreRead's Orthanc does
the DICOM work; this module drives it over its REST API (Orthanc 1.10.1):

* **find** — ``POST /modalities/{peer}/query`` sends one C-FIND at STUDY level (Study Root,
  PS3.4 C.6.2) with PatientID, IssuerOfPatientID when known, ``ModalitiesInStudy`` ``CT`` and
  ``StudyDate`` ``-YYYYMMDD`` (a range ending the day before the current study); the answers are
  read with ``GET /queries/{id}/answers?expand&simplify`` (a JSON list of ``{keyword: string}``
  objects, multi-valued strings joined by ``\\``) and the query is deleted.
* **retrieve** — Orthanc 1.10 has no C-GET as SCU, so ``POST /modalities/{peer}/move`` asks the
  PACS to C-MOVE the study to PreRead's own AE title, synchronously. The PACS must therefore know
  PreRead as a move destination (AE title, host, port) and allow it C-FIND and C-MOVE; PreRead's
  Orthanc must accept C-STORE from the PACS's AE title (``DicomPeer(allow_store=True)``).
  Afterwards the study must be in PreRead's Orthanc with at least as many instances as the PACS
  announced (``NumberOfStudyRelatedInstances``), since some PACS report a C-MOVE with failed
  sub-operations as a mere warning.

:func:`choose_priors` then picks the newest prior (what changed lately) and the earliest
(the baseline, for growth over the longest interval).

Patient identifiers never appear in an error message: a query's PatientID and IssuerOfPatientID
are replaced in anything Orthanc says before it is quoted. StudyInstanceUIDs do appear (the
caller needs to know which retrieval failed).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from dicom_gateway.client import OrthancClient
from dicom_gateway.errors import GatewayError, OrthancError, printable

__all__ = [
    "ArchivedStudy",
    "OrthancPriors",
    "PriorCandidate",
    "PriorsSource",
    "PriorsUnavailableError",
    "choose_priors",
]

#: What a UI (UID) value may be (PS3.5 9.1): digits and dots, at most 64 characters.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: Characters that make a C-FIND key match more than itself (wildcards, PS3.4 C.2.2.2.4) or
#: several values (``\``): a PatientID holding one could return another patient's studies.
_NOT_SINGLE_VALUE = re.compile(r"[*?\\]")
_REDACTED = "<redacted>"
#: How much longer than Orthanc's own C-MOVE timeout the REST call waits for Orthanc's answer.
_REST_MARGIN_S = 5.0


@dataclass(frozen=True)
class PriorCandidate:
    """One earlier study of the patient, as the PACS described it in its C-FIND answer.

    ``study_date`` is ``None`` when the PACS gave no valid StudyDate; ``modalities`` is
    ModalitiesInStudy split into its values (always includes ``"CT"`` for candidates returned by
    :meth:`PriorsSource.find_priors`). Text fields are "" when the PACS did not return them.
    """

    study_instance_uid: str
    study_date: datetime.date | None
    modalities: tuple[str, ...]
    accession_number: str
    study_description: str


@dataclass(frozen=True)
class ArchivedStudy:
    """One CT study on the PACS, as its C-FIND answer over a date range described it (for
    re-reading the archive). Text fields are "" when the PACS did not return them;
    ``instances`` is None when it gave no NumberOfStudyRelatedInstances."""

    study_instance_uid: str
    study_date: datetime.date
    patient_id: str
    issuer_of_patient_id: str
    modalities: tuple[str, ...]
    accession_number: str
    study_description: str
    instances: int | None


class PriorsUnavailableError(GatewayError):
    """Priors could not be found or retrieved: the peer is unknown to PreRead's Orthanc, could
    not be reached (PACS down, association refused or timed out), refused the request, or a
    retrieval failed or came back incomplete.

    ``peer`` is the symbolic name of the DICOM peer in PreRead's Orthanc, ``operation`` is
    ``"find"`` or ``"retrieve"``, ``reason`` says what went wrong. The message never contains a
    patient identifier.
    """

    def __init__(self, peer: str, operation: str, reason: str) -> None:
        self.peer = peer
        self.operation = operation
        self.reason = printable(reason)
        super().__init__(printable(f"priors {operation} via DICOM peer {peer!r}: {self.reason}"))


@runtime_checkable
class PriorsSource(Protocol):
    """Where earlier studies of a patient are found and fetched from (a PACS, or a fake)."""

    def find_priors(
        self,
        patient_id: str,
        issuer_of_patient_id: str | None,
        before: datetime.date,
        exclude_study_uid: str,
    ) -> list[PriorCandidate]:
        """The patient's CT studies dated strictly before ``before``, without
        ``exclude_study_uid`` (the study being read), sorted by date, then StudyInstanceUID;
        undated studies come last.

        Raises:
            PriorsUnavailableError: the source could not be asked or did not answer.
        """
        ...

    def retrieve(self, study_instance_uid: str) -> None:
        """Bring the whole study into PreRead's Orthanc; returns once it is there.

        Raises:
            PriorsUnavailableError: the study could not be retrieved, or not all of it.
        """
        ...


def choose_priors(
    candidates: Iterable[PriorCandidate],
) -> tuple[PriorCandidate | None, PriorCandidate | None]:
    """``(newest, baseline)``: the latest prior, and the earliest one when it is another study.

    The newest shows what changed lately, the baseline the growth over the longest interval
    (volume doubling time). Only dated candidates can be the baseline; an undated candidate is
    the newest only when no candidate has a date (then the smallest StudyInstanceUID, so that
    the choice does not depend on the PACS's answer order). Ties on the date are broken by the
    StudyInstanceUID, for the same reason.
    """
    pool = list(candidates)
    dated = sorted(
        (c for c in pool if c.study_date is not None),
        key=lambda c: (c.study_date, c.study_instance_uid),
    )
    if not dated:
        undated = sorted(pool, key=lambda c: c.study_instance_uid)
        return (undated[0] if undated else None), None
    newest, earliest = dated[-1], dated[0]
    baseline = None if earliest.study_instance_uid == newest.study_instance_uid else earliest
    return newest, baseline


def _text(answer: Mapping[str, Any], keyword: str) -> str:
    """A C-FIND answer's value for ``keyword`` as a stripped string ("" when absent)."""
    value = answer.get(keyword)
    if isinstance(value, list):  # a JSON list, should a server send one for a multi-value
        return "\\".join(str(v) for v in value).strip()
    return value.strip() if isinstance(value, str) else ""


def _date(value: str) -> datetime.date | None:
    """A DA value (``YYYYMMDD``; the ACR-NEMA ``YYYY.MM.DD`` form tolerated), else ``None``."""
    digits = value.replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _modalities(answer: Mapping[str, Any]) -> tuple[str, ...]:
    """ModalitiesInStudy of a C-FIND answer, split into its non-empty values."""
    values = (m.strip() for m in _text(answer, "ModalitiesInStudy").split("\\"))
    return tuple(m for m in values if m)


def _is_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.fullmatch(value) is not None


class OrthancPriors:
    """:class:`PriorsSource` through PreRead's Orthanc: C-FIND and C-MOVE with the peer ``peer``.

    Args:
        client: REST client of PreRead's Orthanc (not closed here).
        peer: the PACS's symbolic name in that Orthanc's ``DicomModalities``.
        target_aet: PreRead's Orthanc's own AE title: the C-MOVE destination, which the PACS
            must know (AE title → host, port).
        timeout_s: bound on one retrieval: Orthanc's ``"Timeout"`` of the C-MOVE (a PACS that
            sends no pending responses must finish within it) and, plus a few seconds, of the
            synchronous REST call; also the bound of each query's REST call. Make it cover
            sending the largest study.
        dicom_timeout_s: Orthanc's ``"Timeout"`` of each C-FIND (connecting and each answer):
            a PACS that is down or hangs fails after about this long. :meth:`retrieve` queries
            before it moves, so a down PACS fails this fast there too.

    Raises:
        ValueError: a timeout is not positive, or ``timeout_s`` does not exceed
            ``dicom_timeout_s`` (the REST call would give up before Orthanc does).
    """

    def __init__(
        self,
        client: OrthancClient,
        peer: str,
        *,
        target_aet: str,
        timeout_s: float = 60,
        dicom_timeout_s: float = 10,
    ) -> None:
        if dicom_timeout_s <= 0 or timeout_s <= dicom_timeout_s:
            raise ValueError(
                f"need 0 < dicom_timeout_s < timeout_s, got {dicom_timeout_s} and {timeout_s}"
            )
        if not 1 <= len(target_aet) <= 16:
            raise ValueError(f"AE title {target_aet!r} must have 1 to 16 characters (PS3.5 6.2)")
        self._client = client
        self.peer = peer
        self.target_aet = target_aet
        self.timeout_s = timeout_s
        self._dicom_timeout = max(1, math.ceil(dicom_timeout_s))  # Orthanc wants integers
        self._move_timeout = max(1, math.ceil(timeout_s))
        self._peer_path = f"/modalities/{quote(peer, safe='')}"

    def __repr__(self) -> str:
        return f"OrthancPriors({self._client!r}, peer={self.peer!r}, target={self.target_aet!r})"

    # -- PriorsSource -------------------------------------------------------------------------

    def find_priors(
        self,
        patient_id: str,
        issuer_of_patient_id: str | None,
        before: datetime.date,
        exclude_study_uid: str,
    ) -> list[PriorCandidate]:
        """C-FIND the patient's earlier CT studies on the PACS (see :class:`PriorsSource`).

        The PACS filters by PatientID (+ IssuerOfPatientID), ModalitiesInStudy and the date
        range; the answers are filtered again here, since a PACS may ignore a key it does not
        support: another PatientID or issuer, a date on or after ``before``, no CT among the
        modalities (also when the PACS returns no ModalitiesInStudy), ``exclude_study_uid``
        and answers without a valid StudyInstanceUID are dropped, duplicates merged.

        Raises:
            PriorsUnavailableError: the patient ID or issuer is empty or holds a wildcard
                (``*``, ``?``) or ``\\`` (the query would match other patients), or the query
                failed (peer unknown, PACS unreachable, query refused).
        """
        return self.patient_studies(
            patient_id,
            issuer_of_patient_id,
            before=before,
            exclude_study_uid=exclude_study_uid,
        )

    def patient_studies(
        self,
        patient_id: str,
        issuer_of_patient_id: str | None,
        *,
        before: datetime.date | None = None,
        after: datetime.date | None = None,
        exclude_study_uid: str = "",
    ) -> list[PriorCandidate]:
        """C-FIND the patient's CT studies dated strictly between ``after`` and ``before``
        (either bound may be None), filtered and sorted as :meth:`find_priors` describes; with
        ``after``, an undated study is dropped too (it cannot be shown to be later).

        Raises:
            PriorsUnavailableError: as :meth:`find_priors`.
        """
        patient_id = patient_id.strip()
        issuer = (issuer_of_patient_id or "").strip() or None
        for what, value in (("patient ID", patient_id), ("issuer of patient ID", issuer)):
            if value is not None and (not value or _NOT_SINGLE_VALUE.search(value)):
                raise PriorsUnavailableError(
                    self.peer,
                    "find",
                    f"the {what} is empty or holds a DICOM wildcard (*, ?) or backslash: "
                    "a query by it could match other patients",
                )
        first = f"{after + datetime.timedelta(days=1):%Y%m%d}" if after is not None else ""
        last = f"{before - datetime.timedelta(days=1):%Y%m%d}" if before is not None else ""
        query: dict[str, str] = {
            "PatientID": patient_id,
            "StudyInstanceUID": "",
            "StudyDate": f"{first}-{last}" if first or last else "",
            "ModalitiesInStudy": "CT",
            "AccessionNumber": "",
            "StudyDescription": "",
        }
        if issuer is not None:
            query["IssuerOfPatientID"] = issuer
        secrets = [s for s in (patient_id, issuer) if s]
        answers = self._query(query, secrets)
        found: dict[str, PriorCandidate] = {}
        for answer in answers:
            uid = _text(answer, "StudyInstanceUID")
            answered_pid = _text(answer, "PatientID")
            answered_issuer = _text(answer, "IssuerOfPatientID")
            modalities = _modalities(answer)
            study_date = _date(_text(answer, "StudyDate"))
            if (
                not _is_uid(uid)
                or uid == exclude_study_uid
                or (answered_pid and answered_pid != patient_id)
                or (issuer is not None and answered_issuer and answered_issuer != issuer)
                or "CT" not in modalities
                or (before is not None and study_date is not None and study_date >= before)
                or (after is not None and (study_date is None or study_date <= after))
            ):
                continue
            found.setdefault(
                uid,
                PriorCandidate(
                    study_instance_uid=uid,
                    study_date=study_date,
                    modalities=modalities,
                    accession_number=_text(answer, "AccessionNumber"),
                    study_description=_text(answer, "StudyDescription"),
                ),
            )
        return sorted(
            found.values(),
            key=lambda c: (
                c.study_date is None,
                c.study_date or datetime.date.min,
                c.study_instance_uid,
            ),
        )

    def archive_studies(self, first: datetime.date, last: datetime.date) -> list[ArchivedStudy]:
        """C-FIND every CT study the PACS holds dated ``first`` to ``last`` (inclusive), with its
        patient: what a re-reading of the archive goes through. Filtered again here like
        :meth:`find_priors` (no valid UID, no CT, no date or a date outside the range: dropped;
        duplicates merged) and sorted by date, then StudyInstanceUID.

        Raises:
            PriorsUnavailableError: ``first`` is after ``last``, or the query failed.
        """
        if first > last:
            raise PriorsUnavailableError(
                self.peer, "find", f"the range {first} to {last} ends before it starts"
            )
        query = {
            "PatientID": "",
            "IssuerOfPatientID": "",
            "StudyInstanceUID": "",
            "StudyDate": f"{first:%Y%m%d}-{last:%Y%m%d}",
            "ModalitiesInStudy": "CT",
            "AccessionNumber": "",
            "StudyDescription": "",
            "NumberOfStudyRelatedInstances": "",
        }
        found: dict[str, ArchivedStudy] = {}
        for answer in self._query(query, []):
            uid = _text(answer, "StudyInstanceUID")
            modalities = _modalities(answer)
            study_date = _date(_text(answer, "StudyDate"))
            if (
                not _is_uid(uid)
                or "CT" not in modalities
                or study_date is None
                or not first <= study_date <= last
            ):
                continue
            count = _text(answer, "NumberOfStudyRelatedInstances")
            found.setdefault(
                uid,
                ArchivedStudy(
                    study_instance_uid=uid,
                    study_date=study_date,
                    patient_id=_text(answer, "PatientID"),
                    issuer_of_patient_id=_text(answer, "IssuerOfPatientID"),
                    modalities=modalities,
                    accession_number=_text(answer, "AccessionNumber"),
                    study_description=_text(answer, "StudyDescription"),
                    instances=int(count) if count.isdigit() else None,
                ),
            )
        return sorted(found.values(), key=lambda a: (a.study_date, a.study_instance_uid))

    def retrieve(self, study_instance_uid: str) -> None:
        """C-MOVE the study from the PACS to PreRead's Orthanc and check that all of it came.

        The PACS is first asked (C-FIND by StudyInstanceUID) how many instances the study has,
        so that a study it does not hold fails clearly and a partial move is noticed. Orthanc
        keeps a move running after the REST call gave up (``timeout_s``): the study may still
        arrive later; a new retrieve of the same study is harmless (Orthanc keeps the
        instances it has, ``OverwriteInstances: false``).

        Raises:
            PriorsUnavailableError: not a valid StudyInstanceUID, the PACS does not hold the
                study, could not be reached or failed the move, or fewer instances arrived than
                the PACS announced.
        """
        uid = study_instance_uid.strip()
        if not _is_uid(uid):
            raise PriorsUnavailableError(
                self.peer, "retrieve", "not a valid StudyInstanceUID (digits and dots, <= 64)"
            )
        answers = self._query(
            {"StudyInstanceUID": uid, "NumberOfStudyRelatedInstances": ""}, [], "retrieve"
        )
        matching = [a for a in answers if _text(a, "StudyInstanceUID") == uid]
        if not matching:
            raise PriorsUnavailableError(self.peer, "retrieve", f"the peer has no study {uid}")
        count = _text(matching[0], "NumberOfStudyRelatedInstances")
        expected = int(count) if count.isdigit() else None
        body = {
            "Level": "Study",
            "Resources": [{"StudyInstanceUID": uid}],
            "TargetAet": self.target_aet,
            "Synchronous": True,
            "Timeout": self._move_timeout,
        }
        path = f"{self._peer_path}/move"
        http_timeout = self._move_timeout + _REST_MARGIN_S  # let Orthanc report its own timeout
        self._call("POST", path, body, [], "retrieve", f"study {uid}", timeout=http_timeout)
        received = self._local_instances(uid)
        if received is None:
            raise PriorsUnavailableError(
                self.peer,
                "retrieve",
                f"the C-MOVE of study {uid} to {self.target_aet} reported success, but the study "
                "is not in PreRead's Orthanc (does the PACS send it to another host or port?)",
            )
        if expected is not None and received < expected:
            raise PriorsUnavailableError(
                self.peer,
                "retrieve",
                f"study {uid} is incomplete: {received} of {expected} instances arrived",
            )

    # -- helpers ------------------------------------------------------------------------------

    def _query(
        self, query: Mapping[str, str], secrets: list[str], operation: str = "find"
    ) -> list[Mapping[str, Any]]:
        """Run one C-FIND at STUDY level and return its answers (the query is then deleted)."""
        body = {"Level": "Study", "Query": dict(query), "Timeout": self._dicom_timeout}
        started = self._call("POST", f"{self._peer_path}/query", body, secrets, operation)
        query_id = started.get("ID") if isinstance(started, Mapping) else None
        if not isinstance(query_id, str) or not query_id:
            raise PriorsUnavailableError(
                self.peer, operation, "PreRead's Orthanc started no query (no ID in its answer)"
            )
        path = f"/queries/{quote(query_id, safe='')}"
        try:
            answers = self._call(
                "GET",
                f"{path}/answers",
                None,
                secrets,
                operation,
                params={"expand": "", "simplify": ""},
            )
        finally:
            with contextlib.suppress(OrthancError):  # Orthanc drops old queries by itself
                self._client.rest("DELETE", path, timeout=self.timeout_s)
        if not isinstance(answers, list):
            raise PriorsUnavailableError(
                self.peer, operation, "the query's answers are not a JSON list"
            )
        return [a for a in answers if isinstance(a, Mapping)]

    def _call(
        self,
        method: str,
        path: str,
        body: Any,
        secrets: list[str],
        operation: str,
        what: str = "",
        *,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One REST call; an OrthancError becomes a PriorsUnavailableError that says which
        part failed, with Orthanc's explanation stripped of ``secrets`` (patient identifiers)."""
        try:
            return self._client.rest(
                method, path, body=body, params=params, timeout=timeout or self.timeout_s
            )
        except OrthancError as exc:
            detail = exc.detail
            for secret in secrets:
                detail = detail.replace(secret, _REDACTED)
            raise PriorsUnavailableError(
                self.peer, operation, _explain(exc, detail, what)
            ) from None  # the cause's message quotes Orthanc before redaction

    def _local_instances(self, study_uid: str) -> int | None:
        """How many instances of the study PreRead's Orthanc holds (``None``: no such study)."""
        try:
            study_id = self._client.find_study(study_uid)
            if study_id is None:
                return None
            stats = self._client.rest(
                "GET", f"/studies/{quote(study_id, safe='')}/statistics", timeout=self.timeout_s
            )
        except OrthancError as exc:
            raise PriorsUnavailableError(
                self.peer, "retrieve", _explain(exc, exc.detail, f"study {study_uid}")
            ) from exc
        count = stats.get("CountInstances") if isinstance(stats, Mapping) else None
        return count if isinstance(count, int) else 0


def _explain(exc: OrthancError, detail: str, what: str) -> str:
    """Why a REST call for priors failed, in words an operator can act on."""
    subject = f" ({what})" if what else ""
    if exc.status is None:
        return f"PreRead's Orthanc did not answer{subject}: {detail}"
    if exc.status == 404 and exc.path.startswith("/modalities/"):
        return (
            f"the peer is not configured in PreRead's Orthanc (DicomModalities){subject}: {detail}"
        )
    lowered = detail.lower()
    if "c-move" in lowered and "connecting to" not in lowered:  # associated, then it failed
        return f"the C-MOVE failed{subject}: {detail}"
    if "association" in lowered or "timeout" in lowered:
        return (
            "the peer could not be reached: association refused, aborted or timed out "
            f"(PACS down, or it does not know or allow PreRead's AE title){subject}: {detail}"
        )
    return f"PreRead's Orthanc refused the request{subject}: HTTP {exc.status}: {detail}"
