"""A real private Orthanc for tests, and helpers to send it studies the way a hospital does.

``orthanc`` (module-scoped) starts ``/usr/sbin/Orthanc`` through
:class:`~dicom_gateway.orthanc_server.OrthancServer` on free ports with StableAge 1 s and one
allowed sender, AE title :data:`HOSPITAL_AET` on 127.0.0.1; tests fail when Orthanc or its
DICOMweb plugin is not installed (Debian: ``orthanc orthanc-dicomweb``). ``storescu`` comes from
DCMTK (Debian: ``dcmtk``).

``tests/conftest.py`` registers the fixture for the whole suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import (
    DICOMWEB_PLUGIN,
    ORTHANC_BINARY,
    DicomPeer,
    OrthancConfig,
    OrthancServer,
    free_port,
    pacs_config,
)
from dicom_gateway.source import Change

HOSPITAL_AET = "HOSPITAL"
#: AE titles of PreRead's Orthanc and of the second Orthanc that plays the hospital PACS
PREREAD_AET, PACS_AET = "PREREAD", "PACS"


def storescu(
    server: OrthancServer,
    paths: Sequence[Path],
    *,
    calling_aet: str = HOSPITAL_AET,
    options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """C-STORE files (or folders, with ``+sd``) to ``server`` as a modality would; ``options``
    go to storescu (e.g. ``-nh``: go on after a file it cannot read or send)."""
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK's storescu is not installed (Debian: dcmtk; ./run setup installs it)")
    command = ["storescu", "-aec", server.aet, "-aet", calling_aet, *options]
    if any(Path(p).is_dir() for p in paths):
        command.append("+sd")
    command += ["127.0.0.1", str(server.dicom_port), *(str(p) for p in paths)]
    env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK: no Nagle delay per PDU (4-11x faster)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def wait_for_stable_study(
    client: OrthancClient, study_id: str, *, since: int = 0, timeout_s: float = 15.0
) -> Change:
    """Follow the change log from ``since`` until ``StableStudy`` for ``study_id`` appears."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = client.changes(since=since, limit=1000)
        for change in page.changes:
            if change.is_stable_study and change.orthanc_id == study_id:
                return change
        since = page.last
        if time.monotonic() > deadline:
            raise AssertionError(f"no StableStudy for {study_id} within {timeout_s} s")
        if page.done:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A running private Orthanc (StableAge 1 s) that accepts C-STORE from HOSPITAL only."""
    if not ORTHANC_BINARY.is_file() or not DICOMWEB_PLUGIN.is_file():
        pytest.fail(
            "Orthanc and its DICOMweb plugin are not installed "
            "(Debian: orthanc orthanc-dicomweb; ./run setup installs them)"
        )
    config = OrthancConfig(
        storage_dir=tmp_path_factory.mktemp("orthanc-storage"),
        stable_age_s=1,
        dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
    )
    with OrthancServer(config) as server:
        yield server


def preread_and_pacs(
    tmp_path_factory: pytest.TempPathFactory, *, pacs_peer: str
) -> tuple[OrthancConfig, OrthancConfig]:
    """Configs of PreRead's Orthanc and of a second one playing the hospital PACS, on free
    ports. PreRead's lists the PACS as ``pacs_peer`` (it may C-STORE the studies it is asked
    to move) and a peer ``down`` on a port nothing listens on (a PACS that is down); the PACS
    lists PreRead as a node that may C-FIND and C-MOVE (PreRead is the move destination)."""
    if not ORTHANC_BINARY.is_file() or not DICOMWEB_PLUGIN.is_file():
        pytest.fail("Orthanc and its DICOMweb plugin are not installed (orthanc orthanc-dicomweb)")
    preread_port, pacs_port, nobody_port = free_port(), free_port(), free_port()
    preread = OrthancConfig(
        storage_dir=tmp_path_factory.mktemp("preread-storage"),
        dicom_port=preread_port,
        aet=PREREAD_AET,
        stable_age_s=1,
        dicom_scu_timeout_s=3,
        dicom_modalities=(
            DicomPeer(pacs_peer, PACS_AET, "127.0.0.1", pacs_port),
            DicomPeer("down", "DOWN", "127.0.0.1", nobody_port),
        ),
    )
    pacs = pacs_config(
        tmp_path_factory.mktemp("pacs-storage"),
        pacs_port,
        aet=PACS_AET,
        preread_aet=PREREAD_AET,
        preread_port=preread_port,
    )
    return preread, pacs
