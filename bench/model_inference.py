"""Benchmark the shipped model: ONNX Runtime vs torch eager, side by side, in one run.

For one 512×512×300 phantom (resampled to the model's grid by the serving preprocessing):

* sliding-window inference time with ONNX Runtime (PreRead's numpy sliding window, as served)
  and with torch eager (MONAI's ``sliding_window_inference``): the same weights (the package's
  ``weights.pt`` is the state dict that was exported to ``model.onnx``), the same windows (roi,
  overlap, Gaussian weighting), each engine in its own fresh process so that its peak memory
  is its own; their ratio; and the agreement of the two label maps;
* training throughput (patches/s) with the shipped config's patch and batch size.

Run: ``./run bench`` (or ``.venv/bin/python bench/model_inference.py --help``). Prints a
table; asserts nothing: the figures go into the closing note.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare(seed: int, slices: int, work: Path, model: Path) -> dict[str, Any]:
    """The phantom on the model grid, saved once so that both engines read identical input."""
    from inference.package import ModelPackage
    from inference.preprocess import to_model_grid
    from training.phantoms import generate_phantom

    ph = generate_phantom(seed, matrix=512, max_slices=slices)
    package = ModelPackage.load(model)
    mi = to_model_grid(ph.volume, package.card.input)
    np.save(work / "image.npy", mi.array)
    return {"native_shape": list(ph.volume.array.shape), "model_shape": list(mi.array.shape)}


def run_engine(engine: str, work: Path, model: Path, threads: int) -> dict[str, float]:
    """One engine's sliding window over the prepared image (called in a child process)."""
    from inference.package import ModelPackage
    from inference.sliding_window import sliding_window

    image = np.load(work / "image.npy")
    package = ModelPackage.load(model)
    spec = package.card.inference
    roi = spec.roi_size_vox
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(package.model_path), options, providers=["CPUExecutionProvider"]
        )
        name = package.card.onnx.input_name

        def predictor(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return np.asarray(session.run(None, {name: x})[0])

        t0 = time.perf_counter()
        logits = sliding_window(
            image, predictor, roi_size=roi, overlap=spec.overlap, batch_size=spec.batch_size
        )
        seconds = time.perf_counter() - t0
    else:
        import torch
        from monai.inferers import sliding_window_inference

        from training.train import network_from_package

        torch.set_num_threads(threads)
        net = network_from_package(package.path, package.card.training.extra["network_config"])  # type: ignore[arg-type]
        t0 = time.perf_counter()
        with torch.no_grad():
            out = sliding_window_inference(
                torch.from_numpy(image)[None, None],
                list(roi),
                spec.batch_size,
                net,
                overlap=spec.overlap,
                mode="gaussian",
                sigma_scale=spec.sigma_scale,
            )
        logits = out[0].numpy()
        seconds = time.perf_counter() - t0
    np.save(work / f"labels-{engine}.npy", np.argmax(logits, axis=0).astype(np.uint8))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def train_throughput(iterations: int, threads: int) -> float:
    """Patches per second of the shipped config's training step (after 2 warm-up steps)."""
    import torch
    from monai.losses import DiceCELoss

    from training.config import load_config
    from training.data import phantom_case
    from training.train import _batch, build_network, patch_transform

    torch.set_num_threads(threads)
    cfg = load_config(ROOT / "training/configs/lung-nodule.yaml")
    assert cfg.data.phantoms is not None
    case = phantom_case(cfg.data.phantoms.seed, cfg.data.phantoms, cfg.input)
    net = build_network(cfg.network)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    transform = patch_transform(cfg)
    patches, t0 = 0, 0.0
    for it in range(iterations + 2):
        if it == 2:
            patches, t0 = 0, time.perf_counter()
        batch = _batch([case], cfg, transform, it)
        optimizer.zero_grad()
        loss_fn(net(batch["image"]), batch["label"]).backward()
        optimizer.step()
        patches += int(batch["image"].shape[0])
    return patches / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description="ONNX Runtime vs torch eager for the shipped model")
    ap.add_argument("--model", type=Path, help="package folder (default: newest lung-nodule)")
    ap.add_argument("--seed", type=int, default=424_242, help="phantom seed (512×512, 300 slices)")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-iterations", type=int, default=10)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None:
        from inference.registry import Registry

        args.model = Registry(ROOT / "models").find("lung-nodule").path
    if args.engine:  # child process
        print(json.dumps(run_engine(args.engine, args.work, args.model, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        info = prepare(args.seed, args.slices, work, args.model)
        results: dict[str, dict[str, float]] = {}
        for engine in ("onnxruntime", "torch"):
            proc = subprocess.run(
                [sys.executable, __file__, "--engine", engine, "--work", str(work),
                 "--model", str(args.model), "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        a = np.load(work / "labels-onnxruntime.npy") > 0
        b = np.load(work / "labels-torch.npy") > 0
        total = int(a.sum() + b.sum())
        agreement = 2.0 * float((a & b).sum()) / total if total else 1.0
    rate = train_throughput(args.train_iterations, args.threads)
    ort_r, torch_r = results["onnxruntime"], results["torch"]
    print(f"phantom seed {args.seed}: native {info['native_shape']} -> model {info['model_shape']}")
    print(f"threads: {args.threads}")
    print(f"{'engine':<14}{'sliding window s':>18}{'peak RSS MB':>14}")
    for engine, r in results.items():
        print(f"{engine:<14}{r['seconds']:>18.2f}{r['peak_rss_mb']:>14.0f}")
    print(f"time ratio torch / onnxruntime: {torch_r['seconds'] / ort_r['seconds']:.2f}x")
    rss_ratio = torch_r["peak_rss_mb"] / ort_r["peak_rss_mb"]
    print(f"peak RSS ratio torch / onnxruntime: {rss_ratio:.2f}x")
    print(f"label agreement (Dice of the two foregrounds): {agreement:.5f}")
    print(f"training throughput: {rate:.1f} patches/s (shipped config's patch and batch size)")


if __name__ == "__main__":
    main()
