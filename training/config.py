"""The training configuration: one YAML file, validated, that fully determines a model.

Everything that changes the weights is in here (data seeds, network shape, schedule, the seed of
the sampler), so ``preread train CONFIG`` run twice gives the same model on the same machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhantomSource(_Strict):
    """Synthetic chest CT made by :mod:`training.phantoms`; phantom ``i`` uses ``seed + i``.

    ``profile``: the generator's scanner and patient ranges (:mod:`training.profiles`):
    ``train``, or ``wide`` (up to, never into, the robustness ranges). The ``robustness``
    profile is refused: no training ever sees it."""

    seed: int = Field(ge=0)
    count: int = Field(ge=1)
    matrix: int = Field(default=512, ge=32, le=1024)
    max_slices: int | None = Field(default=None, ge=8)
    profile: Literal["train", "wide"] = "train"

    @field_validator("profile", mode="before")
    @classmethod
    def _never_robustness(cls, value: object) -> object:
        if value == "robustness":
            raise ValueError(
                "the robustness profile is for evaluation only: no training or threshold "
                "choice may see it (use train or wide)"
            )
        return value


class DataConfig(_Strict):
    """Where the training cases come from: phantoms, a folder of (CT series + SEG) pairs,
    the (CT series + SEG) pairs held by an Orthanc (``PREREAD_ORTHANC_URL`` and credentials),
    or dataset versions built from radiologists' reviews (``preread datasets build``), with
    phantoms mixed in when ``phantoms`` is given too."""

    source: Literal["phantoms", "folder", "orthanc", "datasets"]
    phantoms: PhantomSource | None = None
    """With ``datasets``: phantoms mixed in (optional)."""
    folder: Path | None = None
    datasets: list[str] | None = Field(
        default=None,
        description="dataset versions built from reviews (NAME@VERSION, PREREAD_DATASETS_DIR)",
    )
    label_segments: list[str] | None = Field(
        default=None,
        description="segment labels counted as nodule (None: every segment of the SEG)",
    )
    validation: PhantomSource | None = None

    @model_validator(mode="after")
    def _source_given(self) -> DataConfig:
        if self.source == "phantoms" and self.phantoms is None:
            raise ValueError("data.source is 'phantoms' but data.phantoms is not set")
        if self.source == "folder" and self.folder is None:
            raise ValueError("data.source is 'folder' but data.folder is not set")
        if self.source == "datasets":
            if not self.datasets:
                raise ValueError("data.source is 'datasets' but data.datasets lists none")
            for ref in self.datasets:
                name, _, version = ref.partition("@")
                if not name or not version.isdigit():
                    raise ValueError(
                        f"data.datasets: {ref!r} is not NAME@VERSION (a version is pinned, so "
                        "a run is repeatable)"
                    )
        return self


class InputConfig(_Strict):
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window_min_hu: float = -1000.0
    window_max_hu: float = 400.0


class NetworkConfig(_Strict):
    """A MONAI UNet (monai.networks.nets.UNet); see docs/model-lung-nodule.md for the choice."""

    name: Literal["unet"] = "unet"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = Field(default=1, ge=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Literal["instance", "batch"] = Field(
        default="instance",
        description="instance: MONAI's default; batch: running statistics at inference, so the "
        "sliding window's ROI may differ from the training patch",
    )

    @model_validator(mode="after")
    def _shape(self) -> NetworkConfig:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError("network.strides needs one entry fewer than network.channels")
        return self

    @property
    def divisor(self) -> int:
        d = 1
        for s in self.strides:
            d *= s
        return d


class SamplingConfig(_Strict):
    """Where training patches are drawn.

    ``ratios``: the share of patches drawn on each sampling class of :mod:`training.data`:
    three entries (outside the lungs, lung background, nodule) or five (… , bone, vessel: the
    explicit hard negatives). A class a case lacks is skipped and the others renormalised.

    ``per_nodule``: a nodule patch first draws one of the case's nodules uniformly, then a voxel
    of it (otherwise voxels are uniform, and nodules > 15 mm take ~90 % of the nodule patches).
    ``anywhere``: the drawn voxel lands anywhere in the patch at least ``margin_vox`` from its
    border, not at its centre — serving windows see nodules at every position, so a network
    trained only on centred nodules misses off-centre ones.
    """

    ratios: tuple[float, ...] = (0.15, 0.45, 0.4)
    samples_per_case: int = Field(default=4, ge=1)
    per_nodule: bool = False
    nodule_weighting: Literal["uniform", "size"] = Field(
        default="uniform",
        description="with per_nodule, how a nodule is drawn: uniform, or size — weight "
        "proportional to volume^(-1/3) (about 1/diameter), so 6-8 mm nodules, the band the "
        "detector misses most, get ~2-3x the patches of a 20 mm one",
    )
    anywhere: bool = False
    margin_vox: int = Field(default=8, ge=0)

    @model_validator(mode="after")
    def _ratio_count(self) -> SamplingConfig:
        if len(self.ratios) not in (3, 5) or any(r < 0 for r in self.ratios):
            raise ValueError("sampling.ratios needs 3 or 5 non-negative entries")
        if sum(self.ratios) <= 0:
            raise ValueError("sampling.ratios must not all be 0")
        return self


class AugmentConfig(_Strict):
    """Acquisition-like augmentations of the training patches (on top of the flips, rotations,
    intensity scale/shift and light noise every run has), for a network that generalises past
    the generator's scanner ranges. Each is applied with its own probability (0: off).

    * ``slice_thickness``: thicker slices — the patch is averaged over ``k`` slices along z
      (``k`` uniform in 2 … ``max_slice_thickness_vox``), what resampling a thick-slice series
      to the 1 mm grid gives;
    * ``noise``: Gaussian noise with a std drawn up to ``noise_std`` of the [0, 1] window
      (0.05 ≈ 70 HU for the 1,400 HU lung window);
    * ``smooth`` / ``sharpen``: reconstruction-kernel-like in-plane blur or edge enhancement;
    * ``contrast``: a gamma in ``contrast_gamma``;
    * ``correlated_noise``: low-frequency ("blotchy") noise, white noise smoothed with a
      Gaussian of ``correlated_noise_sigma_vox`` voxels and scaled to a std up to
      ``correlated_noise_std``: the noise texture of smooth and iterative reconstructions, whose
      blobs are nodule-sized.
    """

    slice_thickness: float = Field(default=0.0, ge=0, le=1)
    max_slice_thickness_vox: int = Field(default=5, ge=2, le=9)
    noise: float = Field(default=0.0, ge=0, le=1)
    noise_std: float = Field(default=0.05, gt=0, le=0.2)
    smooth: float = Field(default=0.0, ge=0, le=1)
    sharpen: float = Field(default=0.0, ge=0, le=1)
    contrast: float = Field(default=0.0, ge=0, le=1)
    contrast_gamma: tuple[float, float] = (0.8, 1.25)
    correlated_noise: float = Field(default=0.0, ge=0, le=1)
    correlated_noise_std: float = Field(default=0.04, gt=0, le=0.2)
    correlated_noise_sigma_vox: tuple[float, float] = (1.0, 3.0)


class OptimConfig(_Strict):
    iterations: int = Field(ge=1)
    batch_size: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    patch_size: tuple[int, int, int] = (64, 64, 64)
    checkpoint_every: int = Field(default=100, ge=1)
    seed: int = 0
    num_threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = all cores")
    amp: bool = Field(default=True, description="mixed precision on CUDA (ignored on the CPU)")
    init_weights: Path | None = Field(
        default=None,
        description="start from these weights (a package's weights.pt or a run's model.pt): "
        "fine-tuning; relative to the config file",
    )


class ModelInfo(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    name: str
    description: str = ""


class PostConfig(_Strict):
    probability: float = Field(default=0.5, gt=0, lt=1)
    min_volume_mm3: float = Field(default=10.0, ge=0)


class TrainConfig(_Strict):
    model: ModelInfo
    data: DataConfig
    input: InputConfig = InputConfig()
    network: NetworkConfig = NetworkConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig | None = None
    optim: OptimConfig
    postprocess: PostConfig = PostConfig()
    output_dir: Path

    @model_validator(mode="after")
    def _patch_divisible(self) -> TrainConfig:
        d = self.network.divisor
        if any(p % d for p in self.optim.patch_size):
            raise ValueError(f"optim.patch_size {self.optim.patch_size} must be divisible by {d}")
        return self

    def digest(self) -> str:
        """Hash of everything that determines the weights (checkpoints refuse another config)."""
        payload = self.model_dump(mode="json", exclude={"output_dir"})
        # settings added later, at their defaults, leave an older config's digest as it was
        # (its checkpoints and the published cards' training_config_digest stay valid)
        if payload["augment"] is None:
            del payload["augment"]
        elif payload["augment"]["correlated_noise"] == 0.0:
            for key in ("correlated_noise", "correlated_noise_std", "correlated_noise_sigma_vox"):
                del payload["augment"][key]
        if payload["data"].get("datasets") is None:
            del payload["data"]["datasets"]
        for source in ("phantoms", "validation"):
            part = payload["data"].get(source)
            if isinstance(part, dict) and part.get("profile") == "train":
                del part["profile"]
        if payload["sampling"]["nodule_weighting"] == "uniform":
            del payload["sampling"]["nodule_weighting"]
        init = self.optim.init_weights
        if init is not None:  # the weights' content, not where this checkout keeps them
            payload["optim"]["init_weights"] = (
                hashlib.sha256(init.read_bytes()).hexdigest() if init.exists() else str(init)
            )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: Path) -> TrainConfig:
    """Read and validate a training config; relative paths resolve against the file's folder."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read training config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config is a YAML mapping")
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: invalid training config: {problems}") from exc
    base = path.resolve().parent
    updates: dict[str, object] = {}
    if not cfg.output_dir.is_absolute():
        updates["output_dir"] = (base / cfg.output_dir).resolve()
    init = cfg.optim.init_weights
    if init is not None and not init.is_absolute():
        updates["optim"] = cfg.optim.model_copy(update={"init_weights": (base / init).resolve()})
    if cfg.data.folder is not None and not cfg.data.folder.is_absolute():
        updates["data"] = cfg.data.model_copy(update={"folder": (base / cfg.data.folder).resolve()})
    return cfg.model_copy(update=updates) if updates else cfg
