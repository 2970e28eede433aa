"""Training data under authorization: the grant check and the de-identification that
``preread train`` hands to :func:`training.orthanc_data.pull_annotated_studies`.

* A study goes into a training set only when the watcher recorded it (so its tenant is known)
  and a valid ``model-training`` grant covers it; each inclusion and each refusal is audited.
* Every instance is de-identified (DICOM PS3.15 Annex E: Basic Profile, Retain Longitudinal
  Temporal Information with Modified Dates, Clean Descriptors) with a secret kept in
  ``PREREAD_DEID_KEY_FILE``; the re-identification map goes to an encrypted vault apart from the
  job store (``PREREAD_REID_VAULT``, key ``PREREAD_REID_VAULT_KEY_FILE``), and the audit trail
  records the de-identification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom.dataset import Dataset

from dicom_gateway.deid import Deidentifier, ReidentificationVault, key_from_file
from dicom_gateway.source import SeriesInfo, StudyInfo
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.grants import GrantStore, Purpose, StudyScope
from preread.settings import Settings
from preread.store import JobStore
from training.orthanc_data import Admission

DEID_METHOD = (
    "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile; Retain Longitudinal "
    "Temporal Information with Modified Dates Option; Clean Descriptors Option"
)
ACTOR = "system:training"


@dataclass
class TrainingAccess:
    """The admission check and the de-identifier of one dataset build."""

    store: JobStore
    grants: GrantStore
    audit: AuditLog
    deidentifier: Deidentifier
    vault: ReidentificationVault

    @classmethod
    def open(cls, settings: Settings, store: JobStore) -> TrainingAccess:
        grants = GrantStore(store.engine)
        for path in (
            settings.deid_key_path,
            settings.reid_vault_path,
            settings.reid_vault_key_path,
        ):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(
            store=store,
            grants=grants,
            audit=grants.audit,
            deidentifier=Deidentifier(key_from_file(settings.deid_key_path)),
            vault=ReidentificationVault(
                settings.reid_vault_path, key_from_file(settings.reid_vault_key_path)
            ),
        )

    def close(self) -> None:
        self.vault.close()

    def admit(self, study: StudyInfo, series: Sequence[SeriesInfo]) -> Admission:
        recorded = self.store.study(study.study_instance_uid)
        if recorded is None or recorded.tenant is None:
            return self._refuse(study, None, "the study was never recorded with a tenant")
        scope = StudyScope.of(recorded.facts)
        grant, why = self.grants.covering(scope, Purpose.MODEL_TRAINING, datetime.now(UTC))
        if grant is None:
            return self._refuse(study, recorded.tenant, why)
        self.audit.record(
            AuditEvent(
                actor=ACTOR,
                action=AuditAction.DATASET_INCLUDE,
                outcome=Outcome.SUCCESS,
                tenant=recorded.tenant,
                purpose=Purpose.MODEL_TRAINING.value,
                study_instance_uid=study.study_instance_uid,
                detail={"grant_id": grant.id, "series": len(series)},
            )
        )
        return Admission(grant.id)

    def deidentify(self, study: StudyInfo, instances: list[Dataset]) -> list[Dataset]:
        return self.deidentify_study(study.study_instance_uid, instances)

    def deidentify_study(self, study_instance_uid: str, instances: list[Dataset]) -> list[Dataset]:
        """One study's instances, de-identified consistently (references between them kept);
        the re-identification map goes to the vault and the audit trail records it."""
        results = [self.deidentifier.deidentify_instance(ds) for ds in instances]
        self.vault.record_all(m for r in results for m in r.mappings)
        self.audit.record(
            AuditEvent(
                actor=ACTOR,
                action=AuditAction.DEID,
                outcome=Outcome.SUCCESS,
                purpose=Purpose.MODEL_TRAINING.value,
                study_instance_uid=study_instance_uid,
                detail={"instances": len(results), "method": DEID_METHOD},
            )
        )
        return [r.dataset for r in results]

    def _refuse(self, study: StudyInfo, tenant: str | None, reason: str) -> Admission:
        self.audit.record(
            AuditEvent(
                actor=ACTOR,
                action=AuditAction.ACCESS_REFUSED,
                outcome=Outcome.REFUSED,
                tenant=tenant,
                purpose=Purpose.MODEL_TRAINING.value,
                study_instance_uid=study.study_instance_uid,
                detail={"reason": reason},
            )
        )
        return Admission(None, reason)
