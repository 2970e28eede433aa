"""The installed model packages: a folder laid out as ``<root>/<id>/<version>/``.

Listing reads only folder names (cheap); :meth:`Registry.find` loads and verifies one
package (card schema, sha256) and checks that its card agrees with the folder it sits in.
Versions are ordered by semantic-version precedence (:mod:`inference.semver`).
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from pathlib import Path

from inference.card import SLUG_PATTERN
from inference.errors import PackageError, PackageNotFoundError
from inference.package import CARD_FILE, ModelPackage
from inference.semver import SemVer, is_semver

_SLUG = re.compile(SLUG_PATTERN)


@dataclass(frozen=True)
class PackageRef:
    """Where an installed package lies; not yet verified."""

    id: str
    version: str
    folder: Path


class Registry:
    """The packages under ``root`` (``root/<id>/<version>/model.yaml``).

    Folders whose names are not a model id / semantic version, or that hold no ``model.yaml``,
    are not packages and are ignored.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def refs(self) -> builtins.list[PackageRef]:
        """Every installed package, by id, then by ascending version."""
        if not self.root.is_dir():
            return []
        found: builtins.list[PackageRef] = []
        for id_dir in self.root.iterdir():
            if not (id_dir.is_dir() and _SLUG.match(id_dir.name)):
                continue
            for ver_dir in id_dir.iterdir():
                if ver_dir.is_dir() and is_semver(ver_dir.name) and (ver_dir / CARD_FILE).is_file():
                    found.append(PackageRef(id_dir.name, ver_dir.name, ver_dir))
        return sorted(found, key=lambda r: (r.id, SemVer.parse(r.version).sort_key()))

    def ids(self) -> builtins.list[str]:
        """Installed model ids, sorted."""
        return sorted({r.id for r in self.refs()})

    def versions(self, model_id: str) -> builtins.list[str]:
        """Installed versions of ``model_id``, ascending by semantic-version precedence."""
        return [r.version for r in self.refs() if r.id == model_id]

    def find(self, model_id: str, version: str | None = None) -> ModelPackage:
        """Load and verify ``model_id`` at ``version`` (default: the latest installed).

        Raises:
            PackageNotFoundError: no such id or version is installed.
            PackageError: the package is broken or its card disagrees with its folder.
        """
        versions = self.versions(model_id)
        if not versions:
            raise PackageNotFoundError(f"{self.root}: no model {model_id!r} is installed")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise PackageNotFoundError(
                f"{self.root}: model {model_id!r} has no version {chosen!r} "
                f"(installed: {', '.join(versions)})"
            )
        folder = self.root / model_id / chosen
        package = ModelPackage.load(folder)
        if (package.card.id, package.card.version) != (model_id, chosen):
            raise PackageError(
                f"{package.card_path}: card says {package.card.id} {package.card.version} "
                f"but the package is installed as {model_id}/{chosen}"
            )
        return package

    def list(self) -> builtins.list[ModelPackage]:
        """Every installed package, loaded and verified, in :meth:`refs` order (raises on the
        first broken one)."""
        return [self.find(r.id, r.version) for r in self.refs()]
