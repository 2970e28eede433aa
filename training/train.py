"""Train the nodule segmentation network with MONAI (``preread train CONFIG``).

* Network: MONAI ``UNet`` (the choice, measured against SegResNet, is in docs/model-lung-nodule.md).
* Loss: Dice + cross-entropy (``monai.losses.DiceCELoss``), softmax over {background, nodule}.
* Patches (:func:`draw_patch`): drawn outside the lungs, on lung background, on nodules and, with
  five ratios, on bone and on vessels (the explicit hard negatives), in the config's ratios;
  nodule patches per nodule and with the nodule anywhere in the patch when the config asks
  (``sampling.per_nodule`` / ``sampling.anywhere``); flips, in-plane 90° rotations, intensity
  scale/shift and noise as augmentation (MONAI dictionary transforms), and with an ``augment``
  section acquisition-like ones: thicker slices, kernel-like blur/sharpening, stronger noise,
  contrast, low-frequency noise (:class:`training.config.AugmentConfig`).
* Reproducible and resumable: the case order and every random transform are seeded from
  (config seed, iteration), so a run resumed from a checkpoint continues exactly as an
  uninterrupted one would.
* CPU by default; on CUDA, mixed precision (``torch.autocast`` + ``GradScaler``) and, when started
  by ``torchrun``, DistributedDataParallel with one process per GPU.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSharpend,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from scipy import ndimage

from training.config import NetworkConfig, SamplingConfig, TrainConfig
from training.data import NODULE, Case
from training.errors import TrainingError

CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
METRICS = "metrics.jsonl"


def build_network(cfg: NetworkConfig) -> torch.nn.Module:
    """The network named by the config (2 output channels: background, nodule)."""
    net: torch.nn.Module = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=cfg.channels,
        strides=cfg.strides,
        num_res_units=cfg.num_res_units,
        dropout=cfg.dropout,
        norm=cfg.norm,
    )
    return net


def pick_voxel(
    case: Case, sampling: SamplingConfig, rng: np.random.Generator
) -> tuple[int, npt.NDArray[np.int64]]:
    """A sampling class drawn by the ratios (classes the case lacks are skipped), then a voxel
    of it — for nodules with ``per_nodule`` a nodule first (uniformly or by size).
    Returns (class, kji)."""
    indices = case.class_indices
    ratios = np.asarray(sampling.ratios, dtype=np.float64)
    present = np.array([indices[c].size > 0 for c in range(len(ratios))])
    weights = np.where(present, ratios, 0.0)
    if weights.sum() <= 0:
        weights = present.astype(np.float64)
    cls = int(rng.choice(len(ratios), p=weights / weights.sum()))
    nodules = case.nodule_indices
    if cls == NODULE and sampling.per_nodule and nodules:
        pool = nodules[_pick_nodule(nodules, sampling, rng)]
    else:
        pool = indices[cls]
    flat = int(pool[int(rng.integers(pool.size))])
    return cls, np.array(np.unravel_index(flat, case.image.shape), dtype=np.int64)


def _pick_nodule(
    nodules: list[npt.NDArray[np.int64]], sampling: SamplingConfig, rng: np.random.Generator
) -> int:
    """A nodule of the case: uniformly, or by ``volume^(-1/3)`` (``nodule_weighting: size``)."""
    if sampling.nodule_weighting == "uniform":
        return int(rng.integers(len(nodules)))
    sizes = np.array([n.size for n in nodules], dtype=np.float64)
    weights = sizes ** (-1.0 / 3.0)
    return int(rng.choice(len(nodules), p=weights / weights.sum()))


def draw_patch(
    case: Case,
    sampling: SamplingConfig,
    patch: tuple[int, int, int],
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """One (image, label) training patch of ``case`` around a :func:`pick_voxel` voxel.

    With ``anywhere`` the voxel's position inside the patch is uniform (at least
    ``margin_vox`` from the border), otherwise it is the patch centre. Parts of the patch
    beyond the case are 0 (air after windowing).
    """
    _, voxel = pick_voxel(case, sampling, rng)
    size = np.asarray(patch)
    if sampling.anywhere:
        lo = np.minimum(sampling.margin_vox, size // 2)
        at = np.array([int(rng.integers(lo[a], size[a] - lo[a])) for a in range(3)])
    else:
        at = size // 2
    start = voxel - at
    image = np.zeros(patch, dtype=np.float32)
    label = np.zeros(patch, dtype=np.uint8)
    src = tuple(
        slice(max(0, int(start[a])), min(case.image.shape[a], int(start[a] + size[a])))
        for a in range(3)
    )
    dst = tuple(slice(src[a].start - int(start[a]), src[a].stop - int(start[a])) for a in range(3))
    image[dst] = case.image[src]
    label[dst] = case.label[src]
    return image, label


class RandSliceThicknessd(RandomizableTransform, MapTransform):  # type: ignore[misc]
    """Thicker slices: the image averaged over ``k`` slices along z (the first spatial axis),
    ``k`` uniform in ``2 … max_k`` — a thick-slice series resampled to the 1 mm grid. The label
    stays the thin-slice truth: the network learns to outline what the thick slice blurred."""

    def __init__(self, keys: str, prob: float, max_k: int) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.max_k = max_k
        self._k = 1

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._k = int(self.R.randint(2, self.max_k + 1))

    def __call__(self, data: Any) -> Any:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = np.asarray(d[key], dtype=np.float32)
            d[key] = ndimage.uniform_filter1d(img, size=self._k, axis=1, mode="nearest")
        return d


class RandCorrelatedNoised(RandomizableTransform, MapTransform):  # type: ignore[misc]
    """Low-frequency noise: white noise smoothed by a Gaussian of ``sigma`` voxels (uniform in
    ``sigma_vox``), rescaled to unit std, times a std uniform in (0, ``std``]. Smooth and
    iterative reconstructions leave noise of this texture, with nodule-sized blobs."""

    def __init__(self, keys: str, prob: float, std: float, sigma_vox: tuple[float, float]) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.std = std
        self.sigma_vox = sigma_vox
        self._sigma = 1.0
        self._scale = 0.0
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._sigma = float(self.R.uniform(*self.sigma_vox))
        self._scale = float(self.R.uniform(0.0, self.std))
        self._seed = int(self.R.randint(2**31))

    def __call__(self, data: Any) -> Any:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        rng = np.random.default_rng(self._seed)
        for key in self.key_iterator(d):
            img = np.asarray(d[key], dtype=np.float32)
            noise = ndimage.gaussian_filter(
                rng.standard_normal(img.shape[1:]).astype(np.float32), self._sigma
            )
            noise *= self._scale / max(float(noise.std()), 1e-6)
            d[key] = img + noise[None]
        return d


def patch_transform(cfg: TrainConfig) -> Compose:
    keys = ["image", "label"]
    steps: list[Any] = [
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
        RandRotate90d(keys=keys, prob=0.5, spatial_axes=(1, 2)),
        RandScaleIntensityd(keys="image", factors=0.05, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.03, prob=0.5),
        RandGaussianNoised(keys="image", prob=0.3, std=0.015),
    ]
    aug = cfg.augment
    if aug is not None:
        # acquisition first (slice profile, kernel), then the noise the kernel leaves, then
        # contrast: the order a scanner applies them in
        steps += [
            RandSliceThicknessd("image", aug.slice_thickness, aug.max_slice_thickness_vox),
            RandGaussianSmoothd(
                keys="image",
                prob=aug.smooth,
                sigma_x=(0.4, 1.0),
                sigma_y=(0.4, 1.0),
                sigma_z=(0.0, 0.3),
            ),
            RandGaussianSharpend(
                keys="image",
                prob=aug.sharpen,
                sigma1_x=(0.4, 0.8),
                sigma1_y=(0.4, 0.8),
                sigma1_z=(0.0, 0.2),
                sigma2_x=0.4,
                sigma2_y=0.4,
                sigma2_z=0.1,
                alpha=(3.0, 8.0),
            ),
            RandGaussianNoised(keys="image", prob=aug.noise, std=aug.noise_std),
            RandAdjustContrastd(keys="image", prob=aug.contrast, gamma=aug.contrast_gamma),
        ]
        if aug.correlated_noise > 0:  # a step only when asked: older configs draw as before
            steps.append(
                RandCorrelatedNoised(
                    "image",
                    aug.correlated_noise,
                    aug.correlated_noise_std,
                    aug.correlated_noise_sigma_vox,
                )
            )
    return Compose(steps)


@dataclass(frozen=True)
class Device:
    torch_device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(requested: str) -> Device:
    """``auto`` takes CUDA when present; ``cuda`` without a GPU is an error, never a CPU run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but torch finds no CUDA device")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest kernels
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Device(dev, rank, world)


