"""``preread demo --once``: the README's main command, end to end, on a small phantom, with
its follow-up part: a second Orthanc plays the hospital's PACS and holds the baseline of a
follow-up pair; the follow-up study's job fetches it (C-FIND, C-MOVE) and compares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dicom_gateway.orthanc_server import free_port
from preread.demo import FOLLOW_UP_SEED
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
    (truth_path,) = (tmp_path / "data" / "demo" / f"follow-up-{FOLLOW_UP_SEED}").glob(
        "*/followup-truth.json"
    )
    truth = json.loads(truth_path.read_text())
    pair = {truth["baseline_study_instance_uid"], truth["follow_up_study_instance_uid"]}
    store = JobStore.create(default_url(tmp_path / "data"))
    try:
        jobs = {t.job.study_instance_uid: t.job for t in store.list_jobs().items}
    finally:
        store.close()
    (job,) = [j for uid, j in jobs.items() if uid not in pair]
    assert job.state == JobState.DONE
    assert job.result is not None and job.result["lung_rads"]["version"] == "v2022"
    # the follow-up study was compared with its prior, fetched from the demo's PACS
    follow_up = jobs[truth["follow_up_study_instance_uid"]]
    assert follow_up.state == JobState.DONE and follow_up.result is not None
    comparison = follow_up.result["comparison"]
    assert comparison["status"] == "compared", comparison
    assert comparison["prior"]["study_instance_uid"] == truth["baseline_study_instance_uid"]
    assert any(
        n["status"] == "persistent" and n["vdt_days"] is not None for n in comparison["nodules"]
    ), comparison
    assert follow_up.result["lung_rads"]["category"] is not None
    assert "Follow-up: the pre-read compared with its prior" in proc.stdout
    assert "comparison compared with the prior" in proc.stdout
    assert "persistent (persistent)" in proc.stdout
    assert f"http://127.0.0.1:{port}/api/v1/studies" in proc.stdout
    assert "Orthanc: http://127.0.0.1:" in proc.stdout
    # the private Orthanc kept its studies in the data folder, and was stopped; so did the PACS
    assert any((tmp_path / "data" / "orthanc").iterdir())
    assert any((tmp_path / "data" / "demo" / "pacs").iterdir())
