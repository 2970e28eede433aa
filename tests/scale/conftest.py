"""Fixtures of the scale-out tests: a fresh PostgreSQL database per module (as in
``tests/store``), a real Redis (``PREREAD_TEST_REDIS``, default ``redis://127.0.0.1:6379/15``)
and a real RabbitMQ (``PREREAD_TEST_AMQP``, default ``amqp://guest:guest@127.0.0.1:5672//``).

All three are required, never skipped: an unreachable one fails the test with a clear message.
Each test uses a queue of its own, deleted afterwards (on Redis with the messages a killed
worker left unacknowledged).

The fault tests (``test_faults.py``, ``test_retries.py``) also get ``small_studies`` (20 small
phantom studies, written once per session), ``fault_seed`` (printed; ``PREREAD_FAULT_SEED``
replays a run), and ``fault_scene``: a private Orthanc and a fresh, migrated PostgreSQL database
with the HOSPITAL sender's clinical-preread grant, from which :meth:`FaultScene.cluster` starts
real ``preread`` processes (:mod:`tests.scale.cluster`).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from kombu.connection import Connection

from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer, free_port
from preread.audit import AuditLog
from preread.grants import GrantStore
from preread.store import JobStore, upgrade
from tests.grant_support import clinical_preread
from tests.orthanc_support import HOSPITAL_AET, storescu
from tests.scale.cluster import Cluster
from tests.store.conftest import fresh_postgres_database
from training.phantom_dicom import StudyFiles, write_phantom_study
from training.phantoms import generate_phantom

BROKERS = {
    "redis": os.environ.get("PREREAD_TEST_REDIS", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("PREREAD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
}


def _reachable(url: str) -> None:
    try:
        with Connection(url, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(
            f"the message broker {url} is needed for the scale-out tests and is not reachable "
            f"({type(exc).__name__}: {exc}). Start it, or set PREREAD_TEST_REDIS / "
            "PREREAD_TEST_AMQP.",
            pytrace=False,
        )


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[str(request.param)]
    _reachable(url)
    return url


@pytest.fixture
def queue(broker_url: str) -> Iterator[str]:
    """A queue name of this test's own; deleted from the broker afterwards."""
    name = f"preread.test.{uuid.uuid4().hex[:12]}"
    yield name
    with (
        Connection(broker_url, connect_timeout=5) as conn,  # type: ignore[no-untyped-call]
        contextlib.suppress(Exception),  # never declared: the test failed before sending
    ):
        conn.default_channel.queue_delete(name)
    if broker_url.startswith("redis"):
        _forget_unacked(broker_url, name)


@pytest.fixture
def redis_queue() -> Iterator[tuple[str, str]]:
    """The machine's Redis and a queue of this test's own: ``(broker URL, queue)``."""
    url = BROKERS["redis"]
    _reachable(url)
    name = f"preread.test.{uuid.uuid4().hex[:12]}"
    yield url, name
    with (
        Connection(url, connect_timeout=5) as conn,  # type: ignore[no-untyped-call]
        contextlib.suppress(Exception),
    ):
        conn.default_channel.queue_delete(name)
    _forget_unacked(url, name)


def _forget_unacked(url: str, queue: str) -> None:
    """Drop the messages a killed worker left unacknowledged on the shared Redis: kombu keeps
    them in the database-wide ``unacked`` hash and would put them back into ``queue`` when the
    visibility timeout (an hour) has passed."""
    import json

    import redis

    client = redis.Redis.from_url(url)
    try:
        for tag, entry in client.hgetall("unacked").items():
            with contextlib.suppress(ValueError, TypeError, IndexError):
                _message, exchange, routing_key = json.loads(entry)
                if queue in (exchange, routing_key):
                    client.zrem("unacked_index", tag)
                    client.hdel("unacked", tag)
    finally:
        client.close()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


# --- the fault tests: real processes, a private Orthanc, a fresh database per test --------------

