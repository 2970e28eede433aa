"""Priors by DICOM query/retrieve: PreRead's Orthanc asks a second, real Orthanc (the "hospital
PACS") with C-FIND and C-MOVE, and :func:`choose_priors` picks newest and baseline.

The PACS holds tiny phantom CT studies (64×64, 20 slices, ``training.phantom_dicom``, tags
rewritten with pydicom): patient PRIORS-1 of issuer HOSP-A on 2023-01-10, 2024-01-15 and
2025-01-20 (the study being read), the same PatientID of issuer HOSP-B, an MR-labelled study of
PRIORS-1 and a CT of another patient. The PACS lists PreRead's Orthanc as a modality that may
C-FIND and C-MOVE (PreRead is the move destination); PreRead's Orthanc lists the PACS (it may
C-STORE the moved instances) and a peer on a port nothing listens on (a PACS that is down).
Answer filtering, error wording and redaction are also checked against a fake Orthanc
(``httpx.MockTransport``).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import (
    DicomPeer,
    OrthancConfig,
    OrthancServer,
    render_config,
)
from dicom_gateway.priors import (
    OrthancPriors,
    PriorCandidate,
    PriorsSource,
    PriorsUnavailableError,
    choose_priors,
)
from tests.orthanc_support import PREREAD_AET, preread_and_pacs
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

PATIENT = "PRIORS-1"
ISSUER = "HOSP-A"
SLICES = 20
READ_DAY = datetime.date(2025, 1, 20)


@dataclass(frozen=True)
class Spec:
    seed: int
    patient_id: str
    issuer: str
    day: datetime.date
    modality: str


SPECS = {
    "2023": Spec(11, PATIENT, ISSUER, datetime.date(2023, 1, 10), "CT"),
    "2024": Spec(12, PATIENT, ISSUER, datetime.date(2024, 1, 15), "CT"),
    "2025": Spec(13, PATIENT, ISSUER, READ_DAY, "CT"),
    "other-issuer": Spec(14, PATIENT, "HOSP-B", datetime.date(2024, 3, 1), "CT"),
    "mr": Spec(15, PATIENT, ISSUER, datetime.date(2022, 1, 1), "MR"),
    "other-patient": Spec(16, "PRIORS-2", ISSUER, datetime.date(2024, 6, 1), "CT"),
}


@dataclass(frozen=True)
class Sites:
    preread: OrthancServer
    pacs: OrthancServer
    uids: dict[str, str]  # SPECS key -> StudyInstanceUID


def _study(spec: Spec, out: Path) -> tuple[str, list[pydicom.Dataset]]:
    """A tiny phantom CT study with ``spec``'s patient, issuer, date and modality."""
    phantom = generate_phantom(spec.seed, matrix=64, max_slices=SLICES, nodules=[])
    files = write_phantom_study(phantom, out / str(spec.seed), patient_id=spec.patient_id)
    datasets: list[pydicom.Dataset] = []
    for path in sorted(files.ct_dir.iterdir()):
        ds = pydicom.dcmread(path)
        ds.IssuerOfPatientID = spec.issuer
        ds.StudyDate = ds.SeriesDate = spec.day.strftime("%Y%m%d")
        ds.Modality = spec.modality
        ds.AccessionNumber = f"ACC{spec.seed}"
        datasets.append(ds)
    return files.study_instance_uid, datasets


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """PreRead's Orthanc and the hospital PACS, each listing the other; the PACS filled."""
    preread_cfg, pacs_cfg = preread_and_pacs(tmp_path_factory, pacs_peer="pacs")
    out = tmp_path_factory.mktemp("priors-phantoms")
    uids: dict[str, str] = {}
    with OrthancServer(preread_cfg) as preread, OrthancServer(pacs_cfg) as pacs:
        with pacs.client(timeout=30) as upload:
            for name, spec in SPECS.items():
                uids[name], datasets = _study(spec, out)
                assert len(upload.store(datasets)) == SLICES
        yield Sites(preread, pacs, uids)


