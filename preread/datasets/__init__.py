"""Datasets from radiologists' signed reviews (issue 15, item 1): versioned, content-hashed,
de-identified, under a ``model-training`` grant, with their lineage.

* :mod:`.manifest` — the versions on disk and their manifests;
* :mod:`.reviews` — building the next version from signed reviews;
* :mod:`.diff` — what changed between two versions;
* :mod:`.training` — the versions a training config names, verified and still authorized.
"""

from preread.datasets.diff import DatasetDiff, diff
from preread.datasets.manifest import DatasetError, DatasetManifest, DatasetRegistry
from preread.datasets.reviews import BuildResult, DatasetContext, build_from_reviews
from preread.datasets.training import authorized_datasets

__all__ = [
    "BuildResult",
    "DatasetContext",
    "DatasetDiff",
    "DatasetError",
    "DatasetManifest",
    "DatasetRegistry",
    "authorized_datasets",
    "build_from_reviews",
    "diff",
]
