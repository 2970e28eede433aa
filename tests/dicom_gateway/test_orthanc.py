"""The Orthanc client and server against a real private Orthanc, and the folder twin.

One small phantom study (96×96, 30 slices, written by ``training.phantom_dicom``) is sent with
DCMTK's ``storescu`` as the calling AE title HOSPITAL; the same CT files, copied to a folder,
feed :class:`FolderStudySource`, and the read tests run against both sources.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, generate_uid

from dicom_gateway.client import OrthancClient
from dicom_gateway.errors import (
    OrthancError,
    OrthancNotFoundError,
    ReadOnlySourceError,
    ResourceNotFoundError,
)
from dicom_gateway.folder import FolderStudySource
from dicom_gateway.orthanc_server import OrthancConfig, OrthancServer, free_port, render_config
from dicom_gateway.source import StudySource, dataset_bytes, orthanc_id
from dicom_gateway.volume import assemble_volume, read_series_dir
from tests.orthanc_support import HOSPITAL_AET, storescu, wait_for_stable_study
from training.phantom_dicom import StudyFiles, write_phantoms

SEED = 7  # a phantom with nodules, so it has a truth SEG
PATIENT_ID = "PHANTOM-000007"
SLICES = 30


@dataclass(frozen=True)
class Sent:
    files: StudyFiles
    study_id: str  # Orthanc ID
    series_id: str


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    (study,) = write_phantoms(tmp_path_factory.mktemp("phantom"), 1, SEED, matrix=96, max_slices=30)
    assert study.seg_path is not None
    return study


@pytest.fixture(scope="module")
def client(orthanc: OrthancServer) -> Iterator[OrthancClient]:
    with orthanc.client(timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def sent(orthanc: OrthancServer, client: OrthancClient, phantom: StudyFiles) -> Sent:
    """The phantom's CT series, C-STOREd by HOSPITAL and stable in Orthanc."""
    done = storescu(orthanc, [phantom.ct_dir])
    assert done.returncode == 0, done.stderr
    ds = pydicom.dcmread(next(phantom.ct_dir.iterdir()), stop_before_pixels=True)
    study_id = orthanc_id(str(ds.PatientID), phantom.study_instance_uid)
    wait_for_stable_study(client, study_id, timeout_s=15)
    series_id = orthanc_id(str(ds.PatientID), phantom.study_instance_uid, ds.SeriesInstanceUID)
    return Sent(phantom, study_id, series_id)


@pytest.fixture(scope="module")
def folder(phantom: StudyFiles, tmp_path_factory: pytest.TempPathFactory) -> FolderStudySource:
    root = tmp_path_factory.mktemp("folder-source")
    shutil.copytree(phantom.ct_dir, root / "ct")
    return FolderStudySource(root)


@pytest.fixture(params=["orthanc", "folder"])
def source(request: pytest.FixtureRequest, sent: Sent) -> StudySource:
    """Each read test runs against Orthanc and against the folder twin."""
    if request.param == "orthanc":
        chosen: StudySource = request.getfixturevalue("client")
    else:
        chosen = request.getfixturevalue("folder")
    return chosen


def relabelled_seg(files: StudyFiles) -> pydicom.Dataset:
    """The phantom's truth SEG as a new instance of a new series of the same study."""
    assert files.seg_path is not None
    seg = pydicom.dcmread(files.seg_path)
    seg.SeriesInstanceUID = generate_uid()
    seg.SOPInstanceUID = generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.SeriesDescription = "PreRead test result"
    return seg


def test_both_sources_satisfy_the_protocol(client: OrthancClient, folder: FolderStudySource):
    sources: list[StudySource] = [client, folder]  # checked by mypy, too
    assert all(isinstance(s, StudySource) for s in sources)


# -- server and configuration --------------------------------------------------------------------


def test_a_closed_keep_alive_connection_repeats_a_get_once_never_a_post() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) % 2 == 1:  # every first try finds the connection closed
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"Changes": [], "Done": True, "Last": 0})

    client = OrthancClient("http://orthanc", "u", "p", transport=httpx.MockTransport(handler))
    assert client.changes().changes == ()
    assert calls == ["GET", "GET"]
    calls.clear()
    with pytest.raises(OrthancError, match="RemoteProtocolError"):
        client.rest("POST", "/modalities/pacs/query", body={})
    assert calls == ["POST"]


