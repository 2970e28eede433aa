"""deploy/make-secrets.sh writes every secret compose.yaml names, consistent with each other,
readable but kept in a private folder, and never overwrites one."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from tests.deploy.checks import DEPLOY


def make_secrets(folder: Path) -> Path:
    shutil.copy(DEPLOY / "make-secrets.sh", folder / "make-secrets.sh")
    subprocess.run(["sh", str(folder / "make-secrets.sh")], check=True, timeout=60)
    return folder / "secrets"


def read(secrets: Path, name: str) -> str:
    return (secrets / name).read_text().rstrip("\n")


def test_the_secrets_fit_together(tmp_path: Path) -> None:
    secrets = make_secrets(tmp_path)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    wanted = {Path(s["file"]).name for s in compose["secrets"].values()}
    assert {p.name for p in secrets.iterdir()} == wanted
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in secrets.iterdir()} == {0o444}

    users = json.loads(read(secrets, "orthanc_users.json"))
    assert users == {"preread": read(secrets, "preread_orthanc_password")}
    database = make_url(read(secrets, "preread_database_url"))
    assert (database.username, database.host, database.database) == (
        "preread",
        "postgres",
        "preread",
    )
    assert database.password == read(secrets, "preread_db_password")
    redis_password = read(secrets, "redis.conf").removeprefix("requirepass ")
    assert read(secrets, "preread_broker_url") == f"redis://:{redis_password}@redis:6379/0"
    passwords = [read(secrets, n) for n in ("postgres_password", "orthanc_db_password")]
    assert len({*passwords, database.password, redis_password}) == 4
    assert all(len(p) >= 32 for p in passwords)


def test_existing_secrets_are_kept(tmp_path: Path) -> None:
    secrets = make_secrets(tmp_path)
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    (secrets / "preread_broker_url").chmod(0o644)
    (secrets / "preread_broker_url").unlink()
    make_secrets(tmp_path)
    after = {p.name: p.read_text() for p in secrets.iterdir()}
    assert after == before  # the broker URL is rebuilt from the kept redis.conf
