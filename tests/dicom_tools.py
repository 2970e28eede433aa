"""The third-party DICOM validators the tests run (dcmtk's dsrdump, dicom3tools' dciodvfy):
``./run setup`` installs them, so a missing one is a failure, never a skip."""

from __future__ import annotations

import shutil

import pytest


def installed_tool(name: str) -> str:
    """The path of the program ``name``; the test fails when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: dcmtk, dicom3tools; ./run setup)")
    return path
