"""Health checks of the scale-out processes, for container probes (``preread health ...``).

* :func:`ready` — readiness of ``preread worker`` / ``preread watch``: everything the process
  needs answers: the database (``SELECT 1``), the broker (a connection), Orthanc (``GET
  /system`` with PreRead's credentials) and, for a worker, the model packages of
  ``PREREAD_MODELS``.
* :func:`leader_held` — liveness of the watchers: whether some session holds the watcher's
  advisory lock (when none does, every ``preread watch`` is stuck: none leads, none takes over).

What these cannot see is whether *this* process still makes progress: a worker runs one study
at a time in its only thread (pool ``solo``) and cannot answer a ping while it does. A job that
outlives its lease is re-queued by the leader, so a stuck worker delays nothing but itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from preread.composition import model_packages, orthanc_password
from preread.settings import Settings

TIMEOUT_S = 5.0
Role = Literal["worker", "watch"]


@dataclass(frozen=True)
class Check:
    """One dependency's answer: ``detail`` names the error type (never a URL or a secret)."""

    name: str
    ok: bool
    detail: str = "ok"

    def line(self) -> str:
        return f"{self.name}: {self.detail}"


def advisory_lock_ids(key: int) -> tuple[int, int]:
    """``(classid, objid)`` of ``pg_locks`` for ``pg_advisory_lock(key)`` with a bigint key:
    the high and the low 32 bits of the key as an unsigned 64-bit number."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def leader_held(database_url: str, name: str) -> bool:
    """Whether some session holds the advisory lock of leadership ``name`` in this database
    (advisory locks are per database; ``pg_locks`` shows those of every database).

    Raises whatever SQLAlchemy raises when the database cannot be asked."""
    from sqlalchemy import text

    from preread.scale.leader import lock_key
    from preread.store import make_engine

    classid, objid = advisory_lock_ids(lock_key(name))
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :c AND objid = :o AND objsubid = 1 AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"c": classid, "o": objid},
            ).scalar_one()
    finally:
        engine.dispose()
    return bool(held)


def _database(url: str) -> None:
    from sqlalchemy import text

    from preread.store import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _broker(url: str) -> None:
    from kombu.connection import Connection

    with Connection(url, connect_timeout=TIMEOUT_S) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1)


def _orthanc(url: str, username: str, password: str) -> None:
    import httpx

    response = httpx.get(
        url.rstrip("/") + "/system",
        auth=(username, password),
        headers={"Accept-Encoding": "identity"},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()


def _models(settings: Settings) -> None:
    model_packages(settings)  # each installed and verified


def ready(settings: Settings, role: Role) -> list[Check]:
    """The readiness checks of ``role``, in order: missing settings first, then each
    dependency. Never raises: a failure is a :class:`Check` with ``ok`` False."""
    results: list[Check] = []
    for variable, value in (
        ("PREREAD_DATABASE_URL", settings.database_url),
        ("PREREAD_BROKER_URL", settings.broker_url),
        ("PREREAD_ORTHANC_URL", settings.orthanc_url),
    ):
        if not value:
            results.append(Check(variable, False, "not set (the scale-out processes need it)"))
    password = orthanc_password(settings)
    checks: dict[str, Callable[[], None]] = {}
    if settings.database_url:
        checks["database"] = lambda: _database(str(settings.database_url))
    if settings.broker_url:
        checks["broker"] = lambda: _broker(settings.broker_url)
    if settings.orthanc_url:
        checks["orthanc"] = lambda: _orthanc(
            str(settings.orthanc_url), settings.orthanc_username, password
        )
    if role == "worker":
        checks["models"] = lambda: _models(settings)
    for name, check in checks.items():
        try:
            check()
            results.append(Check(name, True))
        except Exception as exc:  # a probe reports, never raises
            results.append(Check(name, False, f"failed: {type(exc).__name__}"))
    return results


__all__ = ["Check", "Role", "advisory_lock_ids", "leader_held", "ready"]
