"""Benchmark the radiologists' worklist page (``GET /ui/``) on 10,000 studies.

The app (``preread.api.app.create_app`` with its real services) on PostgreSQL (a scratch
database, created and dropped) and on SQLite, each filled with ``--studies`` studies of the
reader's tenant plus as many of another tenant (done jobs with 0–4 findings of random sizes and
types, a third of them reviewed), a signed-in radiologist, and a clinical-preread grant. Each
route is requested ``--requests`` times in the same run, side by side with a trivial one:

* ``GET /healthz`` — no session, no database;
* ``GET /ui/`` — the worklist's first page in priority order (largest solid nodule first);
* ``GET /ui/?sort=date&page=100`` — deep in the list by date;
* ``GET /ui/?reviewed=no&min_findings=1&sort=largest`` — filtered;
* ``GET /ui/?date_from=…&date_to=…&state=done`` — a month.

In-process (Starlette's TestClient: the whole app — session, CSRF, the grant check, the audit
record, the query, the template — without a socket). Prints p50/p95 per route, the ratio of
each page's p95 to the trivial route's and to the goal (p95 < 300 ms). Asserts nothing.

Run: ``./run bench worklist`` (``--studies 10000 --requests 60``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_reports import scratch_database  # noqa: E402  (bench/, beside this script)

GOAL_P95_MS = 300.0
TENANT = "hosp-a"
PASSWORD = "correct horse battery staple"
ROUTES = [
    ("GET /healthz", "/healthz"),
    ("worklist, priority, page 1", "/ui/"),
    ("worklist, by date, page 100", "/ui/?sort=date&page=100"),
    ("worklist, unreviewed with findings", "/ui/?reviewed=no&min_findings=1&sort=largest"),
    ("worklist, one month done", "/ui/?date_from=20250301&date_to=20250331&state=done"),
]


def populate(url: str, studies: int) -> None:
    """``studies`` per tenant (two tenants), bulk-inserted as the job store would leave them."""
    from sqlalchemy.orm import Session

    from preread.store import make_engine
    from preread.store.schema import JobRow, ReviewRow, StudyRow
    from preread.store.sizes import largest_sizes

    rng = random.Random(7)
    engine = make_engine(url)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    kinds = ["solid", "part-solid", "ground-glass"]
    with Session(engine) as session:
        for tenant in (TENANT, "hosp-b"):
            for i in range(studies):
                uid = f"1.2.826.0.1.3680043.10.{abs(hash(tenant)) % 1000}.{i}"
                day = datetime(2025, 1, 1) + timedelta(days=rng.randrange(180))
                session.add(
                    StudyRow(
                        study_instance_uid=uid,
                        tenant=tenant,
                        orthanc_study_id=f"o{i}",
                        sender_aet="CT1",
                        patient_id=f"P{i}",
                        issuer_of_patient_id="",
                        patient_name=f"Patient^{i}",
                        patient_birth_date="19600101",
                        patient_sex="F",
                        accession_number=f"A{i}",
                        study_date=day.strftime("%Y%m%d"),
                        study_time="101500",
                        study_description="CT chest",
                        modalities="CT",
                        first_seen_at=now,
                        updated_at=now,
                    )
                )
                findings = [
                    {"long_axis_mm": round(rng.uniform(4, 30), 1), "nodule_type": rng.choice(kinds)}
                    for _ in range(rng.randrange(5))
                ]
                result = {"findings": findings}
                largest, solid = largest_sizes(result)
                job_id = str(uuid.uuid4())
                session.add(
                    JobRow(
                        id=job_id,
                        study_instance_uid=uid,
                        orthanc_study_id=f"o{i}",
                        model_id="lung-nodule",
                        model_version="2.1.0",
                        state="done",
                        attempts=1,
                        study_fingerprint="f",
                        timings={},
                        result=result,
                        findings_count=len(findings),
                        largest_finding_mm=largest,
                        largest_solid_mm=solid,
                        created_at=now,
                        updated_at=now,
                        finished_at=now,
                    )
                )
                if rng.random() < 1 / 3:
                    session.flush()
                    session.add(
                        ReviewRow(
                            id=str(uuid.uuid4()),
                            tenant=tenant,
                            study_instance_uid=uid,
                            model_id="lung-nodule",
                            model_version="2.1.0",
                            job_id=job_id,
                            ai_sr_sop_uid="1.2.3",
                            version=1,
                            reviewer_id="u1",
                            reviewer_name="Dr A",
                            signed_at=now,
                            content={},
                            sr_series_uid="1.2.4",
                            sr_sop_uid="1.2.5",
                            stored_at=now,
                        )
                    )
                if i % 1000 == 999:
                    session.commit()
        session.commit()
    if engine.dialect.name == "postgresql":  # as autovacuum would: the planner's statistics
        with engine.begin() as conn:  # committed: a rolled-back ANALYZE leaves no statistics
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


@contextmanager
def site(url: str, data: Path) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from inference.registry import Registry
    from preread.accounts import Role
    from preread.api.app import create_app
    from preread.api.deps import Services
    from preread.grants import GrantSpec, Purpose
    from preread.security import ClientStore, KeyRing, TokenService
    from preread.settings import Settings
    from preread.store import JobStore
    from preread.webhooks.outbox import WebhookStore

    settings = Settings(data_dir=data, models_dir=ROOT / "models", keys_dir=data / "keys")
    with JobStore.create(url) as store:
        keys = KeyRing(data / "keys")
        keys.ensure()
        services = Services(
            settings=settings,
            store=store,
            clients=ClientStore(store.engine),
            tokens=TokenService(keys, issuer="preread", audience="preread-api", ttl_s=300),
            webhooks=WebhookStore(store.engine),
            registry=Registry(settings.models_dir),
        )
        assert services.accounts is not None and services.grant_store is not None
        services.accounts.create(TENANT, "ada", Role.RADIOLOGIST, password=PASSWORD, by="bench")
        now = datetime.now(UTC)
        services.grant_store.create(
            GrantSpec(
                tenant=TENANT,
                purpose=Purpose.CLINICAL_PREREAD,
                valid_from=now - timedelta(minutes=1),
                valid_to=now + timedelta(days=1),
                legal_basis="benchmark",
                issued_by="bench",
            )
        )
        app = create_app(services)
        with TestClient(app, follow_redirects=False) as client:
            page = client.get("/ui/login")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = client.post(
                "/ui/login", data={"csrf_token": token, "username": "ada", "password": PASSWORD}
            )
            assert signed.status_code == 303, signed.text
            yield client
        services.auditor.close()


def measure(client: object, requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _ in ROUTES}
    for _name, path in ROUTES:
        client.get(path)  # type: ignore[attr-defined]  # warm
    for _ in range(requests):
        for name, path in ROUTES:  # interleaved: the machine's noise falls on every route
            t0 = time.perf_counter()
            answer = client.get(path)  # type: ignore[attr-defined]
            times[name].append((time.perf_counter() - t0) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def report(backend: str, times: dict[str, list[float]]) -> None:
    base = p95(times[ROUTES[0][0]])
    print(f"\n{backend}: p50 / p95 (ms), p95 ÷ trivial, p95 ÷ goal ({GOAL_P95_MS:.0f} ms)")
    for name, _ in ROUTES:
        values = times[name]
        print(
            f"  {name:40s} {statistics.median(values):7.1f} / {p95(values):7.1f}"
            f"   ×{p95(values) / base:6.1f}   {p95(values) / GOAL_P95_MS:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from preread.store import upgrade

        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with scratch_database() as postgres:
            for backend, url in (("PostgreSQL", postgres), ("SQLite", sqlite)):
                upgrade(url)
                t0 = time.perf_counter()
                populate(url, args.studies)
                print(f"{backend}: {2 * args.studies} studies in {time.perf_counter() - t0:.0f} s")
                with site(url, Path(tmp) / backend) as client:
                    report(backend, measure(client, args.requests))


if __name__ == "__main__":
    main()
