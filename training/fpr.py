"""False-positive reduction: a small 3-D CNN that scores the detector's candidates.

Why a second network rather than rules on the components: 1.0.0's false positives were vessel
crossings and branch points, bronchial walls, chest-wall edges, ribs and lung texture, most at
probability ≈ 1 — shape and HU overlap with juxtavascular and juxtapleural nodules, and a lung
mask alone removes a fifth of them. Candidate classifiers on multi-scale patches are what the
systems leading LUNA16 use (e.g. Setio et al. 2016, Dou et al. 2017); a patch at 1 mm sees the
candidate, one at 2 mm its surroundings.

* Data (:func:`mine`): the detector's own candidates on training scans, labelled by the LUNA16
  rule (the candidate centre within the nodule's radius, 2 mm floor) — the hard negatives are
  exactly its false positives — plus each true nodule's centre, jittered, as extra positives
  (so the classifier does not depend on where the detector puts a centre), also from phantoms
  the detector never reads (:func:`truth_samples`: more nodules for the cost of generating
  them). Calcified nodules are negatives, jittered copies included: they are not to be
  reported.
* Network (:class:`CandidateNet`): 2 × 32³ in (:func:`inference.candidates.candidate_patches`),
  six convolutions over four scales (8-16-32-64 channels, batch norm), global average and max
  pooling, one logit.
* Training (:func:`train_fpr`): balanced batches (half positives), flips, in-plane 90°
  rotations, shifts of ±3 voxels, intensity scale/shift; AdamW + one-cycle; resumable from its
  checkpoint like the detector.
* Ensembles (:class:`CandidateEnsemble`): classifiers trained on different candidates (e.g.
  one mined on the training scanners, one on wider acquisitions) averaged in logit space, as
  one graph: the serving side runs one stage whatever it holds. A package's ``fpr-weights.pt``
  says which it is (:func:`classifier_from_state`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage
from torch import nn

from inference.candidates import two_scale_patch
from preread.domain import Geometry, TruthNodule
from training.errors import TrainingError

PATCH = 32  # what the network reads
STORED = 40  # what mining keeps: room for shifts of ±4 voxels
CHECKPOINT = "fpr-checkpoint.pt"
FINAL = "fpr.pt"
SAMPLES = "candidates.npz"


class CandidateNet(nn.Module):
    """[B, 2, 32, 32, 32] two-scale patches → [B, 1] nodule logits.

    Built for the CPU: one convolution at full resolution, then two blocks of two at 16³ and
    8³, one at 4³ (≈ 80 M multiply-adds per candidate with ``width`` 8, a sixth of two
    convolutions per level), global average and max pooling, a small head.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv3d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
            ]

        w = width
        self.features = nn.Sequential(
            *conv(2, w),
            nn.MaxPool3d(2),
            *conv(w, 2 * w),
            *conv(2 * w, 2 * w),
            nn.MaxPool3d(2),
            *conv(2 * w, 4 * w),
            *conv(4 * w, 4 * w),
            nn.MaxPool3d(2),
            *conv(4 * w, 8 * w),
        )
        self.head = nn.Sequential(
            nn.Linear(16 * w, 8 * w), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(8 * w, 1)
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        f = self.features(patches)
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)
        out: torch.Tensor = self.head(pooled)
        return out


class CandidateEnsemble(nn.Module):
    """Several :class:`CandidateNet` of one width scoring the same patches: the logit is the
    mean of theirs (what a card's stage runs as one graph; fine-tuned, they learn together)."""

    def __init__(self, width: int, members: int) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 classifiers, got {members}")
        self.members = nn.ModuleList(CandidateNet(width) for _ in range(members))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(patches) for m in self.members]).mean(dim=0)


Classifier = CandidateNet | CandidateEnsemble
_MEMBER = "members."


