"""``preread serve --api-only`` (``Service(settings, api_only=True)``): the API replica of a
scale-out deployment loads no model, runs no watcher and no in-process worker, and sends what
it queues to the workers' queue on the real broker (Redis and RabbitMQ)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kombu.connection import Connection

from dicom_gateway.orthanc_server import OrthancServer
from preread.scale import TASK_NAME, ScaleError
from preread.service import Service
from preread.settings import Settings
from tests.pipeline.conftest import MODELS_DIR


def api_settings(
    tmp: Path, orthanc: OrthancServer, database_url: str, broker_url: str, queue: str
) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        models_dir=MODELS_DIR,
        orthanc_url=orthanc.url,
        orthanc_username=orthanc.username,
        orthanc_password=orthanc.password,  # type: ignore[arg-type]
        database_url=database_url,
        broker_url=broker_url,
        queue=queue,
    )


def test_an_api_replica_sends_jobs_to_the_workers(
    tmp_path: Path, orthanc: OrthancServer, postgres_url: str, broker_url: str, queue: str
) -> None:
    settings = api_settings(tmp_path, orthanc, postgres_url, broker_url, queue)
    with Service(settings, api_only=True) as service:
        assert service.runner is None  # no worker, and no model loaded:
        assert all(service.predictors.loaded(m.id, m.version) is None for m in service.models)
        service.start_loop()
        assert service._thread is None  # no watcher loop: `preread watch` leads
        with TestClient(service.app()) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
        service.dispatch("job-123")
    with Connection(broker_url, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
        message = conn.SimpleQueue(queue).get(timeout=10)
        try:
            assert message.headers["task"] == TASK_NAME
            args, _kwargs, _embed = message.decode()
            assert args == ["job-123"]
        finally:
            message.ack()


@pytest.mark.parametrize("missing", ["orthanc_url", "broker_url"])
def test_an_api_replica_needs_the_shared_orthanc_and_the_broker(
    tmp_path: Path, orthanc: OrthancServer, postgres_url: str, missing: str
) -> None:
    settings = api_settings(tmp_path, orthanc, postgres_url, "redis://127.0.0.1:6379/15", "q")
    settings = settings.model_copy(update={missing: "" if missing == "broker_url" else None})
    with pytest.raises(ScaleError, match=f"--api-only needs PREREAD_{missing.upper()}"):
        Service(settings, api_only=True).__enter__()
