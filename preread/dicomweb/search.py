"""QIDO-RS search parameters (PS3.18 §8.3.4) as PreRead passes them on, and which studies a
reader's study search may answer.

Every parameter is checked before Orthanc is asked: a matching key is an attribute keyword or
a tag (``PatientName``, ``00100010``, dotted for sequences), a value is printable text up to
:data:`MAX_VALUE` characters; ``limit``, ``offset``, ``fuzzymatching`` and ``includefield`` are
QIDO's own. Anything else is a 400 (:class:`~preread.dicomweb.errors.QueryError`).

A **study search** never reaches Orthanc unfiltered (:func:`allowed_studies`): its
``StudyInstanceUID`` list is replaced by the studies of the reader's tenant that PreRead knows
and whose grant covers the reader's purpose — the UIDs the search named, or, when it names
none, a page (``limit``/``offset``, newest first) of the tenant's studies in PreRead's job
store; the other matching keys then narrow that set in Orthanc. A search that leaves no study
is answered ``[]`` without asking Orthanc, and Orthanc's answer is filtered by the same set
again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import QueryParams

from preread.api.deps import Services
from preread.api.ids import DICOM_UID
from preread.dicomweb.errors import QueryError
from preread.results import (
    NotAuthorizedError,
    StudyNotFoundError,
    authorize,
    cached_view,
    load_view,
)
from preread.security import Principal
from preread.store import StudyFilter, StudyRecord

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_UIDS", "Search", "allowed_studies"]

DEFAULT_LIMIT = 100
"""Studies a study search without UIDs looks among (QIDO leaves the default to the server)."""
MAX_LIMIT = 1000
MAX_UIDS = 100
"""StudyInstanceUIDs one search may name."""
MAX_VALUE = 256
MAX_PARAMS = 32
_ATTRIBUTE = r"([A-Za-z][A-Za-z0-9]{0,63}|[0-9A-Fa-f]{8})"  # a keyword or a tag
_KEY = re.compile(rf"^{_ATTRIBUTE}(\.{_ATTRIBUTE}){{0,4}}$")  # dotted: into sequences
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_STUDY_UID_KEYS = frozenset({"StudyInstanceUID", "0020000D", "0020000d"})
_QIDO_OWN = frozenset({"limit", "offset", "fuzzymatching", "includefield"})


@dataclass(frozen=True)
class Search:
    """A QIDO-RS query, checked: ``study_uids`` (None: the search names none), the matching
    keys with their values, ``includefield`` / ``fuzzymatching`` as given, and paging."""

    study_uids: tuple[str, ...] | None
    matching: tuple[tuple[str, str], ...]
    limit: int | None
    offset: int

    @classmethod
    def parse(cls, query: QueryParams) -> Search:
        """The query of a request.

        Raises:
            QueryError: a parameter PreRead does not pass on (400).
        """
        items = query.multi_items()
        if len(items) > MAX_PARAMS:
            raise QueryError(f"at most {MAX_PARAMS} search parameters")
        uids: list[str] | None = None
        matching: list[tuple[str, str]] = []
        limit: int | None = None
        offset = 0
        for key, value in items:
            if len(value) > MAX_VALUE or not _PRINTABLE.match(value):
                raise QueryError(f"the value of {key[:64]!r} is not printable text of at most "
                                 f"{MAX_VALUE} characters")  # fmt: skip
            if key == "limit":
                limit = _number(key, value, 1, MAX_LIMIT)
            elif key == "offset":
                offset = _number(key, value, 0, 10_000_000)
            elif key in _STUDY_UID_KEYS:
                uids = [*(uids or []), *_uid_list(value)]
            elif key in _QIDO_OWN or _KEY.match(key):
                matching.append((key, value))
            else:
                raise QueryError(f"{key[:64]!r} is not a QIDO-RS parameter or attribute")
        if uids is not None and len(uids) > MAX_UIDS:
            raise QueryError(f"a search names at most {MAX_UIDS} StudyInstanceUIDs")
        return cls(None if uids is None else tuple(dict.fromkeys(uids)), tuple(matching),
                   limit, offset)  # fmt: skip

    def params(self) -> list[tuple[str, str]]:
        """The query for Orthanc, within one study (the path names it)."""
        paging = [("limit", str(self.limit))] if self.limit is not None else []
        if self.offset:
            paging.append(("offset", str(self.offset)))
        return [*self.matching, *paging]

    def study_params(self, allowed: Sequence[str]) -> list[tuple[str, str]]:
        """The query for Orthanc of a study search over ``allowed`` studies only: paging
        stays with a search that named its UIDs; a search that named none was paged over the
        tenant's studies already (:func:`allowed_studies`)."""
        base = self.params() if self.study_uids is not None else list(self.matching)
        return [*base, ("StudyInstanceUID", ",".join(allowed))]


def _number(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise QueryError(f"{key} must be a whole number from {low} to {high}")
    return int(value)


def _uid_list(value: str) -> list[str]:
    """A UID list (PS3.18 §8.3.4.1: comma- or backslash-separated)."""
    uids = [u.strip() for u in re.split(r"[,\\]", value) if u.strip()]
    for uid in uids:
        if not DICOM_UID.accepts(uid):
            raise QueryError(f"StudyInstanceUID: {DICOM_UID.description} expected")
    return uids


def allowed_studies(services: Services, who: Principal, search: Search) -> list[str]:
    """The StudyInstanceUIDs ``who``'s study search may answer (module docstring): the
    tenant's studies that PreRead knows, each covered by a grant for ``who``'s purpose.
    Blocking (database reads): run it in a worker thread."""
    records: list[StudyRecord] = []
    if search.study_uids is not None:
        for uid in search.study_uids:
            view = cached_view(services.views, who.tenant, uid)
            try:
                view = view or load_view(services.store, who.tenant, uid, views=services.views)
            except StudyNotFoundError:
                continue  # another tenant's, or unknown: the same
            records.append(view.study)
    else:
        page = services.store.list_studies(
            where=StudyFilter(tenant=who.tenant),
            limit=search.limit or DEFAULT_LIMIT,
            offset=search.offset,
        )
        records = [s.study for s in page.items if s.study is not None]
    grants = services.grants
    assert grants is not None  # Services.__post_init__
    allowed = []
    for record in records:
        try:
            authorize(grants, record, who.purpose)
        except NotAuthorizedError:
            continue
        allowed.append(record.facts.study_instance_uid)
    return allowed
