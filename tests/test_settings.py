"""Settings from the environment: credentials from ``PREREAD_<NAME>_FILE`` (secrets mounted as
files), refused with a clear error when ambiguous or unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from preread.cli import app
from preread.settings import FILE_SETTINGS, Settings, SettingsFileError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FILE_SETTINGS:
        monkeypatch.delenv(f"PREREAD_{name.upper()}", raising=False)
        monkeypatch.delenv(f"PREREAD_{name.upper()}_FILE", raising=False)


def test_credentials_come_from_their_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "database_url": "postgresql+psycopg://preread:pw@db/preread",
        "broker_url": "redis://:pw@redis:6379/0",
        "orthanc_password": "s3cret value",
        "oidc_client_secret": "oidc s3cret",
    }
    assert set(values) == set(FILE_SETTINGS)
    for name, value in values.items():
        path = tmp_path / name
        path.write_text(value + "\n")  # as `echo` and most secret stores write them
        monkeypatch.setenv(f"PREREAD_{name.upper()}_FILE", str(path))
    monkeypatch.setenv("PREREAD_DEID_KEY_FILE", str(tmp_path / "deid.key"))
    settings = Settings()
    assert settings.database_url == values["database_url"]
    assert settings.broker_url == values["broker_url"]
    assert settings.orthanc_password is not None
    assert settings.orthanc_password.get_secret_value() == "s3cret value"
    assert settings.oidc_client_secret is not None
    assert settings.oidc_client_secret.get_secret_value() == "oidc s3cret"
    # a setting that is itself a path stays a path: PreRead reads that file on its own
    assert settings.deid_key_path == tmp_path / "deid.key"


def test_a_variable_and_its_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("a")
    monkeypatch.setenv("PREREAD_ORTHANC_PASSWORD", "b")
    monkeypatch.setenv("PREREAD_ORTHANC_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(SettingsFileError, match=r"PREREAD_ORTHANC_PASSWORD or .*_FILE, not both"):
        Settings()


def test_an_unreadable_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("PREREAD_DATABASE_URL_FILE", str(missing))
    with pytest.raises(SettingsFileError) as info:
        Settings()
    assert f"PREREAD_DATABASE_URL_FILE={missing}: cannot read it" in str(info.value)
    result = CliRunner().invoke(app, ["health", "ready", "watch"])
    assert result.exit_code == 2  # the CLI prints the error in one line, no traceback
    assert "PREREAD_DATABASE_URL_FILE" in result.output and "Traceback" not in result.output


def test_priors_peer_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """PREREAD_PRIORS_PEER: AET@host:port for the private Orthanc, a modality's name with
    PREREAD_ORTHANC_URL; anything else stops the process, naming the setting."""
    assert Settings().priors_peer is None and Settings().priors_peer_address() is None
    monkeypatch.setenv("PREREAD_PRIORS_PEER", "PACS@10.0.0.5:104")
    assert Settings().priors_peer_address() == ("PACS", "10.0.0.5", 104)
    assert (
        Settings(orthanc_url="http://orthanc:8042", priors_peer="pacs").priors_peer_address()
        is None
    )
    for bad in ("PACS", "PACS@host", "PACS@host:0", "A\\B@host:104", "X" * 17 + "@host:104"):
        with pytest.raises(ValueError, match=r"PREREAD_PRIORS_PEER.*AET@host:port"):
            Settings(priors_peer=bad)
    with pytest.raises(ValueError, match=r"PREREAD_PRIORS_PEER.*name of a DICOM modality"):
        Settings(orthanc_url="http://orthanc:8042", priors_peer="PACS@10.0.0.5:104")
    with pytest.raises(ValueError, match="PREREAD_PRIORS_DICOM_TIMEOUT_S"):
        Settings(priors_timeout_s=5, priors_dicom_timeout_s=10)
