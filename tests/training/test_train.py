"""Training, resume, export parity and publishing, on tiny phantoms (seconds, not minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inference.package import ModelPackage
from inference.registry import Registry
from training.config import TrainConfig, load_config
from training.data import Case, phantom_cases
from training.errors import ConfigError, TrainingError
from training.export import check_parity, export_onnx
from training.publish import publish
from training.train import CHECKPOINT, build_network, load_weights, train

pytestmark = pytest.mark.train

TINY = {
    "model": {"id": "tiny-nodule", "version": "0.0.1", "name": "tiny test model"},
    "data": {
        "source": "phantoms",
        "phantoms": {"seed": 18, "count": 2, "matrix": 96, "max_slices": 40},
    },
    "input": {"spacing_mm": [2.0, 2.0, 2.0]},
    "network": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    "sampling": {"samples_per_case": 2, "ratios": [0.1, 0.3, 0.6]},
    "optim": {
        "iterations": 40,
        "batch_size": 4,
        "patch_size": [32, 32, 32],
        "checkpoint_every": 5,
        "seed": 3,
        "learning_rate": 0.01,
    },
    "output_dir": "run",
}


def write_config(tmp: Path, **changes: object) -> Path:
    doc = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def tiny_cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    cfg = TrainConfig.model_validate({**TINY, "output_dir": "unused"})
    assert cfg.data.phantoms is not None
    return phantom_cases(cfg.data.phantoms, cfg.input, tmp_path_factory.mktemp("cache"))


def test_cases_have_nodules_lungs_and_outside(tiny_cases: list[Case]) -> None:
    for case in tiny_cases:
        counts = np.bincount(case.sampling.ravel(), minlength=3)
        assert counts.min() > 0, counts
        assert case.image.min() >= 0.0 and case.image.max() <= 1.0
        assert (case.label > 0).sum() == counts[2]


def test_loss_falls(tmp_path: Path, tiny_cases: list[Case]) -> None:
    cfg = load_config(write_config(tmp_path))
    losses: list[float] = []
    train(cfg, tiny_cases, device="cpu", on_step=lambda it, loss, rate: losses.append(loss))
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    _, loaded = load_weights(cfg.output_dir)
    assert loaded.digest() == cfg.digest()


def test_resume_continues_exactly(tmp_path: Path, tiny_cases: list[Case]) -> None:
    (tmp_path / "a").mkdir()
    straight = load_config(write_config(tmp_path / "a", optim__iterations=10))
    train(straight, tiny_cases, device="cpu")

    (tmp_path / "b").mkdir()
    cfg = load_config(write_config(tmp_path / "b", optim__iterations=10))

    class Killed(Exception):
        pass

    def kill_after_7(it: int, loss: float, rate: float) -> None:
        if it == 7:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tiny_cases, device="cpu", on_step=kill_after_7)
    assert torch.load(cfg.output_dir / CHECKPOINT, weights_only=False)["iteration"] == 5
    # resumes at iteration 5, its batches now drawn by two loader processes: the same weights
    train(cfg, tiny_cases, device="cpu", loader_workers=2)
    a, _ = load_weights(straight.output_dir)
    b, _ = load_weights(cfg.output_dir)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)


def test_checkpoint_of_another_config_is_refused(tmp_path: Path, tiny_cases: list[Case]) -> None:
    train(load_config(write_config(tmp_path, optim__iterations=5)), tiny_cases, device="cpu")
    other = load_config(write_config(tmp_path, optim__iterations=6))
    with pytest.raises(TrainingError, match="different training config"):
        train(other, tiny_cases, device="cpu")


def test_cuda_asked_without_gpu_is_an_error(tmp_path: Path, tiny_cases: list[Case]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal applies only without one")
    with pytest.raises(TrainingError, match="CUDA"):
        train(load_config(write_config(tmp_path)), tiny_cases, device="cuda")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim__patch_size": [30, 32, 32]}, "divisible"),
        ({"data__source": "folder"}, "data.folder is not set"),
        ({"optim__iterations": 0}, "optim.iterations"),
        ({"model__version": "one"}, "model.version"),
        ({"data__phantoms__profile": "robustness"}, "robustness profile is for evaluation"),
    ],
)
def test_bad_config_is_refused_with_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = write_config(tmp_path, **change)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_unknown_key_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, optim__learning_rat=0.1)
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(path)
    path.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_export_is_one_file_with_dynamic_axes_and_parity(tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate({**TINY, "output_dir": "x"})
    torch.manual_seed(0)
    net = build_network(cfg.network).eval()
    path = tmp_path / "model.onnx"
    export_onnx(net, path, example_size=32)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    result = check_parity(net, path, [(1, 1, 32, 32, 32), (2, 1, 48, 64, 40), (1, 1, 16, 80, 96)])
    assert result.max_abs_diff < 1e-4, result


def test_publish_writes_a_package_the_registry_serves(
    tmp_path: Path, tiny_cases: list[Case]
) -> None:
    cfg = load_config(write_config(tmp_path, optim__iterations=15))
    train(cfg, tiny_cases, device="cpu")
    models = tmp_path / "models"
    path = publish(cfg.output_dir, models, eval_seed=700, eval_count=2, eval_matrix=96)
    assert path == models / "tiny-nodule" / "0.0.1"
    assert sorted(p.name for p in path.iterdir()) == [
        "evaluation.json",
        "evaluation.md",
        "froc.png",
        "model.onnx",
        "model.yaml",
        "weights.pt",
    ]
    package = Registry(models).find("tiny-nodule")
    doc = json.loads(package.evaluation_path.read_text())
    assert doc["n_scans"] == 2
    assert {"sensitivity_ge6mm", "fp_per_scan", "n_scans"} <= set(doc)
    assert package.card.metrics["n_scans"] == 2.0
    assert package.card.training.test_seeds == [700, 701]
    assert package.card.onnx.max_abs_diff_vs_torch < 1e-3
    with pytest.raises(TrainingError, match="exists"):
        publish(cfg.output_dir, models, eval_seed=700, eval_count=2, eval_matrix=96)
    with pytest.raises(TrainingError, match="overlap the training seeds"):
        publish(cfg.output_dir, models, eval_seed=19, eval_count=2, eval_matrix=96, force=True)
    assert not list((models / "tiny-nodule").glob(".staging*"))
    ModelPackage.load(path)


def test_folder_scans_take_truth_json_or_the_seg_components(tmp_path: Path) -> None:
    from training.evaluate import folder_scans
    from training.phantom_dicom import write_phantoms

    (study,) = write_phantoms(tmp_path / "data", 1, 19, matrix=96, max_slices=40)
    truth = json.loads(study.truth_path.read_text())["nodules"]
    (with_truth,) = list(folder_scans(tmp_path / "data"))
    assert [n.long_axis_mm for n in with_truth.nodules] == [n["long_axis_mm"] for n in truth]
    study.truth_path.unlink()  # real annotations have no truth.json: nodules from the SEG
    (from_seg,) = list(folder_scans(tmp_path / "data"))
    visible = [n for n in truth if n["long_axis_mm"] >= 6]
    assert len(visible) <= len(from_seg.nodules) <= len(truth)
    for n in from_seg.nodules:
        assert n.volume_mm3 > 0 and n.long_axis_mm > 0
        assert int((from_seg.truth_labels == n.label).sum()) > 0


def test_patches_per_nodule_anywhere_and_on_bone_and_vessels(tiny_cases: list[Case]) -> None:
    from training.config import SamplingConfig
    from training.data import BONE, NODULE, VESSEL
    from training.train import draw_patch, pick_voxel

    case = max(tiny_cases, key=lambda c: len(c.nodule_indices))
    sizes = np.array([n.size for n in case.nodule_indices])
    assert len(sizes) >= 2 and sizes.max() > 3 * sizes.min()
    assert (case.sampling == BONE).any() and (case.sampling == VESSEL).any()
    rng = np.random.default_rng(0)
    owner = np.zeros(case.label.size, dtype=np.int64)
    for n, idx in enumerate(case.nodule_indices):
        owner[idx] = n

    def share_of_smallest(per_nodule: bool) -> float:
        cfg = SamplingConfig(ratios=(0, 0, 1, 0, 0), per_nodule=per_nodule)
        picks = []
        for _ in range(400):
            cls, kji = pick_voxel(case, cfg, rng)
            assert cls == NODULE
            picks.append(owner[np.ravel_multi_index(tuple(kji), case.label.shape)])
        return float(np.mean(np.asarray(picks) == int(np.argmin(sizes))))

    # per nodule: every nodule gets its share, the smallest too; per voxel it gets its volume's
    assert share_of_smallest(True) > 0.5 / len(sizes)
    by_size = SamplingConfig(ratios=(0, 0, 1, 0, 0), per_nodule=True, nodule_weighting="size")
    weights = sizes ** (-1 / 3)
    expected = weights[np.argmin(sizes)] / weights.sum()  # > 1 / len(sizes): the smallest
    picks = [
        owner[np.ravel_multi_index(tuple(pick_voxel(case, by_size, rng)[1]), case.label.shape)]
        for _ in range(600)
    ]
    assert abs(float(np.mean(np.asarray(picks) == int(np.argmin(sizes)))) - expected) < 0.06
    assert share_of_smallest(False) < 1.5 * sizes.min() / sizes.sum() + 0.02
    anywhere = SamplingConfig(ratios=(0, 0, 1, 0, 0), per_nodule=True, anywhere=True)
    off_centre = 0
    for _ in range(40):
        _, label = draw_patch(case, anywhere, (32, 32, 32), rng)
        assert label.any()
        off_centre += int(label[16, 16, 16] == 0)
    assert off_centre >= 10  # the nodule is seen anywhere in the patch, not only at its centre
    centred = SamplingConfig(ratios=(0, 0, 1, 0, 0), anywhere=False)
    for _ in range(10):
        _, label = draw_patch(case, centred, (32, 32, 32), rng)
        assert label[16, 16, 16] > 0
    window = TrainConfig.model_validate({**TINY, "output_dir": "x"}).input
    bone = (250.0 - window.window_min_hu) / (window.window_max_hu - window.window_min_hu)
    for cls, ratios in ((BONE, (0, 0, 0, 1, 0)), (VESSEL, (0, 0, 0, 0, 1))):
        image, _ = draw_patch(case, SamplingConfig(ratios=ratios), (32, 32, 32), rng)
        if cls == BONE:
            assert image[16, 16, 16] > bone - 1e-2
        else:
            assert image[16, 16, 16] > (-500.0 - window.window_min_hu) / 1400.0 - 1e-2


def test_thick_slice_augmentation_blurs_along_z_only_and_keeps_the_label() -> None:
    from training.train import RandSliceThicknessd

    image = np.zeros((1, 16, 8, 8), dtype=np.float32)
    image[0, 8, 4, 4] = 1.0
    label = (image > 0).astype(np.uint8)
    t = RandSliceThicknessd("image", prob=1.0, max_k=5)
    t.set_random_state(seed=1)
    out = t({"image": image, "label": label})
    blurred = np.asarray(out["image"])[0]
    spread = np.flatnonzero(blurred[:, 4, 4] > 0)
    assert 2 <= spread.size <= 5  # k slices averaged
    assert np.isclose(blurred.sum(), 1.0)
    assert np.count_nonzero(blurred.sum(axis=0)) == 1  # nothing moved in-plane
    assert out["label"] is label  # the truth stays the thin-slice truth
    off = RandSliceThicknessd("image", prob=0.0, max_k=5)
    assert np.asarray(off({"image": image, "label": label})["image"]).max() == 1.0


def test_correlated_noise_is_low_frequency_and_keeps_the_label() -> None:
    from training.train import RandCorrelatedNoised

    image = np.full((1, 32, 32, 32), 0.3, dtype=np.float32)
    label = np.zeros(image.shape, dtype=np.uint8)
    t = RandCorrelatedNoised("image", prob=1.0, std=0.06, sigma_vox=(2.0, 3.0))
    t.set_random_state(seed=4)
    out = t({"image": image, "label": label})
    noise = np.asarray(out["image"])[0] - 0.3
    assert 0.0 < noise.std() <= 0.06 + 1e-6
    # neighbouring voxels move together (white noise would give ~0)
    neighbours = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
    assert neighbours > 0.8
    assert out["label"] is label


def test_a_config_without_the_new_settings_keeps_its_published_digest() -> None:
    """Settings added later (augment, nodule_weighting), at their defaults, leave an older
    config's digest as it was: 2.1.0's card names its detector config's digest."""
    root = Path(__file__).resolve().parents[2]
    card = yaml.safe_load((root / "models/lung-nodule/2.1.0/model.yaml").read_text())
    cfg = load_config(root / "training/configs/lung-nodule-2-detector.yaml")
    assert cfg.digest() == card["training"]["extra"]["training_config_digest"]
    augmented = load_config(root / "training/configs/lung-nodule-2.2-detector.yaml")
    assert augmented.augment is not None and augmented.digest() != cfg.digest()
    # 2.3.0's detector was trained before correlated noise existed: its card's digest holds
    card = yaml.safe_load((root / "models/lung-nodule/2.3.0/model.yaml").read_text())
    gpu = load_config(root / "training/configs/lung-nodule-2.3-detector.yaml")
    assert gpu.digest() == card["training"]["extra"]["training_config_digest"]
    # 2.4.0's was trained before phantoms had a profile: the train profile leaves it as it was
    card = yaml.safe_load((root / "models/lung-nodule/2.4.0/model.yaml").read_text())
    latest = load_config(root / "training/configs/lung-nodule-2.4-detector.yaml")
    assert latest.data.phantoms is not None and latest.data.phantoms.profile == "train"
    assert latest.digest() == card["training"]["extra"]["training_config_digest"]
    phantoms = latest.data.phantoms.model_copy(update={"profile": "wide"})
    wide = latest.model_copy(update={"data": latest.data.model_copy(update={"phantoms": phantoms})})
    assert wide.digest() != latest.digest()


def test_wide_profile_phantoms_are_other_cases_cached_apart(tmp_path: Path) -> None:
    """``data.phantoms.profile: wide`` trains on the wide profile's scanners (a detector for
    scans beyond the train profile's); the train profile's cache entries keep their names."""
    cfg = TrainConfig.model_validate({**TINY, "output_dir": "unused"})
    assert cfg.data.phantoms is not None
    one = cfg.data.phantoms.model_copy(update={"count": 1})
    (train_case,) = phantom_cases(one, cfg.input, tmp_path)
    (wide_case,) = phantom_cases(one.model_copy(update={"profile": "wide"}), cfg.input, tmp_path)
    assert len(list(tmp_path.glob("phantom-18-*.npz"))) == 2
    same_shape = train_case.image.shape == wide_case.image.shape
    assert not same_shape or not np.array_equal(train_case.image, wide_case.image)