def classifier_shape(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(width, members)`` of a stored classifier state dict (members 1: one
    :class:`CandidateNet`); ValueError when it is neither kind."""
    members = {k.split(".", 2)[1] for k in state if k.startswith(_MEMBER)}
    key = f"{_MEMBER}0.features.0.weight" if members else "features.0.weight"
    if key not in state:
        raise ValueError(f"not a candidate classifier's state (no {key!r})")
    return int(state[key].shape[0]), max(1, len(members))


def classifier_from_state(state: dict[str, torch.Tensor], width: int | None = None) -> Classifier:
    """The network a stored state dict is of, loaded (``width``: the width it must have).
    Raises ValueError (with what was wrong) for a state of another kind or width."""
    w, members = classifier_shape(state)
    if width is not None and w != width:
        raise ValueError(f"a width-{w} classifier, not width {width}")
    net: Classifier = CandidateNet(w) if members == 1 else CandidateEnsemble(w, members)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    return net


def ensemble(nets: Iterable[Classifier]) -> CandidateEnsemble:
    """One ensemble of ``nets`` (an ensemble among them gives its members), weights copied."""
    flat = [m for n in nets for m in (n.members if isinstance(n, CandidateEnsemble) else [n])]
    widths = {classifier_shape(m.state_dict())[0] for m in flat}
    if len(widths) != 1:
        raise ValueError(f"an ensemble's classifiers must share one width, got {sorted(widths)}")
    out = CandidateEnsemble(widths.pop(), len(flat))
    for target, source in zip(out.members, flat, strict=True):
        target.load_state_dict(source.state_dict())
    return out.eval()


@dataclass(frozen=True)
class CandidateSample:
    """One mined patch: ``[2, STORED³]`` windowed values, float16, and what it is."""

    patch: npt.NDArray[np.float16]
    positive: bool
    case_id: str
    source: str  # "detector" or "truth"
    peak_probability: float


def hit_nodule(centre_lps: npt.ArrayLike, nodules: Iterable[TruthNodule]) -> TruthNodule | None:
    """The nearest true nodule whose radius (2 mm floor) holds ``centre_lps`` (LUNA16 rule)."""
    from training.evaluate import hits

    c = np.asarray(centre_lps, dtype=np.float64)
    centre = (float(c[0]), float(c[1]), float(c[2]))
    hit = [n for n in nodules if hits(centre, n)]
    return min(
        hit, key=lambda n: np.linalg.norm(np.subtract(centre, n.center_lps_mm)), default=None
    )


def mine_scan(
    case_id: str,
    array: npt.NDArray[np.float32],
    geometry: Geometry,
    candidates: Iterable[tuple[tuple[float, float, float], float]],
    nodules: Iterable[TruthNodule],
    rng: np.random.Generator,
    *,
    truth_copies: int = 3,
) -> list[CandidateSample]:
    """Label one scan's candidates (``(centre_kji, peak probability)`` on ``geometry``)."""
    truth = list(nodules)
    samples: list[CandidateSample] = []
    for centre, peak in candidates:
        hit = hit_nodule(geometry.index_to_lps(centre), truth)
        positive = hit is not None and not hit.calcified
        samples.append(
            CandidateSample(
                two_scale_patch(array, centre, STORED).astype(np.float16),
                positive,
                case_id,
                "detector",
                peak,
            )
        )
    samples.extend(truth_samples(case_id, array, geometry, truth, rng, copies=truth_copies))
    return samples


def truth_samples(
    case_id: str,
    array: npt.NDArray[np.float32],
    geometry: Geometry,
    nodules: Iterable[TruthNodule],
    rng: np.random.Generator,
    *,
    copies: int,
) -> list[CandidateSample]:
    """``copies`` patches around each true nodule's centre, jittered within 0.4 of its radius:
    positives, except calcified nodules, which are negatives (never to be reported; 10 % of
    the first release's false positives sat on them). Needs no detector, so any phantom can
    add nodules the classifier has not seen."""
    samples: list[CandidateSample] = []
    for n in nodules:
        at = geometry.lps_to_index(n.center_lps_mm)
        radius_vox = max(n.long_axis_mm / 2.0, 2.0) / np.asarray(geometry.spacing)
        for _ in range(copies):
            jitter = rng.uniform(-0.4, 0.4, 3) * radius_vox
            samples.append(
                CandidateSample(
                    two_scale_patch(array, at + jitter, STORED).astype(np.float16),
                    not n.calcified,
                    case_id,
                    "calcified" if n.calcified else "truth",
                    1.0,
                )
            )
    return samples


def save_samples(samples: list[CandidateSample], path: Path) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        patches=np.stack([s.patch for s in samples]),
        positive=np.array([s.positive for s in samples]),
        case_id=np.array([s.case_id for s in samples]),
        source=np.array([s.source for s in samples]),
        peak=np.array([s.peak_probability for s in samples], dtype=np.float32),
    )
    tmp.replace(path)


