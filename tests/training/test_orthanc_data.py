"""Training pairs pulled from a real Orthanc go through the same checks as a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from dicom_gateway.orthanc_server import OrthancServer
from tests.orthanc_support import storescu, wait_for_stable_study
from training.config import DataConfig, InputConfig
from training.data import training_cases
from training.phantom_dicom import write_phantoms


def test_pairs_from_orthanc_become_training_cases(tmp_path: Path, orthanc: OrthancServer) -> None:
    (study,) = write_phantoms(tmp_path / "in", 1, 19, matrix=96, max_slices=40)
    assert study.seg_path is not None
    client = orthanc.client()
    since = client.changes(since=0, limit=1).last
    assert storescu(orthanc, [study.ct_dir]).returncode == 0
    client.store([pydicom.dcmread(study.seg_path)])  # an annotation tool's STOW-RS
    study_id = client.find_study(study.study_instance_uid)
    assert study_id is not None
    wait_for_stable_study(client, study_id, since=since)

    data = DataConfig(source="orthanc")
    cases = training_cases(
        data, InputConfig(spacing_mm=(2.0, 2.0, 2.0)), tmp_path / "cache", orthanc=client
    )
    assert [c.case_id for c in cases] == [study.study_instance_uid]
    assert int(cases[0].label.sum()) > 0
    pulled = tmp_path / "cache" / "orthanc-pairs" / study.study_instance_uid
    assert len(list((pulled / "ct").iterdir())) == 40
    assert len(list(pulled.glob("seg-*.dcm"))) == 1
    assert np.isin(cases[0].sampling, [0, 1, 2]).all()
