"""The re-identification vault: round trip, nothing in clear on disk, the wrong key refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicom_gateway.deid import (
    DeidentificationError,
    Deidentifier,
    MappingKind,
    ReidentificationVault,
    VaultEntryNotFoundError,
    VaultError,
    VaultKeyError,
    key_from_file,
)

PATIENT_ID = "MRN-0042-VAULT"
PATIENT_NAME = "Vaultson^Veronica"
STUDY_UID = "1.2.826.0.1.3680043.10.999.42.1"
SOP_UID = "1.2.826.0.1.3680043.10.999.42.2"


def _instance() -> Dataset:
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    ds.PatientName = PATIENT_NAME
    ds.StudyInstanceUID = STUDY_UID
    ds.SOPInstanceUID = SOP_UID
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyDate = "20230102"
    return ds


def _files(path: Path) -> bytes:
    """The vault file and any journal beside it."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_round_trip(tmp_path: Path) -> None:
    key = key_from_file(tmp_path / "vault.key")
    result = Deidentifier(b"vault-test-secret-0123456789").deidentify_instance(_instance())
    with ReidentificationVault(tmp_path / "reid.sqlite", key) as vault:
        vault.record_all(result.mappings)
        vault.record_all(result.mappings)  # idempotent
        assert len(vault) == len(result.mappings) == 4  # ID, offset, 2 UIDs
    with ReidentificationVault(
        tmp_path / "reid.sqlite", key_from_file(tmp_path / "vault.key")
    ) as v:
        pseudonym = result.patient_pseudonym
        assert v.reidentify(MappingKind.PATIENT_ID, pseudonym) == PATIENT_ID
        assert int(v.reidentify("date_offset", pseudonym)) == result.date_offset_days
        new_study = str(result.dataset.StudyInstanceUID)
        assert v.reidentify("uid", new_study) == STUDY_UID
        assert v.reidentify("uid", str(result.dataset.SOPInstanceUID)) == SOP_UID
        assert v.pseudonym_for("uid", STUDY_UID) == new_study
        assert v.pseudonym_for("uid", "1.2.3") is None
        with pytest.raises(VaultEntryNotFoundError, match="no uid entry"):
            v.reidentify("uid", "2.25.1")
        with pytest.raises(VaultError, match="another original"):
            v.record("uid", "1.2.3.4", new_study)


def test_file_holds_no_clear_value(tmp_path: Path) -> None:
    path = tmp_path / "reid.sqlite"
    result = Deidentifier(b"vault-test-secret-0123456789").deidentify_instance(_instance())
    with ReidentificationVault(path, os.urandom(32)) as vault:
        vault.record_all(result.mappings)
    data = _files(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clear = {PATIENT_ID, PATIENT_NAME, "Vaultson", STUDY_UID, SOP_UID, "patient_id", "uid"}
    clear |= {m.pseudonym for m in result.mappings} | {m.original for m in result.mappings}
    for value in sorted(clear):
        assert value.encode() not in data, value
        assert value.encode("utf-16-le") not in data, value


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reid.sqlite"
    with ReidentificationVault(path, b"k" * 32) as vault:
        vault.record("patient_id", PATIENT_ID, "DEID-1")
    with pytest.raises(VaultKeyError, match="does not open") as caught:
        ReidentificationVault(path, b"j" * 32)
    assert isinstance(caught.value, DeidentificationError)
    with pytest.raises(VaultKeyError, match="32 bytes"):
        ReidentificationVault(path, b"short")
    with ReidentificationVault(path, b"k" * 32) as vault:  # the right key still works
        assert vault.reidentify("patient_id", "DEID-1") == PATIENT_ID


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    key = key_from_file(path)
    assert len(key) == 32 and key_from_file(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(VaultKeyError, match="chmod 600"):
        key_from_file(path)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(VaultKeyError, match="16 bytes"):
        key_from_file(short)
