"""Grants: issued by the platform's client, enforced before any pixel is read (jobs end
``not_authorized``) and on every report read for the token's purpose of use; a new grant lets
waiting studies be read; revocation takes effect at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from preread.domain import ModelRef
from preread.grants import GrantError, GrantSpec, Purpose
from preread.grants.requeue import queue_newly_covered
from preread.jobs import JobContext, run_job
from preread.store import JobState, StudyFingerprint
from tests.api.conftest import Api, finding, grant
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)
NOW = datetime.now(UTC)


def _never(model_id: str, version: str) -> object:
    raise AssertionError("an unauthorized study must not reach the model")


def _spec(**changes: object) -> GrantSpec:
    base: dict[str, object] = {
        "tenant": "hosp-a",
        "purpose": Purpose.RESEARCH,
        "valid_from": NOW,
        "valid_to": NOW + timedelta(days=1),
        "legal_basis": "ethics approval 2025-17",
        "issued_by": "platform",
    }
    return GrantSpec(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"valid_to": NOW - timedelta(days=1)}, "ends"),
        ({"purpose": "sightseeing"}, "unknown purpose"),
        ({"study_date_from": "20250201", "study_date_to": "20250101"}, "matches nothing"),
        ({"study_uids": ()}, "matches nothing"),
        ({"modalities": ("ct!",)}, "modality"),
        ({"legal_basis": " "}, "legal basis"),
    ],
)
def test_bad_grants_are_refused_with_the_reason(
    api: Api, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(GrantError, match=message):
        api.grants.create(_spec(**changes))


def test_a_study_without_a_grant_is_not_read_and_a_new_grant_queues_it(api: Api) -> None:
    files = write_phantom_study(
        generate_phantom(6, matrix=48, max_slices=10), api.folder, patient_id="PAT-NG"
    )
    source = api.services.source
    assert source is not None
    orthanc_study = source.find_study(files.study_instance_uid)
    assert orthanc_study is not None
    ctx = JobContext(
        store=api.store,
        source=source,
        predictor_for=_never,  # type: ignore[arg-type]
        owner="test",
        grants=api.grants,
        audit=api.grants.audit,
        tenant_of=lambda _sender: "hosp-c",  # a tenant without any grant
    )
    job = api.store.enqueue(
        files.study_instance_uid, orthanc_study, MODEL, StudyFingerprint(10, "x")
    ).job
    finished = run_job(job.id, ctx)
    assert finished is not None and finished.job.state is JobState.NOT_AUTHORIZED
    assert "no valid clinical-preread grant" in (finished.job.reason or "")
    assert finished.job.outputs.sr is None and not finished.job.timings  # nothing fetched
    # a grant for another modality does not help; one for CT does, and queues the job
    mr_only = grant(api.grants, "hosp-c", modalities=("MR",))
    assert queue_newly_covered(api.store, mr_only) == []
    ct = grant(api.grants, "hosp-c", modalities=("CT",), sender_aets=())
    (queued,) = queue_newly_covered(api.store, ct)
    assert queued.id == job.id and queued.state is JobState.QUEUED


def test_report_reads_need_a_grant_for_the_tokens_purpose(api: Api) -> None:
    facts, _ = api.study("hosp-a", (finding(1, "left", 10.0),))
    url = f"/api/v1/studies/{facts.study_instance_uid}/report/json"
    clinical = api.token("hosp-a")
    assert api.client.get(url, headers=clinical).status_code == 200
    review = api.token("hosp-a", purpose="quality-review")
    refused = api.client.get(url, headers=review)
    assert refused.status_code == 403
    assert "quality-review is not authorized" in refused.json()["detail"]
    assert api.client.get("/api/v1/studies", headers=review).status_code == 403
    # the platform issues a quality-review grant for CT studies of January 2025 only
    platform = api.token("platform", "grants:manage")
    created = api.client.post(
        "/api/v1/grants",
        json={
            "tenant": "hosp-a",
            "purpose": "quality-review",
            "valid_from": (NOW - timedelta(hours=1)).isoformat(),
            "valid_to": (NOW + timedelta(days=7)).isoformat(),
            "legal_basis": "hospital QA programme, contract 7",
            "modalities": ["CT"],
            "study_date_from": "20250101",
            "study_date_to": "20250131",
        },
        headers=platform,
    )
    assert created.status_code == 201, created.text
    review_grant = created.json()
    assert review_grant["issued_by"].startswith("client:")
    # the study has no recorded modality (written straight into the store): not covered
    answer = api.client.get(url, headers=review)
    assert answer.status_code == 403 and "covers CT" in answer.json()["detail"]
    broad = api.client.post(
        "/api/v1/grants",
        json={**{k: review_grant[k] for k in ("tenant", "purpose", "legal_basis")},
              "valid_from": (NOW - timedelta(hours=1)).isoformat(),
              "valid_to": (NOW + timedelta(days=7)).isoformat()},
        headers=platform,
    )  # fmt: skip
    assert broad.status_code == 201
    assert api.client.get(url, headers=review).status_code == 200
    assert api.client.get(url, headers=review).status_code == 200  # from memory
    revoked = api.client.post(
        f"/api/v1/grants/{broad.json()['id']}/revoke",
        json={"reason": "QA programme ended"},
        headers=platform,
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api.client.get(url, headers=review).status_code == 403  # at once
    twice = api.client.post(
        f"/api/v1/grants/{broad.json()['id']}/revoke", json={"reason": "x"}, headers=platform
    )
    assert twice.status_code == 422 and "already revoked" in twice.text


def test_only_the_platform_scope_manages_grants(api: Api) -> None:
    admin = api.token("hosp-a", "admin")
    assert api.client.get("/api/v1/grants", headers=admin).status_code == 403
    platform = api.token("platform", "grants:manage")
    listed = api.client.get("/api/v1/grants", params={"tenant": "hosp-a"}, headers=platform)
    assert listed.status_code == 200 and listed.json()[0]["tenant"] == "hosp-a"
    bad = api.client.post(
        "/api/v1/grants",
        json={
            "tenant": "hosp-a",
            "purpose": "research",
            "valid_from": NOW.isoformat(),
            "valid_to": (NOW - timedelta(days=2)).isoformat(),
            "legal_basis": "x",
        },
        headers=platform,
    )
    assert bad.status_code == 422 and "before it starts" in bad.text
    unknown = api.client.post(
        "/api/v1/grants",
        json={"tenant": "hosp-a", "purpose": "sightseeing", "valid_from": NOW.isoformat(),
              "valid_to": NOW.isoformat(), "legal_basis": "x"},
        headers=platform,
    )  # fmt: skip
    assert unknown.status_code == 422
    assert api.client.get("/api/v1/grants/nope", headers=platform).status_code == 404


def test_a_token_may_only_declare_the_clients_purposes(api: Api) -> None:
    client, secret = api.clients.create(
        "hosp-a", "ris", ["reports:read"], 100, purposes=("clinical-preread", "quality-review")
    )
    form = {"grant_type": "client_credentials", "client_id": client.client_id,
            "client_secret": secret}  # fmt: skip
    default = api.client.post("/oauth/token", data=form).json()
    assert default["purpose"] == "clinical-preread"
    review = api.client.post("/oauth/token", data={**form, "purpose": "quality-review"})
    assert review.json()["purpose"] == "quality-review"
    research = api.client.post("/oauth/token", data={**form, "purpose": "research"})
    assert research.status_code == 400 and "research" in research.json()["error_description"]
    with pytest.raises(ValueError, match="unknown purpose"):
        api.clients.create("hosp-a", "x", ["reports:read"], 10, purposes=("marketing",))
