"""A read phantom study in a real Orthanc, for the review tests (tests/reviews, tests/ui).

The study is a small synthetic chest CT (training.phantoms seed 4, 128 × 128, 32 slices) with
three spherical nodules. The "AI result" is the phantom's truth for the first ``found`` of
them, encoded by PreRead's own SEG and SR encoders and stored in Orthanc the way a job stores
it (no model is run: a model's read adds nothing the review depends on and costs minutes); the
others are the ones the AI "missed", which a reader adds with a click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_gateway.client import OrthancClient
from dicom_gateway.source import orthanc_id
from preread.domain import Finding, ModelRef, PreReadResult
from preread.reports import build_seg, build_sr, to_json
from preread.store import (
    JobOutputs,
    JobRecord,
    JobState,
    JobStore,
    JobUpdate,
    StoredObject,
    StudyFacts,
    StudyFingerprint,
)
from training.phantom_dicom import write_phantom_study
from training.phantoms import NoduleSpec, generate_phantom

MODEL = ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "ef" * 32)
NODULES = [  # LPS centres inside the lungs of phantom seed 4; the third is the AI's miss
    NoduleSpec(center_lps_mm=(99.7, -15.5, -135.6), diameter_mm=14.0, type="solid"),
    NoduleSpec(center_lps_mm=(-108.4, 46.2, -130.7), diameter_mm=10.0, type="solid"),
    NoduleSpec(center_lps_mm=(-43.9, -39.3, -130.9), diameter_mm=12.0, type="solid"),
]


@dataclass(frozen=True)
class ReadStudy:
    """The study as the store records it, its done job, and its CT images."""

    facts: StudyFacts
    job: JobRecord
    datasets: Sequence[Dataset]


def read_phantom_study(
    client: OrthancClient,
    store: JobStore,
    tmp: Path,
    *,
    tenant: str,
    patient_id: str = "PHANTOM-REVIEW",
    nodules: list[NoduleSpec] = NODULES,
    found: int = 2,
) -> ReadStudy:
    """Store the phantom's CT in Orthanc and a done reading of it (the first ``found``
    nodules, SR and SEG stored in the study) in ``store``, the study of ``tenant``."""
    phantom = generate_phantom(4, matrix=128, max_slices=32, nodules=nodules)
    files = write_phantom_study(phantom, tmp / "study", patient_id=patient_id)
    datasets = [pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*.dcm"))]
    client.store(datasets)
    first = datasets[0]
    uid, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    labels = phantom.label.astype(np.uint8)
    labels[labels > found] = 0  # the AI "missed" the others
    findings = tuple(
        Finding(
            label=n.label,
            center_lps_mm=n.center_lps_mm,
            long_axis_mm=n.long_axis_mm,
            volume_mm3=n.volume_mm3,
            probability=0.9,
            mean_hu=-10.0,
            voxel_count=int((labels == n.label).sum()),
            lung_side="left" if n.center_lps_mm[0] > 0 else "right",
            nodule_type="solid",
            axial_long_axis_mm=n.long_axis_mm,
            short_axis_mm=n.long_axis_mm - 1.0,
        )
        for n in phantom.nodules[:found]
    )
    assert all(f.voxel_count > 0 for f in findings)
    result = PreReadResult(
        study_instance_uid=uid,
        series_instance_uid=series,
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=findings,
        created=datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
    )
    facts = StudyFacts(
        study_instance_uid=uid,
        orthanc_study_id=orthanc_id(str(first.PatientID), uid),
        tenant=tenant,
        sender_aet="HOSPITAL",
        patient_id=str(first.PatientID),
        issuer_of_patient_id="",
        patient_name=str(first.PatientName),
        patient_birth_date=str(first.get("PatientBirthDate", "")),
        patient_sex=str(first.get("PatientSex", "")),
        accession_number=str(first.get("AccessionNumber", "")),
        study_date=str(first.get("StudyDate", "")),
        study_time=str(first.get("StudyTime", "")),
        study_description=str(first.get("StudyDescription", "")),
        modalities="CT",
    )
    store.record_study(facts)
    job = store.enqueue(uid, facts.orthanc_study_id, MODEL, StudyFingerprint(32, "t")).job
    seg = build_seg(result, datasets, labels, uid_seed=job.id)
    assert seg is not None
    sr = build_sr(result, datasets, seg, uid_seed=job.id)
    client.store([seg.dataset, sr.dataset])  # as the job's write-back does
    owner = "test-worker"
    assert store.claim(job.id, owner, 60) is not None
    store.advance(job.id, owner, JobState.INFERRING, JobUpdate(series_instance_uid=series))
    outputs = JobOutputs(
        sr=StoredObject(sr.series_instance_uid, sr.sop_instance_uid),
        seg=StoredObject(seg.series_instance_uid, seg.sop_instance_uid),
    )
    store.advance(job.id, owner, JobState.WRITING, JobUpdate(outputs=outputs))
    done = store.finish_done(job.id, owner, to_json(result, uid_seed=job.id)).job
    return ReadStudy(facts, done, datasets)
