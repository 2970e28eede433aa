"""What changed between two versions of a dataset (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from preread.datasets.manifest import DatasetManifest

__all__ = ["DatasetDiff", "diff"]


@dataclass(frozen=True)
class DatasetDiff:
    added: tuple[str, ...]
    """Cases (de-identified StudyInstanceUIDs) only in the newer version."""
    removed: tuple[str, ...]
    """Cases only in the older one (e.g. their grant was revoked)."""
    relabelled: tuple[str, ...]
    """Cases in both whose labels changed (a newer review of the study)."""


def diff(old: DatasetManifest, new: DatasetManifest) -> DatasetDiff:
    before = {c.case_id: c for c in old.cases}
    after = {c.case_id: c for c in new.cases}
    return DatasetDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        relabelled=tuple(
            sorted(
                uid
                for uid in before.keys() & after.keys()
                if before[uid].files != after[uid].files
                or before[uid].review_id != after[uid].review_id
            )
        ),
    )
