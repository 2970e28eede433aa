"""The model card (``model.yaml``): what a model is, what it reads and how to run it.

The training side writes the card (:meth:`ModelCard.to_yaml`), the serving side reads it
(:meth:`ModelCard.from_yaml`). Preprocessing numbers live here, once.

Reading is strict: unknown fields are refused, and values are type-checked as JSON types (a
quoted ``"3"`` is not an integer, ``true`` is not a number). Building a card in Python is lax about
containers (a list is accepted where a tuple is declared) so that the training code stays simple.

Coordinates: the card's ``input.spacing_mm`` is (z, y, x) = (k, j, i) of the canonical grid, whose
``array[k, j, i]`` has ``i`` increasing towards +x (patient Left), ``j`` towards +y (Posterior) and
``k`` towards +z (Superior), DICOM PS3.3 C.7.6.2.1.1.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from inference.semver import SEMVER_PATTERN
from preread.domain import CodedTerm, FindingConcept

SLUG_PATTERN = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Code = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeriesRules(_Strict):
    """Which series of a study the model may read (applied by ``dicom_gateway``).

    ``description_include`` / ``description_exclude`` are regular expressions matched
    (``re.search``, case-insensitive) against SeriesDescription; a series is eligible when it
    matches at least one include pattern (or the list is empty) and no exclude pattern.
    """

    modality: Literal["CT"] = "CT"
    orientation: Literal["axial"] = "axial"
    min_slices: PositiveInt
    max_slice_thickness_mm: PositiveFloat
    min_slice_thickness_mm: PositiveFloat | None = None
    description_include: list[str] = Field(default_factory=list)
    description_exclude: list[str] = Field(default_factory=list)

    @field_validator("description_include", "description_exclude")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {p!r}: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _thickness_range(self) -> Self:
        lo = self.min_slice_thickness_mm
        if lo is not None and lo > self.max_slice_thickness_mm:
            raise ValueError("min_slice_thickness_mm is larger than max_slice_thickness_mm")
        return self


class IntensityWindow(_Strict):
    """HU window mapped linearly onto [0, 1] and clipped."""

    window_min_hu: float
    window_max_hu: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.window_max_hu > self.window_min_hu:
            raise ValueError("window_max_hu must be larger than window_min_hu")
        return self


class InputSpec(_Strict):
    """The grid and intensities the network expects.

    ``spacing_mm`` is (z, y, x) in mm, i.e. (k, j, i) of the canonical ``orientation`` "LPS":
    ``array[k, j, i]`` with ``i`` → +x (Left), ``j`` → +y (Posterior), ``k`` → +z (Superior).
    """

    spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat]
    orientation: Literal["LPS"] = "LPS"
    intensity: IntensityWindow


class InferenceSpec(_Strict):
    """Sliding-window settings (MONAI ``sliding_window_inference`` semantics)."""

    roi_size_vox: tuple[PositiveInt, PositiveInt, PositiveInt]
    overlap: Annotated[float, Field(ge=0, lt=1)]
    batch_size: PositiveInt = 1
    mode: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: PositiveFloat = 0.125


class Label(_Strict):
    """One output class; ``value`` is its channel in the logits (0 is background).

    The SNOMED CT codes say what the class is in every report (:attr:`concept`): the finding
    type, its category (a SEG Segmented Property Category, CID 7150) and its site.
    """

    value: Annotated[int, Field(ge=1)]
    name: Code
    snomed_code: Code
    snomed_meaning: Code
    category_code: Code
    category_meaning: Code
    finding_site_code: Code
    finding_site_meaning: Code

    @property
    def concept(self) -> FindingConcept:
        """The coded concept the report encoders use for this class's findings."""
        return FindingConcept(
            finding=CodedTerm(self.snomed_code, "SCT", self.snomed_meaning),
            category=CodedTerm(self.category_code, "SCT", self.category_meaning),
            site=CodedTerm(self.finding_site_code, "SCT", self.finding_site_meaning),
        )


class Thresholds(_Strict):
    """Post-processing: voxels with ``probability`` ≥ this are foreground; smaller blobs dropped."""

    probability: Annotated[float, Field(gt=0, lt=1)]
    min_volume_mm3: Annotated[float, Field(ge=0)]