def _batch(
    cases: list[Case], cfg: TrainConfig, transform: Compose, step_seed: int
) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(step_seed)
    per_case = cfg.sampling.samples_per_case
    n_cases = max(1, cfg.optim.batch_size // per_case)
    chosen = rng.choice(len(cases), size=n_cases, replace=len(cases) < n_cases)
    transform.set_random_state(seed=step_seed % (2**32))
    images, labels = [], []
    for ci in chosen:
        case = cases[int(ci)]
        for _ in range(per_case):
            image, label = draw_patch(case, cfg.sampling, cfg.optim.patch_size, rng)
            patch = transform({"image": image[None], "label": label[None]})
            images.append(torch.as_tensor(np.asarray(patch["image"]), dtype=torch.float32))
            labels.append(torch.as_tensor(np.asarray(patch["label"]), dtype=torch.long))
    return {"image": torch.stack(images), "label": torch.stack(labels)}


def _step_seed(cfg: TrainConfig, iteration: int, rank: int) -> int:
    return cfg.optim.seed * 1_000_003 + iteration * 7919 + rank


class _Batches(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Iteration ``i``'s batch, drawn from its own seed: the same batches in the same order
    whether they are drawn in the training loop or by loader processes beside it."""

    def __init__(self, cases: list[Case], cfg: TrainConfig, rank: int) -> None:
        self.cases = cases
        self.cfg = cfg
        self.rank = rank
        self.transform = patch_transform(cfg)

    def __len__(self) -> int:
        return self.cfg.optim.iterations

    def __getitem__(self, iteration: int) -> dict[str, torch.Tensor]:
        return _batch(
            self.cases, self.cfg, self.transform, _step_seed(self.cfg, iteration, self.rank)
        )


def batches(
    cases: list[Case], cfg: TrainConfig, start: int, *, rank: int = 0, workers: int = 0
) -> torch.utils.data.DataLoader[dict[str, torch.Tensor]]:
    """The batches of iterations ``start … iterations − 1``; with ``workers`` > 0 drawn by that
    many forked processes ahead of the training loop (a GPU otherwise waits on the CPU's
    patch drawing and augmentation). The cases are shared with the processes, not copied:
    their sampling indices are computed once here, before the fork."""
    if workers > 0:
        for case in cases:
            _ = case.class_indices, case.nodule_indices
    return torch.utils.data.DataLoader(
        _Batches(cases, cfg, rank),
        batch_size=None,
        sampler=range(start, cfg.optim.iterations),
        num_workers=workers,
        prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context="fork" if workers > 0 else None,
    )


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    iterations: int
    final_loss: float
    patches_per_second: float
    seconds: float
    device: str


def train(
    cfg: TrainConfig,
    cases: list[Case],
    *,
    device: str = "auto",
    resume: bool = True,
    on_step: Callable[[int, float, float], None] | None = None,
    loader_workers: int = 0,
) -> TrainResult:
    """Train ``cfg.optim.iterations`` steps on ``cases``; checkpoints in ``cfg.output_dir``.

    ``on_step(iteration, loss, patches_per_second)`` is called after every step (the CLI's
    progress bar). With ``resume`` a checkpoint of the same config is continued; a checkpoint of
    a different config is refused rather than silently mixed. ``loader_workers`` processes draw
    the batches ahead of the loop (:func:`batches`; the weights do not depend on how many).
    """
    if not cases:
        raise TrainingError("no training cases")
    dev = select_device(device)
    if cfg.optim.num_threads:
        torch.set_num_threads(cfg.optim.num_threads)
    torch.manual_seed(cfg.optim.seed)
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    net = build_network(cfg.network)
    if cfg.optim.init_weights is not None:
        net.load_state_dict(_state_dict(cfg.optim.init_weights))
    net = net.to(dev.torch_device)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=cfg.optim.learning_rate, weight_decay=cfg.optim.weight_decay
    )
    total = cfg.optim.iterations
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.optim.learning_rate, total_steps=total, pct_start=0.05
    )
    use_amp = cfg.optim.amp and dev.torch_device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = 0
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev.torch_device, weights_only=False)
        if state["config_digest"] != cfg.digest():
            raise TrainingError(
                f"{ckpt_path} was written by a different training config; "
                "move it away or use another output_dir"
            )
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
    model: torch.nn.Module = net
    if dev.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.torch_device.index] if dev.torch_device.type == "cuda" else None
        )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    model.train()
    t0 = time.perf_counter()
    patches = 0
    loss_value = float("nan")
    rate = 0.0
    drawn = batches(cases, cfg, start, rank=dev.rank, workers=loader_workers)
    with (out / METRICS).open("a") as log:
        for it, batch in zip(range(start, total), drawn, strict=True):
            x = batch["image"].to(dev.torch_device, non_blocking=True)
            y = batch["label"].to(dev.torch_device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.torch_device.type, enabled=use_amp):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_value = float(loss.detach())
            patches += int(x.shape[0]) * dev.world_size
            rate = patches / max(time.perf_counter() - t0, 1e-9)
            if on_step:
                on_step(it + 1, loss_value, rate)
            if dev.is_main:
                log.write(
                    json.dumps(
                        {
                            "iteration": it + 1,
                            "loss": loss_value,
                            "lr": scheduler.get_last_lr()[0],
                            "patches_per_s": rate,
                        }
                    )
                    + "\n"
                )
                log.flush()
                if (it + 1) % cfg.optim.checkpoint_every == 0 or it + 1 == total:
                    _save_checkpoint(ckpt_path, net, optimizer, scheduler, scaler, it + 1, cfg)
    seconds = time.perf_counter() - t0
    if dev.is_main:
        save_weights(out / FINAL, net, cfg)
    if dev.world_size > 1:
        torch.distributed.destroy_process_group()
    return TrainResult(out, total, loss_value, rate, seconds, str(dev.torch_device))


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The network weights in ``path``: a package's ``weights.pt`` or a run's ``model.pt``."""
    if not path.exists():
        raise TrainingError(f"optim.init_weights: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise TrainingError(f"optim.init_weights: {path} holds no state dict")
    return state


def _save_checkpoint(
    path: Path,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    iteration: int,
    cfg: TrainConfig,
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "iteration": iteration,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config_digest": cfg.digest(),
        },
        tmp,
    )
    tmp.replace(path)  # a run killed while saving keeps the previous checkpoint


def save_weights(path: Path, net: torch.nn.Module, cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            # on the CPU: weights trained on a GPU load on any machine
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "config": cfg.model_dump(mode="json"),
            "digest": cfg.digest(),
        },
        tmp,
    )
    tmp.replace(path)


def network_from_package(package_dir: Path, network_config: dict[str, Any]) -> torch.nn.Module:
    """The torch twin of a package's ONNX model, from its ``weights.pt`` (benchmark, fine-tune)."""
    path = package_dir / "weights.pt"
    if not path.exists():
        raise TrainingError(f"{path}: this package ships no torch weights")
    net = build_network(NetworkConfig.model_validate(network_config))
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()
    return net


def load_weights(run_dir: Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained network of a run folder and the config that made it."""
    path = run_dir / FINAL
    if not path.exists():
        raise TrainingError(f"{path}: no trained model here (run `preread train` to the end first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig.model_validate(state["config"])
    net = build_network(cfg.network)
    net.load_state_dict(state["model"])
    net.eval()
    return net, cfg
