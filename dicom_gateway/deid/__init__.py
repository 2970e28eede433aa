"""De-identification of DICOM instances (PS3.15 Annex E) and the re-identification vault.

The Basic Application Level Confidentiality Profile with the Retain Longitudinal Temporal
Information with Modified Dates Option and the Clean Descriptors Option (PS3.15 E.1, E.3.5,
E.3.6), applied per Table E.1-1 (:mod:`~dicom_gateway.deid.profile`, edition 2023+):

* :class:`Deidentifier` — ``deidentify(ds)`` / ``deidentify_instance(ds)``: a new dataset with
  UIDs remapped consistently (HMAC-SHA256 of the original under a secret), a stable patient
  pseudonym, dates moved by a per-patient offset, private tags, curves and overlays removed;
* :class:`ReidentificationVault` — the original ↔ pseudonym map in its own encrypted SQLite
  file; :func:`key_from_file` for its key.

Typical use::

    deid = Deidentifier(secret)
    with ReidentificationVault(vault_path, key_from_file(key_path)) as vault:
        for path in paths:
            result = deid.deidentify_instance(pydicom.dcmread(path))
            vault.record_all(result.mappings)
            result.dataset.save_as(out_dir / path.name, enforce_file_format=True)
"""

from dicom_gateway.deid.deidentify import (
    BurnedInAnnotationError,
    DeidentificationError,
    DeidentifiedInstance,
    Deidentifier,
    Mapping,
    MappingKind,
    UnsafeAttributeError,
)
from dicom_gateway.deid.profile import (
    SUPPLEMENT,
    TABLE_E1_1,
    Action,
    Effect,
    ProfileEntry,
    profile_entry,
)
from dicom_gateway.deid.vault import (
    ReidentificationVault,
    VaultEntryNotFoundError,
    VaultError,
    VaultKeyError,
    key_from_file,
)

__all__ = [
    "SUPPLEMENT",
    "TABLE_E1_1",
    "Action",
    "BurnedInAnnotationError",
    "DeidentificationError",
    "DeidentifiedInstance",
    "Deidentifier",
    "Effect",
    "Mapping",
    "MappingKind",
    "ProfileEntry",
    "ReidentificationVault",
    "UnsafeAttributeError",
    "VaultEntryNotFoundError",
    "VaultError",
    "VaultKeyError",
    "key_from_file",
    "profile_entry",
]
