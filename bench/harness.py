"""What the benchmarks share: the events a child process prints, the child process itself and
its configuration, sending studies as a hospital does (storescu), and a benchmark's ``main``
(the tools it needs, stopping cleanly on SIGTERM, its exit status, its work folder).

Imported by the scripts in bench/ as ``harness`` (each runs as ``python bench/NAME.py``, so this
folder is first on ``sys.path``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dicom_gateway.orthanc_server import OrthancServer
    from preread.grants import GrantSpec
    from preread.service import Service
    from preread.settings import Settings

A = TypeVar("A")

ROOT = Path(__file__).resolve().parent.parent
HOSPITAL_AET = "HOSPITAL"
EVENT = "BENCH-EVENT "  # the child's stdout lines that carry a JSON event


class BenchError(Exception):
    """The benchmark could not run to the end (the message says where and why)."""


def emit(kind: str, **data: Any) -> None:
    """Print one event for the driver (in the child process)."""
    print(EVENT + json.dumps({"event": kind, **data}), flush=True)


def child_config(
    server: OrthancServer, data_dir: Path, models_dir: Path, **extra: Any
) -> dict[str, Any]:
    """A child's configuration: ``server`` and PreRead's folders (for :func:`child_settings`)."""
    return {
        "orthanc_url": server.url,
        "orthanc_username": server.username,
        "orthanc_password": server.password,
        "data_dir": str(data_dir),
        "models_dir": str(models_dir),
        **extra,
    }


def read_child_config(
    level: int = logging.WARNING, fmt: str = logging.BASIC_FORMAT
) -> dict[str, Any]:
    """In the child: logs to stderr from ``level`` on; returns the configuration on stdin."""
    logging.basicConfig(level=level, stream=sys.stderr, format=fmt)
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    return config


def child_settings(cfg: dict[str, Any], **overrides: Any) -> Settings:
    """PreRead's settings for the Orthanc and folders of ``cfg`` (a :func:`child_config`)."""
    from pydantic import SecretStr

    from preread.settings import Settings

    return Settings(
        data_dir=Path(cfg["data_dir"]),
        models_dir=Path(cfg["models_dir"]),
        orthanc_url=cfg["orthanc_url"],
        orthanc_username=cfg["orthanc_username"],
        orthanc_password=SecretStr(cfg["orthanc_password"]),
        **overrides,
    )


class Child:
    """A benchmark's child process (``python SCRIPT --child``): started with its configuration
    on stdin, read event by event."""

    def __init__(self, script: str | Path, config: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(script).resolve()), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(config) + "\n")
        self.process.stdin.close()
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="child-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(EVENT):
                self._events.put(json.loads(line[len(EVENT) :]))
        self._events.put(None)  # end of output: the child exited

    def event(self, timeout_s: float, waiting_for: str) -> dict[str, Any]:
        """The next event; raises :class:`BenchError` on timeout, exit or an ``error`` event."""
        try:
            event = self._events.get(timeout=timeout_s)
        except queue.Empty:
            raise BenchError(
                f"the PreRead process sent no {waiting_for} within {timeout_s:.0f} s"
                f"{self.log_tail()}"
            ) from None
        if event is None:
            code = self.process.wait(timeout=30)
            raise BenchError(
                f"the PreRead process exited (status {code}) before {waiting_for}{self.log_tail()}"
            )
        if event["event"] == "error":
            raise BenchError(f"PreRead process: {event['message']}{self.log_tail()}")
        return event

    def check_alive(self, doing: str) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"the PreRead process exited (status {self.process.returncode}) while {doing}"
                f"{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(tail) if tail else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def send(
    paths: Path | Sequence[Path],
    aet: str,
    port: int,
    *,
    calling: str = HOSPITAL_AET,
    timeout_s: float = 600.0,
    contexts_from_files: bool = False,
) -> float:
    """C-STORE files or folders to ``aet`` on 127.0.0.1 as ``calling`` (DCMTK's storescu with
    ``TCP_NODELAY=1``); returns the seconds. ``contexts_from_files`` (``-R``) proposes the
    files' own SOP classes, which SEG and SR need."""
    if shutil.which("storescu") is None:
        raise BenchError("DCMTK's storescu is not installed (Debian: dcmtk; ./run setup)")
    files = [paths] if isinstance(paths, Path) else list(paths)
    command = ["storescu", "-aet", calling, "-aec", aet, "+sd", "+r"]
    if contexts_from_files:
        command.append("-R")
    command += ["127.0.0.1", str(port), *map(str, files)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"storescu did not finish within {timeout_s:.0f} s") from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"storescu failed (status {proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def run_bench(run: Callable[[A], int], args: A, *, tools: Sequence[str] = (), cleaned: str) -> int:
    """``main``'s ``run(args)``: 2 if a tool is missing or it fails, 130 (``cleaned``) on Ctrl-C."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (./run setup)", file=sys.stderr)
            return 2
    try:
        with terminate_on_sigterm():
            return run(args)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"benchmark interrupted; {cleaned}", file=sys.stderr)
        return 130


def remove_work(work: Path, *, keep: bool) -> None:
    """At the end of a run: removes the work folder, or says where it is kept (``--keep``)."""
    if keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the ``finally`` blocks stop
    Orthanc and the PreRead processes and remove the work folders."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def phantom_grant(issued_by: str, tenant: str = "default") -> GrantSpec:
    """The clinical-preread grant a benchmark needs for its own synthetic phantoms, sent as
    :data:`HOSPITAL_AET` (valid from a minute ago for a day)."""
    from preread.grants import GrantSpec, Purpose

    now = datetime.now(UTC)
    return GrantSpec(
        tenant=tenant,
        purpose=Purpose.CLINICAL_PREREAD,
        valid_from=now - timedelta(minutes=1),
        valid_to=now + timedelta(days=1),
        legal_basis="benchmark: synthetic phantoms, no patient data",
        issued_by=issued_by,
        sender_aets=(HOSPITAL_AET,),
    )


def grant_phantoms(service: Service, issued_by: str) -> None:
    """Lets ``service`` read the benchmark's phantoms: a :func:`phantom_grant` for its tenant."""
    tenant = service.settings.tenant_of(HOSPITAL_AET) or "default"
    service.grants.create(phantom_grant(issued_by, tenant))
