"""Fixtures shared by the whole suite: a real private Orthanc (see tests/orthanc_support.py)."""

from tests.orthanc_support import orthanc

__all__ = ["orthanc"]
