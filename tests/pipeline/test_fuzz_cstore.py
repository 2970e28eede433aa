"""Fuzzed series through C-STORE → watcher → job (issue 12, "Fuzzing"): a handful of the
fuzzer's mutated studies (bench/fuzz_mutations.py, each with UIDs of its own) sent by DCMTK's
``storescu`` to a real Orthanc watched by the service with the fuzzer's tiny model.

Whatever Orthanc stores ends in a final job state within a bounded time; a study not read has
its printable reason and nothing of PreRead's in the PACS; and the service, after all of them,
still reads a clean study.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dicom_gateway.orthanc_server import OrthancServer
from preread.service import Service
from preread.store import JobState
from tests.orthanc_support import storescu
from tests.pipeline.test_service import ai_series, authorize, settings_for, wait_final

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fuzz_raw
from fuzz_dicom import MODEL, fuzz_models
from fuzz_mutations import MUTATIONS, build_template, make_case

SEED = 12
SENT = (
    "rescale",
    "geometry",
    "pixel_length",
    "mr_slice",
    "truncate",
    "vr",
    "deep_sequence",
    "hundred_thousand_frames",
    "study_uid",
)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on forged values


def _uid_of(files: list[bytes]) -> str | None:
    """The StudyInstanceUID Orthanc files the case under (None: no file it can parse)."""
    for data in files:
        try:
            return fuzz_raw.value(data, 0x0020000D).rstrip(b"\x00 ").decode("latin-1")
        except (fuzz_raw.Inapplicable, ValueError, IndexError):
            continue
    return None


def test_fuzzed_studies_sent_by_c_store_end_with_a_reason_and_write_nothing(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    template = build_template()
    settings = settings_for(tmp_path, orthanc, None).model_copy(
        update={"models_dir": fuzz_models(tmp_path / "models"), "models": [MODEL]}
    )
    client = orthanc.client()
    with Service(settings) as service:
        authorize(service)
        service.start_loop()
        sent: dict[str, str] = {}
        for name in SENT:
            number = [m.name for m in MUTATIONS].index(name)
            case = make_case(template.renamed(f"cstore-{name}"), SEED, number)
            folder = tmp_path / "sent" / name
            folder.mkdir(parents=True)
            for k, data in enumerate(case.files):
                (folder / f"{k:03d}.dcm").write_bytes(data)
            storescu(orthanc, [folder], options=["-nh"])  # files it cannot read stay here
            uid = _uid_of(case.files)
            if uid is not None and client.find_study(uid) is not None:
                sent[name] = uid
        assert len(sent) >= 6, sent  # most reach Orthanc; the rest were refused at its door

        for name, uid in sent.items():
            job = wait_final(service, uid, timeout_s=90)
            if job.state is JobState.DONE:
                continue
            assert job.reason and job.reason.isascii() and job.reason.isprintable(), (name, job)
            assert ai_series(orthanc, uid) == [], name

        clean = template.renamed("cstore-clean")
        (tmp_path / "clean").mkdir()
        for k, data in enumerate(clean.slices):
            (tmp_path / "clean" / f"{k:03d}.dcm").write_bytes(data)
        assert storescu(orthanc, [tmp_path / "clean"]).returncode == 0
        done = wait_final(service, _uid_of(list(clean.slices)) or "", timeout_s=90)
        assert done.state is JobState.DONE, done.reason
