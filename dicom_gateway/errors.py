"""Errors of the DICOM gateway; every one names what it refused and why.

PrereadError
└── GatewayError                 (base of everything dicom_gateway raises on purpose)
    ├── DicomFileError           (a file that is not a readable DICOM instance)
    ├── SeriesError              (a series that cannot become a Volume)
    ├── ResourceNotFoundError    (a study source has no such study / series)
    │   └── OrthancNotFoundError (… and Orthanc said so: HTTP 404; also an OrthancError)
    ├── OrthancError             (an HTTP request to Orthanc failed: status, method, path)
    ├── OrthancStartError        (a private Orthanc could not be started)
    └── ReadOnlySourceError      (a study source refused to change what it does not own)
"""

from __future__ import annotations

from pathlib import Path

from preread.errors import PrereadError

#: Longest reason kept in an error (a header value can be megabytes long).
MAX_REASON_CHARS = 2000


def printable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` as printable ASCII: other characters escaped (``\\x00``, ``\\u00d7``), cut to
    ``limit`` characters. Reasons quote header values and file names, which are untrusted bytes;
    they end up in terminals, logs and JSON."""
    out = "".join(
        c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."


class GatewayError(PrereadError):
    """Base of the errors :mod:`dicom_gateway` raises on purpose."""


class DicomFileError(GatewayError):
    """A file is not a DICOM instance that can be read (DICOM PS3.10 file format)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = printable(reason)
        super().__init__(printable(f"{path}: {reason}"))


class SeriesError(GatewayError):
    """A series cannot be assembled into a volume with trustworthy geometry.

    ``series_uid`` is the SeriesInstanceUID (empty when the instances had none) and ``reason``
    says what is wrong, with the numbers that show it.
    """

    def __init__(self, series_uid: str, reason: str) -> None:
        self.series_uid = series_uid
        self.reason = printable(reason)
        super().__init__(
            printable(f"series {series_uid or '<no SeriesInstanceUID>'}: {self.reason}")
        )


class ResourceNotFoundError(GatewayError):
    """A study source holds no resource with that identifier.

    ``level`` is ``"study"``, ``"series"`` or ``"instance"``; ``key`` the Orthanc ID or UID
    asked for.
    """

    def __init__(self, level: str, key: str, detail: str = "") -> None:
        self.level = level
        self.key = key
        # explicit base call: OrthancNotFoundError inherits from this class and OrthancError
        GatewayError.__init__(self, f"no {level} {key}" + (f" ({detail})" if detail else ""))


class OrthancError(GatewayError):
    """An HTTP request to Orthanc failed or its answer could not be understood.

    ``status`` is the HTTP status (``None`` when no answer came: connection refused, timeout),
    ``method`` and ``path`` the request (the path only: never a URL with credentials), and
    ``detail`` what Orthanc or the parser said. The message never contains a password.
    """

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        answer = "no answer" if status is None else f"HTTP {status}"
        GatewayError.__init__(self, f"Orthanc {method} {path}: {answer}: {detail}")


class OrthancNotFoundError(OrthancError, ResourceNotFoundError):
    """Orthanc answered 404 for a study, series or instance (both error kinds apply)."""

    def __init__(self, method: str, path: str, level: str, key: str, detail: str) -> None:
        self.level = level
        self.key = key
        OrthancError.__init__(self, method, path, 404, detail or f"no {level} {key}")


class OrthancStartError(GatewayError):
    """A private Orthanc could not be started; the message ends with the tail of its log."""


class ReadOnlySourceError(GatewayError):
    """A study source refused to change data it does not own (e.g. a user's input folder)."""