def load_samples(path: Path) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.bool_]]:
    with np.load(path) as z:
        return z["patches"], z["positive"]


@dataclass(frozen=True)
class FprConfig:
    iterations: int = 1500
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 8
    seed: int = 0
    checkpoint_every: int = 100
    #: acquisition-like augmentation (thicker slices, noise, kernel blur), as the detector's
    #: ``augment`` section does it (:class:`training.config.AugmentConfig`)
    acquisition: bool = False
    #: start from these weights (a package's ``fpr-weights.pt``): fine-tuning a classifier
    init_weights: str | None = None

    def digest(self) -> str:
        doc = dict(self.__dict__)
        for key in ("acquisition", "init_weights"):  # added later: older configs keep theirs
            if not doc[key]:
                del doc[key]
        return json.dumps(doc, sort_keys=True)


def _acquisition(p: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """One two-scale patch as another scanner might have made it: slices ``k`` mm thick (the
    1 mm channel averaged over ``k`` slices, the 2 mm one over ``k/2``), a blurring kernel,
    noise up to 0.05 of the window (~70 HU; half on the coarse channel, which averages 8
    voxels). Each with its own probability, as the detector's augmentation."""
    if rng.uniform() < 0.3:
        k = int(rng.integers(2, 6))
        p[0] = ndimage.uniform_filter1d(p[0], size=k, axis=0, mode="nearest")
        if k >= 3:
            p[1] = ndimage.uniform_filter1d(p[1], size=(k + 1) // 2, axis=0, mode="nearest")
    if rng.uniform() < 0.15:
        sigma = float(rng.uniform(0.4, 1.0))
        p[0] = ndimage.gaussian_filter(p[0], sigma=(0.0, sigma, sigma))
    if rng.uniform() < 0.4:
        std = float(rng.uniform(0.0, 0.05))
        p[0] += rng.normal(0.0, std, p[0].shape).astype(np.float32)
        p[1] += rng.normal(0.0, std / 2, p[1].shape).astype(np.float32)
    return p


def _augment(
    batch: npt.NDArray[np.float16], rng: np.random.Generator, *, acquisition: bool = False
) -> npt.NDArray[np.float32]:
    """Random shift (crop of the stored patch), flips, in-plane rot90 and intensity jitter;
    with ``acquisition`` also :func:`_acquisition`."""
    n = len(batch)
    out = np.empty((n, 2, PATCH, PATCH, PATCH), dtype=np.float32)
    margin = (STORED - PATCH) // 2
    for b in range(n):
        o = rng.integers(-3, 4, 3)
        oc = o // 2
        s0 = margin + o
        s1 = margin + oc
        fine = batch[b, 0, s0[0] : s0[0] + PATCH, s0[1] : s0[1] + PATCH, s0[2] : s0[2] + PATCH]
        coarse = batch[b, 1, s1[0] : s1[0] + PATCH, s1[1] : s1[1] + PATCH, s1[2] : s1[2] + PATCH]
        p = np.stack([fine, coarse]).astype(np.float32)
        if acquisition:
            p = _acquisition(p, rng)
        for axis in (1, 2, 3):
            if rng.uniform() < 0.5:
                p = np.flip(p, axis=axis)
        p = np.rot90(p, k=int(rng.integers(4)), axes=(2, 3))
        p = p * np.float32(rng.uniform(0.95, 1.05)) + np.float32(rng.uniform(-0.03, 0.03))
        out[b] = p
    return out


def center_crop(patches: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The network's ``PATCH``³ centre of stored ``STORED``³ patches."""
    m = (patches.shape[-1] - PATCH) // 2
    return np.ascontiguousarray(
        patches[:, :, m : m + PATCH, m : m + PATCH, m : m + PATCH], dtype=np.float32
    )


@dataclass(frozen=True)
class FprResult:
    iterations: int
    final_loss: float
    seconds: float
    positives: int
    negatives: int


def train_fpr(
    patches: npt.NDArray[np.float16],
    positive: npt.NDArray[np.bool_],
    cfg: FprConfig,
    out_dir: Path,
    *,
    device: torch.device | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FprResult:
    """Train :class:`CandidateNet` on mined samples; checkpoints in ``out_dir``."""
    pos = np.flatnonzero(positive)
    neg = np.flatnonzero(~positive)
    if pos.size == 0 or neg.size == 0:
        raise TrainingError(
            f"false-positive reduction needs positive and negative candidates, got "
            f"{pos.size} and {neg.size}"
        )
    dev = device or torch.device("cpu")
    torch.manual_seed(cfg.seed)
    net: Classifier = CandidateNet(cfg.width)
    if cfg.init_weights is not None:  # one classifier or an ensemble, fine-tuned as it is
        try:
            net = classifier_from_state(
                torch.load(cfg.init_weights, map_location="cpu", weights_only=True), cfg.width
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise TrainingError(
                f"classifier init weights {cfg.init_weights}: not a width-{cfg.width} "
                f"classifier: {exc}"
            ) from exc
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.learning_rate, total_steps=cfg.iterations, pct_start=0.1
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if state["config"] != cfg.digest():
            raise TrainingError(f"{ckpt} was written by another FPR config; move it away")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    if cfg.init_weights is not None:
        # fine-tuning on a few cases: the batch-norm statistics stay those of the large set
        # the weights were trained on (a few dozen patches would drag them and shift every
        # score, the kept operating point with them); only the weights adapt
        for module in net.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.eval()
    t0 = time.perf_counter()
    loss_value = float("nan")
    half = cfg.batch_size // 2
    for it in range(start, cfg.iterations):
        rng = np.random.default_rng([cfg.seed, it])
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, cfg.batch_size - half)])
        x = torch.from_numpy(_augment(patches[idx], rng, acquisition=cfg.acquisition)).to(dev)
        y = torch.from_numpy(positive[idx].astype(np.float32)[:, None]).to(dev)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if on_step:
            on_step(it + 1, loss_value)
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "iteration": it + 1,
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "config": cfg.digest(),
                },
                tmp,
            )
            tmp.replace(ckpt)
    net.eval()
    torch.save({"model": net.state_dict(), "width": cfg.width}, out_dir / FINAL)
    return FprResult(
        cfg.iterations, loss_value, time.perf_counter() - t0, int(pos.size), int(neg.size)
    )


