"""Benchmark the report API under load: JSON report and FHIR Bundle beside a trivial endpoint.

The API (``preread.api.app.create_app`` with every real service: PostgreSQL job store, ES256
tokens, the tenant checks, rate limiting, the access log) runs in its own process under uvicorn
on loopback; the load is ``wrk`` (a second process, in C, so that the load generator takes
little of the CPU the server needs): ``--concurrency`` (32) connections, each sending the next
request as soon as the last one is answered, for ``--seconds`` per route after a warm-up,
routes one after another in the same run:

* ``GET /healthz`` — trivial (no authentication, no database);
* ``GET /api/v1/studies/{uid}/report/json`` — the PreRead JSON, authenticated;
* ``GET /api/v1/studies/{uid}/report/fhir`` — the FHIR R4B Bundle, authenticated;
* (with the caches on) the JSON report of **another tenant's** study that that tenant has
  just read (so it is in the view cache) and of a **missing** study: both 404.

Prints per route: requests, throughput (req/s), p50/p99 latency (ms), errors (the two 404
routes count every answer as one); the goals: report throughput ≥ 0.5 × the trivial
endpoint's, p99 < 50 ms; and the foreign/missing medians side by side (an id's existence in
another tenant must not show in the time: the tenant is checked before any cache answers).
Asserts nothing.

Run: ``.venv/bin/python bench/api_reports.py`` (PostgreSQL at ``PREREAD_BENCH_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch database is created and
dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URLS = [
    os.environ.get("PREREAD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
    "postgresql://root@127.0.0.1:5432/postgres",
]
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
FOREIGN = "GET report/json foreign (404)"
MISSING = "GET report/json missing (404)"
MISSING_UID = "1.2.826.0.1.3680043.99.424242"


@contextmanager
def scratch_database() -> Iterator[str]:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    errors = []
    for admin in ADMIN_URLS:
        try:
            conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
            break
        except psycopg.OperationalError as exc:
            errors.append(f"{admin}: {exc}")
    else:
        raise SystemExit(f"PostgreSQL is not reachable: {'; '.join(errors)}")
    name = f"preread_bench_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def populate(url: str, keys_dir: Path, studies: int) -> dict[str, Any]:
    """Studies of two tenants with done jobs (3 findings each); a client of the first tenant."""
    from pydicom.uid import generate_uid

    from preread.domain import Finding, ModelRef, PreReadResult
    from preread.reports import to_json
    from preread.security import ClientStore, KeyRing
    from preread.store import (
        JobOutputs,
        JobState,
        JobStore,
        JobUpdate,
        StoredObject,
        StudyFacts,
        StudyFingerprint,
    )

    model = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)
    target = foreign = ""
    with JobStore.create(url) as store:
        store.migrate()
        for n in range(studies):
            uid = str(generate_uid())
            tenant = "hosp-a" if n % 2 == 0 else "hosp-b"
            store.record_study(
                StudyFacts(uid, f"oid-{n}", tenant, "HOSPITAL", f"P{n}", "", "DOE^JANE",
                           "19600101", "F", f"A{n}", "20250110", "101500", "CT CHEST")
            )  # fmt: skip
            job = store.enqueue(uid, f"oid-{n}", model, StudyFingerprint(300, "x")).job
            store.claim(job.id, "bench", 60)
            series = str(generate_uid())
            store.advance(
                job.id, "bench", JobState.INFERRING, JobUpdate(series_instance_uid=series)
            )
            outputs = JobOutputs(
                sr=StoredObject(str(generate_uid()), str(generate_uid())),
                seg=StoredObject(str(generate_uid()), str(generate_uid())),
            )
            store.advance(job.id, "bench", JobState.WRITING, JobUpdate(outputs=outputs))
            findings = tuple(
                Finding(k, (40.0 * k, 5.0, -100.0), 6.0 + k, 100.0 * k, 0.8, -30.0, 50,
                        "left" if k % 2 else "right")
                for k in (1, 2, 3)
            )  # fmt: skip
            result = PreReadResult(uid, series, str(generate_uid()), model, "CPUExecutionProvider",
                                   findings, datetime(2025, 1, 10, tzinfo=UTC))  # fmt: skip
            store.finish_done(job.id, "bench", to_json(result))
            if n == 0:
                target = uid
            elif n == 1:
                foreign = uid  # of hosp-b
        from datetime import timedelta

        from preread.grants import GrantSpec, GrantStore, Purpose

        now = datetime.now(UTC)
        for tenant in ("hosp-a", "hosp-b"):
            GrantStore(store.engine).create(
                GrantSpec(
                    tenant=tenant,
                    purpose=Purpose.CLINICAL_PREREAD,
                    valid_from=now - timedelta(hours=1),
                    valid_to=now + timedelta(days=1),
                    legal_basis="benchmark",
                    issued_by="bench",
                )
            )
        KeyRing(keys_dir).ensure()
        clients = ClientStore(store.engine)
        client, secret = clients.create("hosp-a", "bench", ["reports:read"], 10_000_000)
        other, other_secret = clients.create("hosp-b", "bench", ["reports:read"], 10_000_000)
    return {
        "study": target,
        "client_id": client.client_id,
        "secret": secret,
        "foreign": foreign,
        "other_id": other.client_id,
        "other_secret": other_secret,
    }


def serve(config: dict[str, Any]) -> None:
    """The API process."""
    import logging

    import uvicorn

    from inference.registry import Registry
    from preread.api.app import create_app
    from preread.api.deps import Services
    from preread.api.server import server_config
    from preread.caches import watch
    from preread.grants import GrantStore
    from preread.security import ClientStore, KeyRing, TokenService
    from preread.settings import Settings
    from preread.store import JobStore
    from preread.webhooks.outbox import WebhookStore

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        data_dir=Path(config["data"]),
        models_dir=ROOT / "models",
        report_cache_size=config["cache"],
    )
    store = JobStore.create(config["url"])
    keys = KeyRing(Path(config["keys"]))
    grants = GrantStore(store.engine)
    watched = watch(store, grants, settings.report_cache_size)
    services = Services(
        settings=settings,
        store=store,
        clients=ClientStore(store.engine),
        tokens=TokenService(keys, issuer="preread", audience="preread-api", ttl_s=3600),
        webhooks=WebhookStore(store.engine),
        registry=Registry(settings.models_dir),
        views=watched.views,
        grant_store=grants,
        grants=watched.grants,
    )
    # the server `preread serve` runs (httptools with the head limit)
    uvicorn.Server(
        server_config(create_app(services), settings, host="127.0.0.1", port=config["port"])
    ).run()


def load(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``wrk`` (a separate C process: the load costs little CPU next to the server) against
    ``url``: a warm-up run, then the measured one."""
    args = ["wrk", "-t1", f"-c{concurrency}", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    subprocess.run([*args, f"-d{max(1, round(warmup))}s", url], capture_output=True, check=True)
    run = subprocess.run(
        [*args, f"-d{round(seconds)}s", url], capture_output=True, text=True, check=True
    )
    return parse_wrk(run.stdout)


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests, req/s, p50/p99 (ms) and non-2xx answers from wrk's ``--latency`` report."""

    def ms(value: str) -> float:
        for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * factor
        return float(value)

    out: dict[str, Any] = {"errors": 0}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "50%":
            out["p50_ms"] = ms(words[1])
        elif words[0] == "99%":
            out["p99_ms"] = ms(words[1])
        elif line.strip().startswith("Requests/sec:"):
            out["rps"] = float(words[1])
        elif "requests in" in line:
            out["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            out["errors"] += int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] += sum(int(w.rstrip(",")) for w in words[2::2])
    return out


def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the API process did not start")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(json.loads(args.serve))
        return 0
    import shutil

    import httpx

    if shutil.which("wrk") is None:
        raise SystemExit("wrk (the load generator) is missing: ./run setup installs it")
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as url:
        work = Path(tmp)
        print(f"populating {args.studies} studies in PostgreSQL ...", flush=True)
        seeded = populate(url, work / "keys", args.studies)
        results: dict[str, dict[str, Any]] = {}
        trivial = ""
        for cache in (1024, 0):
            label = "" if cache else ", no cache"
            port = free_port()
            config = {
                "url": url,
                "keys": str(work / "keys"),
                "data": str(work / "data"),
                "port": port,
                "cache": cache,
            }
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", json.dumps(config)], cwd=ROOT
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_ready(base, server)
                token = httpx.post(
                    f"{base}/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(seeded["client_id"], seeded["secret"]),
                ).json()["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                study = seeded["study"]
                routes = [
                    (f"GET report/json{label}", f"{base}/api/v1/studies/{study}/report/json", auth),
                    (f"GET report/fhir{label}", f"{base}/api/v1/studies/{study}/report/fhir", auth),
                ]
                if cache:
                    trivial = "GET /healthz (trivial)"
                    routes.insert(0, (trivial, f"{base}/healthz", {}))
                    theirs = seeded["foreign"]
                    other = httpx.post(
                        f"{base}/oauth/token",
                        data={"grant_type": "client_credentials"},
                        auth=(seeded["other_id"], seeded["other_secret"]),
                    ).json()["access_token"]
                    cached = httpx.get(  # hosp-b reads it: now in the view cache
                        f"{base}/api/v1/studies/{theirs}/report/json",
                        headers={"Authorization": f"Bearer {other}"},
                    )
                    if cached.status_code != 200:
                        raise SystemExit(f"the foreign study: {cached.status_code}")
                    routes += [
                        (FOREIGN, f"{base}/api/v1/studies/{theirs}/report/json", auth),
                        (MISSING, f"{base}/api/v1/studies/{MISSING_UID}/report/json", auth),
                    ]
                for name, url_, headers in routes:
                    answer = httpx.get(url_, headers=headers)
                    want = 404 if name in (FOREIGN, MISSING) else 200
                    if answer.status_code != want:
                        raise SystemExit(f"{url_}: {answer.status_code} {answer.text[:200]}")
                for name, url_, headers in routes:
                    print(
                        f"{name}: {args.concurrency} concurrent, {args.seconds:.0f} s", flush=True
                    )
                    results[name] = load(url_, headers, args.concurrency, args.seconds, args.warmup)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print()
    print(f"machine: {os.cpu_count()} CPU core(s); API: 1 uvicorn process; PostgreSQL; "
          f"load: wrk, 1 thread, {args.concurrency} connections, keep-alive")  # fmt: skip
    print(f"{'route':28} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:28} {r['requests']:>9} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['errors']:>7}"
        )
    print()
    print(f"{'goal':44} {'figure':>8} {'target':>10}  result")
    for name, r in results.items():
        if name in (trivial, FOREIGN, MISSING):
            continue
        ratio = r["rps"] / results[trivial]["rps"]
        print(f"{name + ' throughput / trivial':44} {ratio:>7.2f}x {'>= 0.5x':>10}  "
              f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}")  # fmt: skip
        print(f"{name + ' p99':44} {r['p99_ms']:>6.1f}ms {'< 50 ms':>10}  "
              f"{'met' if r['p99_ms'] < GOAL_P99_MS else 'NOT met'}")  # fmt: skip
    if FOREIGN in results and MISSING in results:
        f, m = results[FOREIGN]["p50_ms"], results[MISSING]["p50_ms"]
        print()
        print("another tenant's study (cached for it) vs a missing one, both 404, median:")
        print(f"  foreign {f:.2f} ms   missing {m:.2f} ms   ratio {f / m:.2f}  (same path: ~1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
