"""Training pairs pulled from a real Orthanc: only under a valid model-training grant,
de-identified on the way out (no original identifier in any file), audited, and gone from the
next build once the grant is revoked; then the same checks as a folder."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_gateway.deid import MappingKind
from dicom_gateway.orthanc_server import OrthancServer
from preread.audit import AuditAction
from preread.domain import ModelRef
from preread.grants import GrantSpec, Purpose
from preread.settings import Settings
from preread.store import JobStore
from preread.training_access import TrainingAccess
from preread.watcher import Watcher
from tests.orthanc_support import storescu, wait_for_stable_study
from training.config import DataConfig, InputConfig
from training.data import N_SAMPLING_CLASSES, training_cases
from training.errors import TrainingError
from training.orthanc_data import PullResult
from training.phantom_dicom import write_phantoms

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)


def _strings(ds: pydicom.Dataset) -> list[str]:
    """Every text value of ``ds``, recursively (file meta included)."""
    out: list[str] = []
    for elem in [*ds.file_meta, *ds] if hasattr(ds, "file_meta") else list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                out += _strings(item)
        elif isinstance(elem.value, str | bytes) and elem.tag != 0x7FE00010:
            out.append(
                elem.value.decode("latin-1") if isinstance(elem.value, bytes) else elem.value
            )
        elif isinstance(elem.value, list | tuple | pydicom.multival.MultiValue):
            out += [str(v) for v in elem.value]
        elif elem.value is not None:
            out.append(str(elem.value))
    return out


def test_only_granted_studies_go_into_training_de_identified(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    (study,) = write_phantoms(tmp_path / "in", 1, 19, matrix=96, max_slices=40)
    assert study.seg_path is not None
    client = orthanc.client()
    since = client.changes(since=0, limit=1).last
    assert storescu(orthanc, [study.ct_dir]).returncode == 0
    client.store([pydicom.dcmread(study.seg_path)])  # an annotation tool's STOW-RS
    study_id = client.find_study(study.study_instance_uid)
    assert study_id is not None
    wait_for_stable_study(client, study_id, since=since)
    original = pydicom.dcmread(next(study.ct_dir.iterdir()), stop_before_pixels=True)

    settings = Settings(data_dir=tmp_path / "data")
    with JobStore.create(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.migrate()
        access = TrainingAccess.open(settings, store)
        Watcher(client, store, [MODEL], lambda _j: None, tenant_of=lambda _a: "hosp-t",
                audit=access.audit).reconcile()  # fmt: skip
        data = DataConfig(source="orthanc")
        inp = InputConfig(spacing_mm=(2.0, 2.0, 2.0))

        def build() -> tuple[list[object], PullResult]:
            pulled: list[PullResult] = []
            cases = training_cases(
                data, inp, tmp_path / "cache", orthanc=client, admit=access.admit,
                deidentify=access.deidentify, pulled=pulled,
            )  # fmt: skip
            return list(cases), pulled[0]

        # no model-training grant (a clinical one does not count): nothing is taken
        now = datetime.now(UTC)
        spec = GrantSpec(
            tenant="hosp-t", purpose=Purpose.CLINICAL_PREREAD, valid_from=now - timedelta(hours=1),
            valid_to=now + timedelta(days=1), legal_basis="contract", issued_by="platform",
        )  # fmt: skip
        access.grants.create(spec)
        with pytest.raises(TrainingError, match="no valid model-training grant"):
            build()

        training = access.grants.create(
            replace(
                spec,
                purpose=Purpose.MODEL_TRAINING,
                legal_basis="research ethics approval 2025-009",
            )
        )
        cases, pulled = build()
        assert pulled.grants == (training.id,) and len(pulled.cases) == 1
        (case,) = cases
        assert int(case.label.sum()) > 0  # type: ignore[attr-defined]
        folder = pulled.cases[0]
        assert folder.name != study.study_instance_uid  # named by the de-identified UID
        files = [*sorted((folder / "ct").iterdir()), *folder.glob("seg-*.dcm")]
        assert len(files) == 41
        identifiers = {
            str(original.PatientID), str(original.PatientName), str(original.StudyInstanceUID),
            str(original.SeriesInstanceUID), str(original.FrameOfReferenceUID),
            str(original.get("AccessionNumber", "")), str(original.get("PatientBirthDate", "")),
        } - {""}  # fmt: skip
        for path in files:
            values = _strings(pydicom.dcmread(path))
            leaked = [v for v in values for i in identifiers if i and i in v]
            assert not leaked, f"{path.name}: {leaked[:3]}"
        # the re-identification map, apart and encrypted, gives the patient back
        pseudonym = str(pydicom.dcmread(files[0]).PatientID)
        assert access.vault.reidentify(MappingKind.PATIENT_ID, pseudonym) == original.PatientID
        assert str(original.PatientID).encode() not in settings.reid_vault_path.read_bytes()
        actions = [r.event.action for r in access.audit.records(study_uid=study.study_instance_uid)]
        assert AuditAction.DATASET_INCLUDE in actions and AuditAction.DEID in actions
        assert access.audit.verify().ok

        # revoked: the next build leaves the study out
        access.grants.revoke(training.id, by="platform", reason="consent withdrawn")
        with pytest.raises(TrainingError, match="may be used for training"):
            build()
        access.close()
    assert np.isin(case.sampling, range(N_SAMPLING_CLASSES)).all()  # type: ignore[attr-defined]
