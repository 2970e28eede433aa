from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import PackageError, PackageNotFoundError
from inference.package import ModelPackage
from inference.registry import Registry
from tests.inference.tiny_model import write_tiny_package


def test_package_loads(package_dir: Path) -> None:
    package = ModelPackage.load(package_dir)
    assert (package.id, package.version) == ("tiny-nodule", "1.0.0")
    assert package.model_path == package_dir / "model.onnx"
    assert package.read_evaluation()["dice"] == 1.0


def test_tampered_model_is_refused(package_dir: Path) -> None:
    onnx_file = package_dir / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"model\.onnx: sha256 mismatch"):
        ModelPackage.load(package_dir)


def test_missing_model_is_refused(package_dir: Path) -> None:
    (package_dir / "model.onnx").unlink()
    with pytest.raises(PackageError, match=r"model\.onnx: missing"):
        ModelPackage.load(package_dir)


def _edit_card(folder: Path, old: str, new: str) -> None:
    card = folder / "model.yaml"
    text = card.read_text()
    assert old in text
    card.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("thresholds:\n  probability: 0.5\n  min_volume_mm3: 10.0\n", "", "thresholds"),  # missing
        ("min_slices: 20", "min_slices: many", "series_rules.min_slices"),  # wrong type
        ("  opset: 18\n", "  opset: 18\n  quantized: true\n", "onnx.quantized"),  # extra field
        ("sha256: ", "sha256: not-hex-", "onnx.sha256"),
    ],
)
def test_broken_card_is_refused_naming_the_field(
    package_dir: Path, old: str, new: str, field: str
) -> None:
    _edit_card(package_dir, old, new)
    with pytest.raises(PackageError) as info:
        ModelPackage.load(package_dir)
    message = str(info.value)
    assert "model.yaml" in message
    assert field in message


def test_bad_yaml_is_refused(package_dir: Path) -> None:
    (package_dir / "model.yaml").write_text("id: [unclosed\n  version: : :\n")
    with pytest.raises(PackageError, match=r"model\.yaml: not valid YAML"):
        ModelPackage.load(package_dir)


def test_missing_card_and_evaluation_are_refused(package_dir: Path) -> None:
    (package_dir / "evaluation.json").write_text("[1, 2]")
    with pytest.raises(PackageError, match=r"evaluation\.json: must hold a JSON object"):
        ModelPackage.load(package_dir)
    (package_dir / "model.yaml").unlink()
    with pytest.raises(PackageError, match=r"model\.yaml: missing"):
        ModelPackage.load(package_dir)


def test_registry_lists_and_finds_by_semver(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for version in ("1.2.0", "1.10.0", "1.10.0-rc.1", "0.9.0"):
        write_tiny_package(root / "tiny-nodule" / version, version=version)
    write_tiny_package(root / "other-model" / "0.1.0", model_id="other-model", version="0.1.0")
    (root / "tiny-nodule" / "not-a-version").mkdir()
    (root / "README.md").write_text("not a package")

    registry = Registry(root)
    assert registry.ids() == ["other-model", "tiny-nodule"]
    assert registry.versions("tiny-nodule") == ["0.9.0", "1.2.0", "1.10.0-rc.1", "1.10.0"]
    assert registry.find("tiny-nodule").version == "1.10.0"
    assert registry.find("tiny-nodule", "1.2.0").version == "1.2.0"
    assert [p.id for p in registry.list()] == ["other-model"] + ["tiny-nodule"] * 4
    with pytest.raises(PackageNotFoundError, match=r"no version '3\.0\.0'.*installed: 0\.9\.0"):
        registry.find("tiny-nodule", "3.0.0")
    with pytest.raises(PackageNotFoundError, match="no model 'absent'"):
        registry.find("absent")
    assert Registry(tmp_path / "nowhere").refs() == []


def test_registry_refuses_a_card_in_the_wrong_folder(tmp_path: Path) -> None:
    write_tiny_package(tmp_path / "tiny-nodule" / "2.0.0", version="1.0.0")
    with pytest.raises(PackageError, match=r"installed as tiny-nodule/2\.0\.0"):
        Registry(tmp_path).find("tiny-nodule")