#: Phantom seeds with a small field of view (≤ 300 mm) and thin slices (≤ 1 mm): at 32 × 32 ×
#: 50 slices lung-nodule 1.0.0 reads one in about 2 s on one core (16 windows of 96³ at 1 mm),
#: and each gives it at least one finding, so every read writes an SR and a SEG (chosen anew
#: for phantom generator 2.0.0; the fault clusters run 1.0.0, see FaultScene.cluster).
FAULT_SEEDS = (21, 22, 57, 60, 61, 62, 77, 81, 106, 131, 132, 140, 147, 150, 153, 155, 170, 196,
               208, 265)  # fmt: skip
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="session")
def small_studies(tmp_path_factory: pytest.TempPathFactory) -> list[StudyFiles]:
    """The 20 phantom studies of the fault tests (32 × 32, 50 slices), written once."""
    out = tmp_path_factory.mktemp("fault-studies")
    studies = []
    for seed in FAULT_SEEDS:
        phantom = generate_phantom(seed, matrix=32, max_slices=50)
        thickness, pixel = phantom.volume.geometry.spacing[:2]
        assert thickness <= 1.0 and 32 * pixel <= 300, (
            f"phantom {seed} changed: {thickness} mm slices, {32 * pixel:.0f} mm field of view; "
            "pick seeds with thin slices and a small field of view again (reads get slow)"
        )
        studies.append(write_phantom_study(phantom, out, patient_id=f"FAULT-{seed}"))
    return studies


@pytest.fixture
def fault_seed() -> int:
    """The seed of a test's random faults: ``PREREAD_FAULT_SEED`` or a new one (printed, and
    named in failure messages, to replay a run)."""
    seed = int(os.environ.get("PREREAD_FAULT_SEED") or random.randrange(2**31))
    print(f"fault seed {seed} (replay: PREREAD_FAULT_SEED={seed})")
    return seed


@pytest.fixture
def fault_orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    """A private Orthanc of this test alone (the suite's configuration: StableAge 1 s, C-STORE
    from HOSPITAL only) on fixed ports, so that it can be stopped and started again."""
    config = OrthancConfig(
        storage_dir=tmp_path / "orthanc-storage",
        http_port=free_port(),
        dicom_port=free_port(),
        password=secrets.token_urlsafe(16),
        stable_age_s=1,
        dicom_modalities=(DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),),
    )
    with OrthancServer(config) as server:
        yield server


@dataclass
class FaultScene:
    """One fault test's world: its Orthanc, a fresh migrated PostgreSQL database with the
    clinical-preread grant of the HOSPITAL sender, and the store on it."""

    orthanc: OrthancServer
    database_url: str
    store: JobStore
    tmp: Path

    def cluster(self, broker_url: str, queue: str, **settings: str) -> Cluster:
        """Processes configured by ``PREREAD_*`` variables (``settings`` adds or overrides)."""
        env = {
            "PREREAD_ORTHANC_URL": self.orthanc.url,
            "PREREAD_ORTHANC_USERNAME": self.orthanc.username,
            "PREREAD_ORTHANC_PASSWORD": self.orthanc.password,
            "PREREAD_DATABASE_URL": self.database_url,
            "PREREAD_BROKER_URL": broker_url,
            "PREREAD_QUEUE": queue,
            "PREREAD_DATA_DIR": str(self.tmp / "data"),
            "PREREAD_MODELS_DIR": str(MODELS_DIR),
            # the single-network baseline: it makes a finding on each of these small studies
            # (FAULT_SEEDS), so every read writes an SR and a SEG to count; 2.0.0, at about
            # one false positive per scan, rightly finds nothing on most of them
            "PREREAD_MODELS": '["lung-nodule@1.0.0"]',
            "PREREAD_INTRA_OP_THREADS": "1",
            "PREREAD_LEASE_S": "6",  # renewed every 2 s while a job runs
            "PREREAD_POLL_INTERVAL_S": "0.3",
            "PREREAD_RECONCILE_INTERVAL_S": "3",
            "PREREAD_JOB_MAX_ATTEMPTS": "10",  # the kills, not the studies, cost attempts
        }
        env.update({f"PREREAD_{k.upper()}": v for k, v in settings.items()})
        log_dir = self.tmp / "logs"
        log_dir.mkdir(exist_ok=True)
        return Cluster(env, log_dir)

    def send(self, studies: Sequence[StudyFiles]) -> None:
        """C-STORE the studies' CT series as the HOSPITAL modality (one association)."""
        result = storescu(self.orthanc, [s.ct_dir for s in studies])
        assert result.returncode == 0, f"storescu failed: {result.stderr[-2000:]}"


def authorize_hospital(store: JobStore) -> None:
    """The clinical-preread grant of tenant ``default`` for studies sent by HOSPITAL."""
    GrantStore(store.engine, audit=AuditLog(store.engine)).create(
        clinical_preread("tests/scale", sender_aets=(HOSPITAL_AET,))
    )


@pytest.fixture
def fault_scene(tmp_path: Path, fault_orthanc: OrthancServer) -> Iterator[FaultScene]:
    with fresh_postgres_database() as url:
        upgrade(url)
        with JobStore.create(url) as store:
            authorize_hospital(store)
            yield FaultScene(fault_orthanc, url, store, tmp_path)
