"""The proxy's errors, answered as JSON ``{"detail": …}`` with their status
(:func:`preread.dicomweb.routes.install` registers the handler)::

    PrereadError
    └── DicomwebError          a request the proxy answers with ``status`` and a fixed text
        ├── QueryError         400: a search parameter PreRead does not pass on
        └── UpstreamError      Orthanc: 404 (no such object), 502 (failed, silent, too
                               large), 503 (no Orthanc), 406 (no acceptable media type)

The texts never hold Orthanc's URL, login or answer.
"""

from __future__ import annotations

from preread.errors import PrereadError

__all__ = ["DicomwebError", "QueryError", "UpstreamError"]


class DicomwebError(PrereadError):
    """A request answered with ``status`` and this message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QueryError(DicomwebError):
    """A QIDO-RS parameter refused before anything is asked of Orthanc."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class UpstreamError(DicomwebError):
    """Orthanc had no answer to pass on."""

    @classmethod
    def for_status(cls, status: int) -> UpstreamError:
        """PreRead's answer to Orthanc's error ``status``."""
        if status == 404:
            return cls(404, "not found")
        if status == 406:
            return cls(406, "no acceptable media type or transfer syntax")
        return cls(502, "the image archive did not answer as expected")