class OnnxSpec(_Strict):
    """The exported network; ``file`` is a name inside the package folder."""

    file: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.onnx$")] = "model.onnx"
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]
    opset: Annotated[int, Field(ge=7)]
    input_name: Code = "image"
    output_name: Code = "logits"
    max_abs_diff_vs_torch: Annotated[float, Field(ge=0)]


class ClassifierStage(_Strict):
    """A further ONNX graph of a staged package: scores the first stage's candidates.

    ``role`` "candidate-classifier": input ``[B, scales, patch_vox³]`` two-scale patches of
    the windowed model grid around each candidate (:func:`inference.candidates.
    candidate_patches`), output ``[B, 1]`` logits; candidates whose probability is below
    ``threshold`` (the operating point, chosen on a validation split) are dropped.
    ``test_views``: the views of each patch whose logits are averaged
    (:data:`inference.postprocessors.TEST_VIEWS`): 4 (as it is and flipped along each axis) or
    16 (every in-plane rotation by 90° and its mirror image, each as it is and flipped in z: the
    symmetries the classifier is trained with). More views rank candidates more steadily, at
    four times the classifier's cost.
    """

    name: Annotated[str, Field(pattern=SLUG_PATTERN)]
    role: Literal["candidate-classifier"] = "candidate-classifier"
    onnx: OnnxSpec
    patch_vox: PositiveInt = 32
    scales: Literal[2] = 2
    threshold: Annotated[float, Field(gt=0, lt=1)]
    test_views: Literal[4, 16] = 4


class TypeRuleSpec(_Strict):
    """Attenuation thresholds for solid / part-solid / ground-glass (:mod:`inference.measure`)."""

    solid_hu: float
    solid_fraction: Annotated[float, Field(gt=0, le=1)]
    ggo_fraction: Annotated[float, Field(ge=0, lt=1)]
    #: the shares are taken over the nodule's interior, this deep inside its mask (mm; 0: the
    #: whole mask, as every package before 2.16.0)
    rim_mm: Annotated[float, Field(ge=0, le=5)] = 0.0


class HarmonizeSpec(_Strict):
    """Noise harmonisation (:mod:`inference.harmonize`): a scan whose measured noise on the
    model grid is above ``max_noise_hu`` is smoothed down to it before the stages run."""

    max_noise_hu: PositiveFloat


class RefineSpec(_Strict):
    """The edge refinement around each finding's detector mask (:mod:`inference.refine`).

    ``reach_mm``: how far beyond the detector's mask the edge may lie when every one-voxel shell
    up to there is mostly nodule: a detector that drew only a fragment of the nodule (0: no
    farther than the growth limit, 2 mm or 15 % of the mask's diameter)."""

    reach_mm: Annotated[float, Field(ge=0, le=10)]


class PipelineSpec(_Strict):
    """How the stages are put together and which post-processing turns them into findings.

    ``postprocess`` names a function of :mod:`inference.postprocessors` (the registry): adding a
    model of another kind is a package with a card plus at most one new function there.
    ``lung_mask``: windows without lung are not run and candidates outside the (dilated) lungs
    are dropped. ``candidate_probability``: the detector's voxel threshold for candidates (lower
    than the segmentation threshold ``thresholds.probability``: the classifier decides).
    ``harmonize``: scans noisier than the model was trained on are smoothed first.
    ``refine``: how far each finding's edge may be looked for (None: the growth limit only).
    ``detector_spacing_mm``: the first stage (the sliding-window network) reads a coarser
    isotropic grid of this spacing, resampled from the model grid (``input.spacing_mm``), and
    its probability is brought back to the model grid, where everything after it (candidates,
    classifiers, edges, measurements) works; None: the network reads the model grid itself.
    """

    postprocess: Annotated[str, Field(pattern=SLUG_PATTERN)] = "components"
    lung_mask: bool = False
    candidate_probability: Annotated[float, Field(gt=0, lt=1)] | None = None
    type_rule: TypeRuleSpec | None = None
    harmonize: HarmonizeSpec | None = None
    refine: RefineSpec | None = None
    detector_spacing_mm: Annotated[float, Field(gt=0, le=10)] | None = None


