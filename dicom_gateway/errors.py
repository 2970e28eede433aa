"""Errors of the DICOM gateway; every one names what it refused and why.

PrereadError
└── GatewayError                 (base of everything dicom_gateway raises on purpose)
    ├── DicomFileError           (a file that is not a readable DICOM instance)
    └── SeriesError              (a series that cannot become a Volume)
"""

from __future__ import annotations

from pathlib import Path

from preread.errors import PrereadError


class GatewayError(PrereadError):
    """Base of the errors :mod:`dicom_gateway` raises on purpose."""


class DicomFileError(GatewayError):
    """A file is not a DICOM instance that can be read (DICOM PS3.10 file format)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SeriesError(GatewayError):
    """A series cannot be assembled into a volume with trustworthy geometry.

    ``series_uid`` is the SeriesInstanceUID (empty when the instances had none) and ``reason``
    says what is wrong, with the numbers that show it.
    """

    def __init__(self, series_uid: str, reason: str) -> None:
        self.series_uid = series_uid
        self.reason = reason
        super().__init__(f"series {series_uid or '<no SeriesInstanceUID>'}: {reason}")
