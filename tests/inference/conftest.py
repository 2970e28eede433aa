from __future__ import annotations

from pathlib import Path

import pytest

from inference.package import ModelPackage
from tests.inference.tiny_model import write_tiny_package


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    return write_tiny_package(tmp_path / "tiny-nodule" / "1.0.0")


@pytest.fixture
def package(package_dir: Path) -> ModelPackage:
    return ModelPackage.load(package_dir)
