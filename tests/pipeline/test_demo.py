"""``preread demo --once``: the README's main command, end to end, on a small phantom."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dicom_gateway.orthanc_server import free_port
from preread.store import JobState, JobStore, default_url
from tests.pipeline.conftest import MODELS_DIR


def test_demo_once_sends_a_study_and_prints_its_preread(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PREREAD_DATA_DIR": str(tmp_path / "data"),
        "PREREAD_MODELS_DIR": str(MODELS_DIR),
        "COLUMNS": "200",
    }
    port = free_port()
    args = ["demo", "--once", "--count", "1", "--matrix", "512", "--max-slices", "64"]
    proc = subprocess.run(
        [sys.executable, "-m", "preread.cli", *args, "--port", str(port)],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CPUExecutionProvider" in proc.stdout
    assert "done" in proc.stdout
    assert "Lung-RADS" in proc.stdout
    # the demo's phantoms stand for screening exams: its reading carries Lung-RADS v2022
    store = JobStore.create(default_url(tmp_path / "data"))
    try:
        (job,) = [t.job for t in store.list_jobs(states=[JobState.DONE]).items]
    finally:
        store.close()
    assert job.result is not None and job.result["lung_rads"]["version"] == "v2022"
    assert f"http://127.0.0.1:{port}/api/v1/studies" in proc.stdout
    assert "Orthanc: http://127.0.0.1:" in proc.stdout
    # the private Orthanc kept its studies in the data folder, and was stopped
    assert any((tmp_path / "data" / "orthanc").iterdir())
