"""Identifiers that callers send, each checked against its own format before anything uses it.

A path parameter names a resource; one that is not well formed names nothing, so it is
answered **404** like a missing resource (the body says which parameter is malformed, never
echoes it) — before authentication's database work, before any query: a NUL byte or 10 kB of
junk never reaches the database. Query parameters and headers that carry ids use the same
patterns through FastAPI (``Query(pattern=...)``: 422, as for any other invalid input);
``client_id`` at ``/oauth/token`` is refused as RFC 6749 says (401 ``invalid_client``, like an
unknown client).

Formats:

===============  ==========================================================================
``study_uid``    a DICOM UID (PS3.5 §9.1): ``^[0-9]+(\\.[0-9]+)*$``, at most 64 characters
``job_id``,      a UUID as PreRead writes it (lower case, 36 characters)
``grant_id``,
``webhook_id``
``delivery_id``  ``msg_`` and 32 lower-case hex digits (the ``webhook-id`` header)
``model_id``     a model id (lower-case slug, at most 128 characters)
``version``      a semantic version (https://semver.org), at most 64 characters
``series_uid``,  a DICOM UID, as ``study_uid`` (the DICOMweb proxy, :mod:`preread.dicomweb`)
``instance_uid``
``frames``       a frame list (PS3.18 §8.3.5.1.3): 1-based numbers, comma-separated, at most 256
                 characters
``tag_path``     a bulk data path as Orthanc writes it: a tag (8 hex digits), then
                 ``/index/tag`` pairs into sequences, at most 8 levels
client id        1-64 of ``A-Z a-z 0-9 . _ ~ -``
tenant           1-64 of ``a-z 0-9 - _ .`` (:func:`preread.security.clients.check_tenant`)
===============  ==========================================================================

:func:`check_path_ids` is a dependency of every router (:func:`preread.api.app.create_app`);
:func:`unchecked_path_params` lists route parameters that have no format here, and the app
refuses to start with one. JSON request bodies refuse a NUL byte in any field
(:mod:`preread.api.bodies`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from inference.card import SLUG_PATTERN
from inference.semver import SEMVER_PATTERN

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MESSAGE_ID_PATTERN = r"^msg_[0-9a-f]{32}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._~-]{1,64}$"
TENANT_PATTERN = r"^[a-z0-9_.-]{1,64}$"
MODEL_ID_PATTERN = SLUG_PATTERN
REPORT_FORMATS = ("json", "fhir", "hl7", "html", "sr", "seg")
"""The formats of ``GET /api/v1/studies/{study_uid}/report/{fmt}`` (its ``Format`` enum)."""
FRAMES_PATTERN = r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$"
TAG_PATH_PATTERN = r"^[0-9A-Fa-f]{8}(/[0-9]{1,6}/[0-9A-Fa-f]{8}){0,8}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"  # visible ASCII
TEXT_PATTERN = r"^[^\x00]*$"  # free text: anything PostgreSQL can store (no NUL)


@dataclass(frozen=True)
class IdFormat:
    """What a well-formed identifier of one kind looks like."""

    description: str
    pattern: re.Pattern[str]
    max_length: int

    def accepts(self, value: str) -> bool:
        return len(value) <= self.max_length and self.pattern.fullmatch(value) is not None


def _format(description: str, pattern: str, max_length: int) -> IdFormat:
    return IdFormat(description, re.compile(pattern), max_length)


DICOM_UID = _format("a DICOM UID (digits and dots, at most 64 characters)", UID_PATTERN, 64)
_UUID = _format("a UUID", UUID_PATTERN, 36)
PATH_IDS: dict[str, IdFormat] = {
    "study_uid": DICOM_UID,
    "job_id": _UUID,
    "grant_id": _UUID,
    "webhook_id": _UUID,
    "delivery_id": _format("a message id (msg_ and 32 hex digits)", MESSAGE_ID_PATTERN, 36),
    "model_id": _format("a model id", MODEL_ID_PATTERN, 128),
    "version": _format("a semantic version", SEMVER_PATTERN, 64),
    "series_uid": DICOM_UID,
    "instance_uid": DICOM_UID,
    "frames": _format("a frame list (numbers from 1, comma-separated)", FRAMES_PATTERN, 256),
    "tag_path": _format("a bulk data path (tags and item indexes)", TAG_PATH_PATTERN, 160),
    "fmt": _format(
        f"a report format ({', '.join(REPORT_FORMATS)})", f"^({'|'.join(REPORT_FORMATS)})$", 4
    ),
}
"""Path parameters by name → their format. A new route whose path parameter is neither here
nor an enumeration fails :func:`preread.api.app.create_app`."""
CLIENT_ID = _format("a client id", CLIENT_ID_PATTERN, 64)


def is_client_id(value: str) -> bool:
    """Whether ``value`` can be a client id (``/oauth/token`` refuses others unseen)."""
    return CLIENT_ID.accepts(value)


async def check_path_ids(request: Request) -> None:
    """A dependency: 404 unless every path parameter with a format in :data:`PATH_IDS` is
    well formed (``async``: no thread hop; it only matches patterns)."""
    for name, value in request.path_params.items():
        kind = PATH_IDS.get(name)
        if kind is not None and not (isinstance(value, str) and kind.accepts(value)):
            raise HTTPException(404, f"not found: {name} is not {kind.description}")


def unchecked_path_params(routes: Sequence[BaseRoute]) -> list[str]:
    """``"<path> <param>"`` for each API route path parameter with neither a format in
    :data:`PATH_IDS` nor an enumeration type (which FastAPI checks itself); ``routes`` as
    ``app.routes`` holds them (included routers are walked). Every ``{name}`` of the path
    counts, declared to FastAPI or not (the report route reads its parameters itself)."""
    missing = []
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        declared = {p.name: p.field_info.annotation for p in route.dependant.path_params}
        for name in path_param_names(route):
            kind = declared.get(name)
            if name in PATH_IDS or (isinstance(kind, type) and issubclass(kind, enum.Enum)):
                continue
            missing.append(f"{context.path} {name}")
    return missing


def path_param_names(route: APIRoute) -> list[str]:
    """The names of ``route``'s path parameters, in the order of its path."""
    return list(route.param_convertors)
