"""The third-party DICOM validators the tests run (dcmtk's dsrdump, dicom3tools' dciodvfy):
``./run setup`` installs them, so a missing one is a failure, never a skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def installed_tool(name: str) -> str:
    """The path of the program ``name``; the test fails when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: dcmtk, dicom3tools; ./run setup)")
    return path


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's report on the DICOM file ``path``: its non-empty output lines (stdout and
    stderr); the caller asserts on the errors and warnings it cares about."""
    run = subprocess.run(
        [installed_tool("dciodvfy"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [line for line in (run.stderr + run.stdout).splitlines() if line.strip()]


def dsrdump(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """dcmtk's dsrdump of the SR ``path`` (``options`` before it, e.g. ``+Pl``); the caller
    asserts on its exit status, its warnings (stderr) and the tree it prints (stdout)."""
    return subprocess.run(
        [installed_tool("dsrdump"), *options, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