def test_render_config_is_hardened() -> None:
    cfg = OrthancConfig(storage_dir=Path("/x"), http_port=1, dicom_port=2, password="pw")
    rendered = render_config(cfg)
    assert rendered["RemoteAccessAllowed"] is False
    assert rendered["AuthenticationEnabled"] is True
    assert rendered["RegisteredUsers"] == {"preread": "pw"}
    assert rendered["HttpCompressionEnabled"] is False
    assert rendered["ExecuteLuaEnabled"] is False
    assert rendered["RestApiWriteToFileSystemEnabled"] is False
    assert rendered["DicomAlwaysAllowStore"] is False
    assert rendered["DicomCheckCalledAet"] is True
    assert rendered["MaximumStorageSize"] == 0  # 1.10 would recycle (delete) old patients
    assert "MaximumStorageMode" not in rendered  # Orthanc >= 1.11.2 only
    assert rendered["DicomWeb"]["Enable"] is True
    assert "pw" not in repr(cfg)
    with pytest.raises(ValueError, match="password"):
        render_config(OrthancConfig(storage_dir=Path("/x"), http_port=1, dicom_port=2))
    with pytest.raises(ValueError, match="ports"):
        render_config(OrthancConfig(storage_dir=Path("/x"), password="pw"))


def test_system_answers_only_with_credentials(orthanc: OrthancServer) -> None:
    assert httpx.get(f"{orthanc.url}/system").status_code == 401
    with orthanc.client() as c:
        system = c.system()
    assert (system.dicom_aet, system.dicom_port) == (orthanc.aet, orthanc.dicom_port)
    assert system.version.startswith("1.")
    assert orthanc.password not in repr(orthanc) + repr(orthanc.config)


def test_config_file_is_private(orthanc: OrthancServer) -> None:
    config_path = orthanc.log_path.parent / "orthanc.json"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    assert json.loads(config_path.read_text())["StableAge"] == 1
    assert orthanc.password not in orthanc.log_path.read_text()


def test_wrong_password_is_401_without_the_password(orthanc: OrthancServer) -> None:
    wrong = "not-the-password-" + orthanc.password[:4]
    with OrthancClient(orthanc.url, orthanc.username, wrong) as c, pytest.raises(OrthancError) as e:
        c.system()
    assert e.value.status == 401
    assert e.value.path == "/system"
    assert wrong not in str(e.value)
    assert orthanc.password not in str(e.value)


def test_unreachable_orthanc_is_an_orthanc_error() -> None:
    client = OrthancClient(f"http://127.0.0.1:{free_port()}", "u", "p", timeout=2)
    with client, pytest.raises(OrthancError) as e:
        client.changes()
    assert e.value.status is None


