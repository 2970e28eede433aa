"""``preread read``: the pipeline on files, and the regression corpus through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from inference.predict import Predictor
from inference.registry import Registry
from preread.read import read_folder
from tests.pipeline.conftest import MODELS_DIR, StudyOnDisk


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(Registry(MODELS_DIR).find("lung-nodule"))


def test_read_cli_prints_json_and_writes_sr_and_seg(
    tmp_path: Path, easy_study: StudyOnDisk
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PREREAD_MODELS_DIR": str(MODELS_DIR), "PREREAD_DATA_DIR": str(tmp_path)}
    cmd = ["read", str(easy_study.ct_dir), "--out", str(out), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "preread.cli", *cmd],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "done"
    pre = doc["preread"]
    assert pre["study_instance_uid"] == easy_study.study_uid
    assert pre["ai_generated"] is True
    for f in pre["findings"]:
        assert len(f["center_lps_mm"]) == 3
        assert f["long_axis_mm"] > 0 and f["volume_mm3"] > 0 and 0 < f["probability"] <= 1
    written = sorted(p.name for p in (out / easy_study.study_uid).iterdir())
    key_objects = ["KOS.dcm", *sorted(f"SC-{f['label']}.dcm" for f in pre["findings"])]
    assert written == (
        sorted([*key_objects, "SEG.dcm", "SR.dcm"]) if pre["findings"] else ["SR.dcm"]
    )
    sr = pydicom.dcmread(out / easy_study.study_uid / "SR.dcm")
    assert sr.StudyInstanceUID == easy_study.study_uid
    assert (
        sr.SeriesInstanceUID != pydicom.dcmread(next(easy_study.ct_dir.iterdir())).SeriesInstanceUID
    )


def test_read_of_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PREREAD_MODELS_DIR": str(MODELS_DIR), "PREREAD_DATA_DIR": str(tmp_path)}
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "preread.cli", "read", str(tmp_path / "empty")],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no DICOM study found" in proc.stderr


def test_every_corpus_study_is_read_or_refused_with_a_reason(
    corpus: Path, predictor: Predictor, tmp_path: Path
) -> None:
    """The Orthanc project's regression files: nothing crashes, nothing is silently dropped."""
    results = read_folder(corpus, predictor, tmp_path / "out")
    assert len(results) > 20
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
        assert r.status in {"done", "not_applicable", "failed"}
        if r.status != "done":
            assert r.reason, r
    # the corpus has MR, single CT slices, colour images...: none of it is a chest CT series
    assert by_status.get("not_applicable", 0) > 0
    studies = {
        str(ds.StudyInstanceUID)
        for p in corpus.rglob("*")
        if p.is_file()
        for ds in [_header(p)]
        if ds is not None and "StudyInstanceUID" in ds and "SeriesInstanceUID" in ds
    }
    assert studies <= {r.study_instance_uid for r in results}, "a study was dropped"


def _header(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
