"""Versioned, content-hashed datasets on disk: ``<PREREAD_DATASETS_DIR>/<name>/<version>/``.

A version folder holds one sub-folder per case (named by the case's de-identified
StudyInstanceUID, under ``cases/`` or, with no positive nodule, ``negatives-only/``: ``ct/`` with
the CT series, ``seg-*.dcm`` with the positive nodules, ``negatives.json`` with the hard
negatives) and ``manifest.json``: what was built, from what,
under which grants, and the sha256 of every file. ``content_sha256`` hashes the list of
(file, sha256) pairs, so two builds of the same content have the same hash; a build whose
content equals the newest version's is not stored again. Versions are 1, 2, …; a version is
written in a temporary folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from preread.errors import PrereadError

__all__ = [
    "CaseEntry",
    "DatasetError",
    "DatasetManifest",
    "DatasetRegistry",
    "LeftOut",
    "Positive",
    "content_sha256",
    "file_hashes",
]

MANIFEST = "manifest.json"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class DatasetError(PrereadError):
    """A dataset that does not exist, does not verify, or cannot be built (says why)."""


class Positive(BaseModel):
    """One positive nodule of a case: its segment in the case's SEG and where it came from."""

    segment_number: int
    origin: Literal["ai-accepted", "ai-corrected", "reader-added"]
    reader_placed: bool = Field(
        description="the reader clicked it; its extent came from the pixels"
    )
    nodule_type: str | None
    long_axis_mm: float
    centre_lps_mm: tuple[float, float, float]


class Negative(BaseModel):
    """A hard negative: an AI finding a radiologist rejected, and why."""

    centre_lps_mm: tuple[float, float, float]
    long_axis_mm: float
    probability: float
    reason: str
    model: str


class CaseEntry(BaseModel):
    """One study in the dataset, with its lineage (no patient identifier)."""

    case_id: str = Field(description="the de-identified StudyInstanceUID (the case folder)")
    review_id: str
    review_version: int
    reviewer: str = Field(description="the signing reader's user id")
    signed_at: datetime
    grant_id: str
    model: str = Field(description="id@version of the model that made the findings reviewed")
    positives: list[Positive]
    negatives: list[Negative]
    files: dict[str, str] = Field(description="path in the version folder -> sha256")

    @property
    def folder(self) -> str:
        """The case's folder in its version folder: ``cases/ID`` or ``negatives-only/ID``."""
        for path in self.files:
            head, case, *_ = path.split("/")
            if case == self.case_id:
                return f"{head}/{case}"
        raise DatasetError(f"case {self.case_id}: the manifest lists none of its files")


class LeftOut(BaseModel):
    review_id: str
    reason: str


class DatasetManifest(BaseModel):
    name: str
    version: int
    content_sha256: str
    created_at: datetime
    created_by: str
    source: Literal["reviews"] = "reviews"
    tenant: str
    grant_ids: list[str]
    since: datetime | None
    model_id: str
    deidentification: str
    cases: list[CaseEntry]
    left_out: list[LeftOut]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` but the manifest: relative path -> sha256."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def content_sha256(hashes: dict[str, str]) -> str:
    lines = "".join(f"{path}\t{digest}\n" for path, digest in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


class DatasetRegistry:
    """The datasets under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def manifest(self, name: str, version: int | None = None) -> DatasetManifest:
        """The manifest of ``name@version`` (default: the newest), its files verified."""
        versions = self.versions(name)
        if not versions:
            raise DatasetError(f"no dataset {name!r} in {self.root}")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise DatasetError(
                f"dataset {name!r} has no version {chosen} (versions: "
                + ", ".join(map(str, versions))
                + ")"
            )
        folder = self.path(name, chosen)
        manifest = DatasetManifest.model_validate_json((folder / MANIFEST).read_text())
        if content_sha256(file_hashes(folder)) != manifest.content_sha256:
            raise DatasetError(
                f"dataset {name}@{chosen}: its files do not match its manifest's content_sha256"
                " (changed or missing files)"
            )
        return manifest

    def path(self, name: str, version: int) -> Path:
        return self.root / check_name(name) / str(version)

    def resolve(self, ref: str) -> tuple[DatasetManifest, Path]:
        """``name`` or ``name@version`` -> its verified manifest and folder."""
        name, _, version = ref.partition("@")
        if version and not version.isdigit():
            raise DatasetError(f"{ref!r}: a dataset version is a number (name@3)")
        manifest = self.manifest(name, int(version) if version else None)
        return manifest, self.path(name, manifest.version)

    def publish(self, staged: Path, manifest: DatasetManifest) -> tuple[DatasetManifest, bool]:
        """Move ``staged`` (a folder holding the cases) into place as the next version, with
        ``manifest`` numbered and written; when its content equals the newest version's,
        nothing is stored and that version is returned (``False``: not new)."""
        name = check_name(manifest.name)
        versions = self.versions(name)
        if versions:
            newest = self.manifest(name, versions[-1])
            if newest.content_sha256 == manifest.content_sha256:
                shutil.rmtree(staged)
                return newest, False
        numbered = manifest.model_copy(update={"version": (versions[-1] + 1) if versions else 1})
        (staged / MANIFEST).write_text(numbered.model_dump_json(indent=2) + "\n")
        target = self.path(name, numbered.version)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.rename(staged, target)  # atomic on one file system: never half a version
        return numbered, True

    def staging(self, name: str) -> Path:
        """An empty folder beside the versions to build the next one in."""
        parent = self.root / check_name(name)
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = parent / f".staging-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(mode=0o700)
        return staged


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise DatasetError(
            f"{name!r} is not a dataset name (lower-case letters, digits, '.', '_' or '-', "
            "at most 64)"
        )
    return name


def read_json(path: Path) -> object:
    return json.loads(path.read_text())