@pytest.fixture(scope="module")
def client(sites: Sites) -> Iterator[OrthancClient]:
    with sites.preread.client(timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def priors(client: OrthancClient) -> OrthancPriors:
    return OrthancPriors(client, "pacs", target_aet=PREREAD_AET, timeout_s=30, dicom_timeout_s=5)


# -- against the hospital PACS -------------------------------------------------------------------


def test_orthanc_priors_is_a_priors_source(priors: OrthancPriors) -> None:
    source: PriorsSource = priors  # checked by mypy, too
    assert isinstance(source, PriorsSource)


def test_find_gives_earlier_ct_studies_of_the_patient_sorted(
    priors: OrthancPriors, sites: Sites
) -> None:
    found = priors.find_priors(PATIENT, ISSUER, READ_DAY, sites.uids["2025"])
    assert [c.study_instance_uid for c in found] == [sites.uids["2023"], sites.uids["2024"]]
    first = found[0]
    assert first.study_date == datetime.date(2023, 1, 10)
    assert first.modalities == ("CT",)
    assert first.accession_number == "ACC11"
    assert first.study_description == "Synthetic chest CT (phantom)"


def test_find_without_issuer_and_strictly_before(priors: OrthancPriors, sites: Sites) -> None:
    # without the issuer, the other issuer's PRIORS-1 is the same PatientID: it matches
    found = priors.find_priors(PATIENT, None, READ_DAY, sites.uids["2025"])
    assert [c.study_instance_uid for c in found] == [
        sites.uids[k] for k in ("2023", "2024", "other-issuer")
    ]
    # a study on the day of the study being read is not a prior, even under another UID
    same_day = priors.find_priors(PATIENT, ISSUER, datetime.date(2024, 1, 15), "1.2.3")
    assert [c.study_instance_uid for c in same_day] == [sites.uids["2023"]]


def test_choose_and_retrieve_newest_and_baseline(
    priors: OrthancPriors, client: OrthancClient, sites: Sites
) -> None:
    found = priors.find_priors(PATIENT, ISSUER, READ_DAY, sites.uids["2025"])
    newest, baseline = choose_priors(found)
    assert newest is not None and baseline is not None
    assert newest.study_instance_uid == sites.uids["2024"]
    assert baseline.study_instance_uid == sites.uids["2023"]
    assert client.find_study(newest.study_instance_uid) is None
    for chosen in (newest, baseline):
        priors.retrieve(chosen.study_instance_uid)
        study_id = client.find_study(chosen.study_instance_uid)
        assert study_id is not None
        stats = client.rest("GET", f"/studies/{study_id}/statistics")
        assert stats["CountInstances"] == SLICES
    priors.retrieve(newest.study_instance_uid)  # again: harmless
    assert client.find_study(sites.uids["2025"]) is None  # nothing else came


def test_retrieve_failures(priors: OrthancPriors, client: OrthancClient, sites: Sites) -> None:
    with pytest.raises(PriorsUnavailableError, match=r"'pacs'.*has no study 1\.2\.999"):
        priors.retrieve("1.2.999")
    with pytest.raises(PriorsUnavailableError, match="not a valid StudyInstanceUID"):
        priors.retrieve("1.2.*")
    # a move destination the PACS does not know: it refuses the C-MOVE (status 0xC000)
    elsewhere = OrthancPriors(client, "pacs", target_aet="ELSEWHERE", timeout_s=30)
    with pytest.raises(PriorsUnavailableError, match="the C-MOVE failed"):
        elsewhere.retrieve(sites.uids["other-issuer"])
    assert client.find_study(sites.uids["other-issuer"]) is None


def test_pacs_down_fails_fast_without_patient_ids(client: OrthancClient) -> None:
    down = OrthancPriors(client, "down", target_aet=PREREAD_AET, timeout_s=30, dicom_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(PriorsUnavailableError) as caught:
        down.find_priors(PATIENT, ISSUER, READ_DAY, "1.2.3")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "'down'" in message and "could not be reached" in message
    assert PATIENT not in message and ISSUER not in message
    assert caught.value.peer == "down" and caught.value.operation == "find"
    with pytest.raises(PriorsUnavailableError, match="could not be reached"):
        down.retrieve("1.2.3")
    assert time.monotonic() - started < 8


def test_unknown_peer_and_wildcard_patient_ids(client: OrthancClient) -> None:
    nowhere = OrthancPriors(client, "nowhere", target_aet=PREREAD_AET)
    with pytest.raises(PriorsUnavailableError, match=r"'nowhere'.*not configured") as caught:
        nowhere.find_priors(PATIENT, None, READ_DAY, "1.2.3")
    assert PATIENT not in str(caught.value)
    # a wildcard or a backslash would match other patients: refused before any query
    for patient_id, issuer in (("PRIORS-*", None), ("PRIORS-?", None), ("", None), ("P1", "A\\B")):
        with pytest.raises(PriorsUnavailableError, match="wildcard") as caught:
            nowhere.find_priors(patient_id, issuer, READ_DAY, "1.2.3")
        assert "PRIORS-" not in str(caught.value)


# -- against a fake Orthanc: answer filtering, query keys, wording ------------------------------


def _fake(handler: Callable[[httpx.Request], httpx.Response]) -> OrthancClient:
    return OrthancClient("http://orthanc", "u", "p", transport=httpx.MockTransport(handler))


def _answering(
    answers: list[dict[str, Any]], sent: list[dict[str, Any]], **routes: Any
) -> Callable[[httpx.Request], httpx.Response]:
    """A fake Orthanc: every query gets ``answers``; ``routes`` maps other paths to answers."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/modalities/pacs/query":
            sent.append(json.loads(request.content))
            return httpx.Response(200, json={"ID": "q1", "Path": "/queries/q1"})
        if path == "/queries/q1/answers":
            return httpx.Response(200, json=answers)
        if path == "/queries/q1":
            return httpx.Response(200, json={})
        answer = routes.get(path.strip("/").replace("/", "_"))
        return httpx.Response(200, json=answer) if answer is not None else httpx.Response(404)

    return handler


def _answer(uid: str, day: str, modalities: str = "CT", pid: str = PATIENT) -> dict[str, Any]:
    return {
        "StudyInstanceUID": uid,
        "StudyDate": day,
        "ModalitiesInStudy": modalities,
        "PatientID": pid,
        "StudyDescription": "CT chest",
        "AccessionNumber": "A1",
    }


def test_answers_are_filtered_again_and_sorted() -> None:
    answers = [
        _answer("1.9", "20240101", "CT\\SR"),
        _answer("1.8", "", "CT"),  # undated: kept, last
        _answer("1.7", "20230101", "MR"),  # no CT
        _answer("1.6", "20230101", ""),  # modalities unknown
        _answer("1.5", "20250120"),  # not before the read day
        _answer("1.4", "20220101", pid="PRIORS-10"),  # another patient
        _answer("1.3", "20220202"),  # the excluded study
        _answer("1.2*", "20220101"),  # not a UID
        _answer("1.1", "20210101"),
        _answer("1.1", "20210101"),  # duplicate
        {"StudyInstanceUID": "1.0", "StudyDate": "20200101", "ModalitiesInStudy": ["CT", "PR"]},
    ]
    sent: list[dict[str, Any]] = []
    with _fake(_answering(answers, sent)) as client:
        found = OrthancPriors(client, "pacs", target_aet=PREREAD_AET).find_priors(
            PATIENT, ISSUER, READ_DAY, "1.3"
        )
    assert [c.study_instance_uid for c in found] == ["1.0", "1.1", "1.9", "1.8"]
    assert found[2] == PriorCandidate(
        "1.9", datetime.date(2024, 1, 1), ("CT", "SR"), "A1", "CT chest"
    )
    assert found[0].modalities == ("CT", "PR") and found[3].study_date is None
    (body,) = sent
    assert body["Level"] == "Study" and body["Timeout"] == 10
    assert body["Query"] == {
        "PatientID": PATIENT,
        "IssuerOfPatientID": ISSUER,
        "StudyInstanceUID": "",
        "StudyDate": "-20250119",
        "ModalitiesInStudy": "CT",
        "AccessionNumber": "",
        "StudyDescription": "",
    }


def test_orthanc_details_are_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        details = f'C-FIND to AET "PACS": association aborted for PatientID={PATIENT} ({ISSUER})'
        body = {"Message": "Error in the network protocol", "Details": details}
        return httpx.Response(500, json=body)

    with _fake(handler) as client, pytest.raises(PriorsUnavailableError) as caught:
        OrthancPriors(client, "pacs", target_aet=PREREAD_AET).find_priors(
            PATIENT, ISSUER, READ_DAY, "1.3"
        )
    message = str(caught.value)
    assert "could not be reached" in message and "<redacted>" in message
    assert PATIENT not in message and ISSUER not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("lookup", "count", "expected"),
    [
        ([], 20, "reported success, but the study is not in PreRead's Orthanc"),
        ([{"Type": "Study", "ID": "s1"}], 5, "incomplete: 5 of 20 instances arrived"),
    ],
)
def test_retrieve_checks_what_arrived(lookup: list[Any], count: int, expected: str) -> None:
    answers = [{"StudyInstanceUID": "1.2", "NumberOfStudyRelatedInstances": "20"}]
    sent: list[dict[str, Any]] = []
    routes = {
        "modalities_pacs_move": {},
        "tools_lookup": lookup,
        "studies_s1_statistics": {"CountInstances": count},
    }
    with _fake(_answering(answers, sent, **routes)) as client:
        priors = OrthancPriors(client, "pacs", target_aet=PREREAD_AET, timeout_s=40)
        with pytest.raises(PriorsUnavailableError, match=expected):
            priors.retrieve("1.2")
    assert sent[0]["Query"] == {"StudyInstanceUID": "1.2", "NumberOfStudyRelatedInstances": ""}


# -- choose_priors -------------------------------------------------------------------------------


def _candidate(uid: str, day: datetime.date | None) -> PriorCandidate:
    return PriorCandidate(uid, day, ("CT",), "", "")


def test_choose_priors() -> None:
    a = _candidate("1.1", datetime.date(2023, 1, 10))
    b = _candidate("1.2", datetime.date(2024, 1, 15))
    c = _candidate("1.3", datetime.date(2024, 1, 15))
    undated = _candidate("1.0", None)
    assert choose_priors([]) == (None, None)
    assert choose_priors([a]) == (a, None)
    assert choose_priors([b, a]) == (b, a)
    assert choose_priors([undated, b, a]) == (b, a)  # undated: never baseline, last for newest
    assert choose_priors([undated, a]) == (a, None)
    assert choose_priors([undated]) == (undated, None)
    assert choose_priors([_candidate("1.5", None), undated]) == (undated, None)
    assert choose_priors([c, b]) == (c, b)  # same day: ordered by UID


# -- configuration -------------------------------------------------------------------------------


def test_render_config_peers_may_find_and_move_only_when_allowed() -> None:
    peers = (
        DicomPeer("modality", "CT1", "10.0.0.1", 104),
        DicomPeer("preread", "PREREAD", "10.0.0.2", 4242, allow_find=True, allow_move=True),
    )
    cfg = OrthancConfig(
        storage_dir=Path("/x"), http_port=1, dicom_port=2, password="pw", dicom_modalities=peers
    )
    rendered = render_config(cfg)
    modality, preread = (rendered["DicomModalities"][n] for n in ("modality", "preread"))
    assert (modality["AllowFind"], modality["AllowMove"]) == (False, False)
    assert (preread["AllowFind"], preread["AllowMove"]) == (True, True)
    assert preread["AllowGet"] is False and rendered["DicomAlwaysAllowMove"] is False
    assert rendered["DicomScuTimeout"] == 10
    with pytest.raises(ValueError, match="DicomScuTimeout"):
        render_config(OrthancConfig(Path("/x"), 1, 2, password="pw", dicom_scu_timeout_s=0))
    with (
        _fake(lambda r: httpx.Response(404)) as fake,
        pytest.raises(ValueError, match="< timeout_s"),
    ):
        OrthancPriors(fake, "p", target_aet="A", timeout_s=5, dicom_timeout_s=10)
