"""A model package: a folder holding ``model.yaml`` (the card), ``model.onnx`` (the
sliding-window network), the ONNX graphs of any further stages the card declares, and
``evaluation.json``.

:meth:`ModelPackage.load` refuses a package whose card does not follow the schema or one of
whose ONNX files' sha256 differs from the card's, with a
:class:`~inference.errors.PackageError` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from inference.card import ModelCard
from inference.errors import PackageError

CARD_FILE = "model.yaml"
EVALUATION_FILE = "evaluation.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelPackage:
    """A verified model package. Build it with :meth:`load`."""

    path: Path
    card: ModelCard

    @property
    def id(self) -> str:
        return self.card.id

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def model_path(self) -> Path:
        """The ONNX file (``card.onnx.file`` inside the folder)."""
        return self.path / self.card.onnx.file

    def stage_path(self, name: str) -> Path:
        """The ONNX file of the card's stage ``name``."""
        return self.path / self.card.stage(name).onnx.file

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION_FILE

    @classmethod
    def load(cls, folder: Path | str) -> ModelPackage:
        """Read and verify the package in ``folder``.

        Checks, in order: ``model.yaml`` exists, is YAML and follows :class:`ModelCard`;
        the ONNX file it names exists and its sha256 equals ``card.onnx.sha256``;
        ``evaluation.json`` exists and holds a JSON object.

        Raises:
            PackageError: the message starts with the offending path and says what is wrong
                (the card's failing fields, or "sha256 mismatch").
        """
        root = Path(folder)
        if not root.is_dir():
            raise PackageError(f"{root}: not a model package folder")
        card = load_card(root / CARD_FILE)
        package = cls(path=root, card=card)
        verify_sha256(package.model_path, card.onnx.sha256)
        for stage in card.stages:  # every graph of a staged package, not only the first
            verify_sha256(package.stage_path(stage.name), stage.onnx.sha256)
        _check_evaluation(package.evaluation_path)
        return package

    def read_evaluation(self) -> dict[str, object]:
        """The parsed ``evaluation.json`` (written by the training side's evaluator)."""
        return _check_evaluation(self.evaluation_path)


def load_card(path: Path) -> ModelCard:
    """Read a card, translating every failure into a :class:`PackageError` naming ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackageError(f"{path}: missing (every model package needs a card)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path}: cannot be read: {exc}") from exc
    try:
        return ModelCard.from_yaml_text(text)
    except yaml.YAMLError as exc:
        raise PackageError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        reason = _fields(exc)
        raise PackageError(f"{path}: does not follow the model card schema: {reason}") from exc
    except TypeError as exc:
        raise PackageError(f"{path}: unsupported YAML value: {exc}") from exc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`PackageError` unless ``path`` exists and hashes to ``expected``."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise PackageError(f"{path}: missing (named by the card's onnx.file)") from None
    except OSError as exc:
        raise PackageError(f"{path}: cannot be read: {exc}") from exc
    if actual != expected:
        raise PackageError(
            f"{path}: sha256 mismatch: the card says {expected}, the file hashes to {actual} "
            "(the model file was changed or replaced after the card was written)"
        )


def _check_evaluation(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: missing (every model package needs its evaluation)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise PackageError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _fields(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<card>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