class TrainingInfo(_Strict):
    """Provenance of the weights; all optional, anything else goes in ``extra``."""

    framework: str | None = None
    network: str | None = None
    generator_version: str | None = None
    train_seeds: list[int] | None = None
    validation_seeds: list[int] | None = None
    test_seeds: list[int] | None = None
    annotation_source: str | None = None
    data_authorization: str | None = None
    grants: list[str] = Field(
        default_factory=list,
        description="ids of the model-training grants its data came from (none: synthetic)",
    )
    epochs: PositiveInt | None = None
    iterations: PositiveInt | None = None
    patch_size: tuple[PositiveInt, PositiveInt, PositiveInt] | None = None
    batch_size: PositiveInt | None = None
    learning_rate: PositiveFloat | None = None
    loss: str | None = None
    optimizer: str | None = None
    seed: int | None = None
    extra: dict[str, JsonValue] = Field(default_factory=dict)


class ModelCard(_Strict):
    """``model.yaml``: identity, intended use, input contract, labels, thresholds, provenance."""

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(pattern=SLUG_PATTERN)]
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    name: Code
    description: str
    task: Literal["segmentation"] = "segmentation"
    intended_use: Code
    modality: Literal["CT"] = "CT"
    series_rules: SeriesRules
    input: InputSpec
    inference: InferenceSpec
    labels: Annotated[list[Label], Field(min_length=1)]
    thresholds: Thresholds
    onnx: OnnxSpec
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    stages: list[ClassifierStage] = Field(
        default_factory=list,
        description="further graphs after the sliding-window network named by ``onnx``",
    )
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    metrics: dict[str, float] = Field(default_factory=dict)
    created: date
    authors: Annotated[list[Code], Field(min_length=1)]

    @field_validator("labels")
    @classmethod
    def _unique_values(cls, labels: list[Label]) -> list[Label]:
        values = [label.value for label in labels]
        if len(set(values)) != len(values):
            raise ValueError(f"label values must be unique, got {values}")
        return labels

    @model_validator(mode="after")
    def _stages_distinct(self) -> Self:
        files = [self.onnx.file, *(s.onnx.file for s in self.stages)]
        if len(set(files)) != len(files):
            raise ValueError(f"every stage needs its own ONNX file, got {files}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _detector_grid_coarser(self) -> Self:
        coarse = self.pipeline.detector_spacing_mm
        if coarse is not None and coarse < max(self.input.spacing_mm):
            raise ValueError(
                f"pipeline.detector_spacing_mm ({coarse}) must be at least the model grid's "
                f"spacing {tuple(self.input.spacing_mm)}: the detector's grid is the coarser one"
            )
        return self

    def stage(self, name: str) -> ClassifierStage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def operating_point(self) -> float:
        """The score a finding must reach to be reported: a staged card's classifier threshold;
        0 for a card whose findings are all reported (their score is the segmentation's)."""
        return self.stages[0].threshold if self.stages else 0.0

    @property
    def num_channels(self) -> int:
        """Channels in the logits: background plus the largest label value."""
        return 1 + max(label.value for label in self.labels)

    @classmethod
    def from_yaml(cls, path: Path | str) -> ModelCard:
        """Read and validate a card.

        Raises:
            OSError: the file cannot be read.
            yaml.YAMLError: it is not YAML.
            pydantic.ValidationError: it does not follow the schema (errors name the fields).
        """
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_yaml_text(text)

    @classmethod
    def from_yaml_text(cls, text: str) -> ModelCard:
        """Validate a card given as YAML text (see :meth:`from_yaml`)."""
        data = yaml.safe_load(text)
        # Validate as JSON: strict JSON types, ISO dates as strings, lists for tuples.
        return cls.model_validate_json(json.dumps(data, default=_json_default), strict=True)

    def to_yaml_text(self) -> str:
        """The card as YAML, fields in schema order."""
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True),
            sort_keys=False,
            allow_unicode=True,
            width=100,
        )

    def to_yaml(self, path: Path | str) -> None:
        """Write the card to ``path`` (UTF-8)."""
        Path(path).write_text(self.to_yaml_text(), encoding="utf-8")


def _json_default(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a JSON/YAML scalar")