def scores(
    net: Classifier, patches: npt.NDArray[np.floating], batch: int = 64
) -> npt.NDArray[np.float64]:
    """``net``'s probabilities for stored patches (their centre crops; no augmentation)."""
    net = net.eval().cpu()
    out = []
    with torch.no_grad():
        for i in range(0, len(patches), batch):
            x = torch.from_numpy(center_crop(patches[i : i + batch]))
            out.append(torch.sigmoid(net(x)).numpy().ravel())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def matched_threshold(
    base: npt.NDArray[np.float64], tuned: npt.NDArray[np.float64], base_threshold: float
) -> tuple[float, float]:
    """The threshold of a fine-tuned classifier that matches ``base_threshold`` of the one it
    came from on true nodules (``base`` and ``tuned``: both classifiers' probabilities on the
    same true-nodule patches). Fine-tuning on a few cases moves every score (the first steps
    mostly shift the calibration), so the old threshold would change the sensitivity: the
    threshold moves by the median change of the nodules' logits (stable on a few dozen
    nodules, where matching a quantile of them is not). Returns (threshold, median shift)."""
    if base.size == 0 or base.size != tuned.size:
        raise TrainingError("a matched operating point needs the same true-nodule patches scored")

    def logit(p: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
        q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
        return np.asarray(np.log(q / (1 - q)))

    shift = float(np.median(logit(tuned) - logit(base)))
    threshold = float(1.0 / (1.0 + np.exp(-(logit(base_threshold) + shift))))
    return threshold, shift


def load_fpr(out_dir: Path) -> Classifier:
    state = torch.load(out_dir / FINAL, map_location="cpu", weights_only=False)
    return classifier_from_state(state["model"], int(state["width"])).eval()


def export_fpr(net: Classifier, path: Path) -> float:
    """Write ``net`` as one ONNX file (dynamic batch); returns max |torch − ONNX Runtime|."""
    import onnxruntime as ort

    net = net.eval().cpu()
    example = torch.zeros(2, 2, PATCH, PATCH, PATCH)
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["patches"],
        output_names=["logits"],
        dynamic_shapes={"patches": {0: torch.export.Dim("batch", min=1, max=4096)}},
        opset_version=18,
        verbose=False,
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 2, PATCH, PATCH, PATCH)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"patches": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())
