"""Errors of the report encoders.

PrereadError
└── ReportError   (a PreRead result, its label map and its source images do not fit together)
"""

from __future__ import annotations

from preread.errors import PrereadError


class ReportError(PrereadError):
    """A report cannot be encoded from what was given; the message says what does not fit."""
