"""Files only their owner reads (mode 0600), and what `serve`/`demo` print at start-up: the
private Orthanc's password goes into such a file, only its path is printed."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from preread.cli import endpoint_lines
from preread.private_files import write_private_file
from preread.settings import Settings

PASSWORD = "Xq3-generated-secret-9f2"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_0600_replacing_a_wider_file_and_a_link(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "s"
    assert write_private_file(path, b"one") == path
    assert (path.read_bytes(), mode(path), mode(path.parent)) == (b"one", 0o600, 0o700)
    path.chmod(0o644)
    write_private_file(path, b"two")
    assert (path.read_bytes(), mode(path)) == (b"two", 0o600)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    path.unlink()
    path.symlink_to(target)
    write_private_file(path, b"three")  # the link is replaced, its target left alone
    assert not path.is_symlink() and target.read_bytes() == b"keep"
    with pytest.raises(FileExistsError):
        write_private_file(path, b"four", exclusive=True)
    assert path.read_bytes() == b"three" and os.listdir(path.parent) == ["s"]


def service(data_dir: Path, configured: str | None = None) -> SimpleNamespace:
    orthanc = SimpleNamespace(
        url="http://127.0.0.1:8042",
        aet="PREREAD",
        dicom_port=4242,
        username="preread",
        password=PASSWORD,
    )
    password = None if configured is None else SecretStr(configured)
    settings = Settings(data_dir=data_dir, orthanc_password=password)
    return SimpleNamespace(orthanc=orthanc, settings=settings)


def test_the_start_up_lines_name_the_password_file_not_the_password(tmp_path: Path) -> None:
    lines = endpoint_lines(service(tmp_path), "127.0.0.1", 8000)
    printed = "\n".join(lines)
    path = tmp_path / "secrets" / "orthanc-password"
    assert PASSWORD not in printed
    assert f"password: in {path}" in printed and "user preread" in printed
    assert path.read_text() == PASSWORD + "\n" and mode(path) == 0o600
    configured = endpoint_lines(service(tmp_path / "b", "hunter2-xyz"), "h", 1)
    assert "PREREAD_ORTHANC_PASSWORD" in configured[-1]
    assert "hunter2-xyz" not in "\n".join(configured)
    assert not (tmp_path / "b" / "secrets").exists()  # a configured secret is not copied
    assert endpoint_lines(SimpleNamespace(orthanc=None), "h", 1)[0].startswith("API:")
