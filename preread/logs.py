"""Logging of the long-running commands (``serve``, ``worker``, ``watch``), set up in one place.

PreRead's own loggers write INFO lines that name jobs, models and counts. Third-party libraries
log what they handle at INFO: httpx and httpcore every request URL (DICOMweb URLs hold Study,
Series and SOP Instance UIDs), highdicom the UIDs it copies into an SR or SEG, pydicom and
pynetdicom datasets and associations, uvicorn's access log every path (study UIDs). Those
loggers are held at WARNING, so identifiers stay out of the process's log.
"""

from __future__ import annotations

import logging

__all__ = ["FORMAT", "QUIET_LOGGERS", "configure_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("httpx", "httpcore", "highdicom", "pydicom", "pynetdicom", "uvicorn.access")
"""Libraries whose INFO (and DEBUG) lines carry identifiers: kept at WARNING."""


def configure_logging(level: int = logging.INFO) -> None:
    """``level`` and above of PreRead's own loggers to stderr, WARNING and above of
    :data:`QUIET_LOGGERS` (a child such as ``highdicom.sr`` inherits its parent's level)."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
