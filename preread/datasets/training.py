"""The dataset versions a training config names (``data.source: datasets``), as ``preread
train`` uses them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from preread.datasets.manifest import DatasetError, DatasetManifest, DatasetRegistry
from preread.grants import GrantStore
from preread.grants.records import GrantNotFoundError

__all__ = ["authorized_datasets"]


def authorized_datasets(
    refs: Sequence[str],
    registry: DatasetRegistry,
    grants: GrantStore,
    at: datetime | None = None,
) -> list[tuple[DatasetManifest, Path]]:
    """Each ``NAME@VERSION`` with its folder, its files verified against its manifest, and
    every grant it was built under valid ``at`` (now): a version built before a grant was
    revoked is refused, naming the grant (its studies leave the next version)."""
    moment = at or datetime.now(UTC)
    found = [registry.resolve(ref) for ref in refs]
    for manifest, _ in found:
        for grant_id in manifest.grant_ids:
            try:
                valid = grants.get(grant_id).valid_at(moment)
            except GrantNotFoundError:
                valid = False
            if not valid:
                raise DatasetError(
                    f"dataset {manifest.ref} was built under grant {grant_id}, which is no "
                    "longer valid: build a new version (preread datasets build)"
                )
    return found
