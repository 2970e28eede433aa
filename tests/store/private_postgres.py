"""A PostgreSQL cluster of one test's own, which the test may stop and start (the machine's
shared server is never touched): ``initdb`` and ``pg_ctl`` from the Debian packages
(``postgresql``, ``/usr/lib/postgresql/<version>/bin``), on 127.0.0.1 and a free port, trust
authentication, its socket in its own folder.

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user (which
the Debian package creates), in a folder of its own under the system's temporary folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dicom_gateway.orthanc_server import free_port

PG_ROOT = Path("/usr/lib/postgresql")


def _bin_dir() -> Path:
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail(
            f"no PostgreSQL server binaries under {PG_ROOT} (Debian: apt-get install postgresql)",
            pytrace=False,
        )
    return found[-1]


class PrivatePostgres:
    """Use as a context manager; :meth:`stop` and :meth:`start` restart it on the same port."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="preread-pg-"))
        self.data = self.work / "data"
        self.log = self.work / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the postgres user (Debian: postgresql)")
            os.chown(self.work, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout_s: float = 60.0) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stderr or result.stdout}")

    def __enter__(self) -> PrivatePostgres:
        try:
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.work} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "start", "-w", "-D", str(self.data), "-l", str(self.log),
            "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (clients disconnected, a clean shutdown, as a restart does) or
        ``immediate`` (as a crash)."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-D", str(self.data), "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").is_file()

    def close(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.work, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