def test_unknown_calling_aet_cannot_store(
    orthanc: OrthancServer,
    client: OrthancClient,
    phantom: StudyFiles,
) -> None:
    before = {s.study_instance_uid for s in client.studies()}
    one = sorted(phantom.ct_dir.iterdir())[:1]
    refused = storescu(orthanc, one, calling_aet="INTRUDER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert {s.study_instance_uid for s in client.studies()} <= before | {phantom.study_instance_uid}


# -- reading: Orthanc and folder ------------------------------------------------------------------


def test_stable_study_change_names_the_study(client: OrthancClient, sent: Sent) -> None:
    page = client.changes(since=0, limit=1000)
    stable = [c for c in page.changes if c.is_stable_study]
    assert sent.study_id in {c.orthanc_id for c in stable}
    assert page.last >= max(c.seq for c in page.changes)
    assert [c.seq for c in page.changes] == sorted(c.seq for c in page.changes)


def test_study_info(source: StudySource, sent: Sent) -> None:
    study = source.study(sent.study_id)
    assert study.study_instance_uid == sent.files.study_instance_uid
    assert study.patient_id == PATIENT_ID
    assert study.study_description
    assert study.series_ids == (sent.series_id,)
    assert study.is_stable
    assert source.find_study(sent.files.study_instance_uid) == sent.study_id
    assert sent.study_id in {s.orthanc_id for s in source.studies()}


def test_series_info(source: StudySource, sent: Sent) -> None:
    series = source.series(sent.series_id)
    assert series.series_instance_uid == sent.files.series_instance_uid
    assert series.study_instance_uid == sent.files.study_instance_uid
    assert series.study_orthanc_id == sent.study_id
    assert (series.modality, series.instance_count) == ("CT", SLICES)
    assert series.sample.sop_class_uid == CTImageStorage
    assert series.sample.image_orientation is not None
    assert len(series.sample.image_orientation) == 6
    assert series.sample.slice_thickness is not None and series.sample.slice_thickness > 0
    assert (series.sample.rows, series.sample.columns) == (96, 96)
    expected_aet = HOSPITAL_AET if isinstance(source, OrthancClient) else None
    assert series.remote_aet == expected_aet


def test_series_datasets_give_the_sent_volume(source: StudySource, sent: Sent) -> None:
    datasets = source.series_datasets(sent.files.study_instance_uid, sent.files.series_instance_uid)
    assert len(datasets) == SLICES
    fetched = assemble_volume(datasets)
    expected = read_series_dir(sent.files.ct_dir)
    assert fetched.geometry == expected.geometry
    np.testing.assert_array_equal(fetched.array, expected.array)


def test_unknown_resources(source: StudySource, sent: Sent) -> None:
    assert source.find_study("1.2.3.4.5.6.7.8.9") is None
    with pytest.raises(ResourceNotFoundError) as e:
        source.study("00000000-00000000-00000000-00000000-00000000")
    assert e.value.level == "study"
    with pytest.raises(ResourceNotFoundError):
        source.series("00000000-00000000-00000000-00000000-00000000")
    with pytest.raises(ResourceNotFoundError):
        source.series_datasets(sent.files.study_instance_uid, "1.2.3.4")


def test_orthanc_not_found_carries_status(client: OrthancClient) -> None:
    with pytest.raises(OrthancNotFoundError) as e:
        client.study("no-such-study")
    assert (e.value.status, e.value.path) == (404, "/studies/no-such-study")


# -- writing back --------------------------------------------------------------------------------


def test_store_puts_result_into_the_study_and_delete_removes_it(
    source: StudySource, sent: Sent
) -> None:
    seg = relabelled_seg(sent.files)
    assert source.store([seg]) == [seg.SOPInstanceUID]
    new_id = orthanc_id(PATIENT_ID, sent.files.study_instance_uid, seg.SeriesInstanceUID)
    assert set(source.study(sent.study_id).series_ids) == {sent.series_id, new_id}
    result = source.series(new_id)
    assert (result.modality, result.instance_count) == ("SEG", 1)
    (back,) = source.series_datasets(sent.files.study_instance_uid, seg.SeriesInstanceUID)
    assert back.SOPInstanceUID == seg.SOPInstanceUID
    source.delete_series(new_id)
    assert source.study(sent.study_id).series_ids == (sent.series_id,)
    with pytest.raises(ResourceNotFoundError):
        source.series(new_id)


def test_store_of_bytes_and_refusal(client: OrthancClient, sent: Sent) -> None:
    seg = relabelled_seg(sent.files)
    assert client.store([dataset_bytes(seg)]) == [seg.SOPInstanceUID]
    assert client.store([seg]) == [seg.SOPInstanceUID]  # again: idempotent, not an error
    client.delete_series(
        orthanc_id(PATIENT_ID, sent.files.study_instance_uid, seg.SeriesInstanceUID)
    )
    with pytest.raises(OrthancError) as e:
        client.store([b"not a DICOM file" * 20])
    assert e.value.status == 400
    assert "0 of 1" in str(e.value)


def test_folder_changes_follow_the_files(folder: FolderStudySource, sent: Sent) -> None:
    first = folder.changes(since=0)
    assert [c.orthanc_id for c in first.changes if c.is_stable_study] == [sent.study_id]
    assert first.done
    assert folder.changes(since=first.last).changes == ()
    seg = relabelled_seg(sent.files)
    folder.store([seg])
    grown = folder.changes(since=first.last)
    assert [c.orthanc_id for c in grown.changes] == [sent.study_id]
    folder.delete_series(
        orthanc_id(PATIENT_ID, sent.files.study_instance_uid, seg.SeriesInstanceUID)
    )
    with pytest.raises(ReadOnlySourceError):
        folder.delete_series(sent.series_id)
    assert len(list((folder.root / "ct").iterdir())) == SLICES
