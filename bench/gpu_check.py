"""The GPU check of issue 6, in one run, on a machine with an NVIDIA GPU.

For one synthetic chest CT (``training.phantoms``, 512×512×300 by default), through the serving
path (:class:`inference.predict.Predictor`, which resamples, crops to the body and runs the
sliding window) on each engine:

* ``cpu``                  ONNX Runtime CPU, numpy window: the reference;
* ``tensorrt-fp16``        ONNX Runtime TensorRT (fp16, engine cache), device window;
* ``cuda-fp32``            ONNX Runtime CUDA, device window (blend + threshold on the GPU);
* ``cuda-fp32-host-blend`` ONNX Runtime CUDA, numpy window (logits copied back per window);
* ``torch-eager``          the same weights (``weights.pt``) in torch eager on CUDA with MONAI's
                           ``sliding_window_inference``, same windows, then the same findings.

It prints the provider each session actually uses (and exits non-zero when one is not the one
asked for: policy ``fail``), the sliding-window times (first run, then the median of
``--repeat``), their ratios, and the Dice of each engine's finding voxels (labels > 0) against
the CPU result (goal >= 0.999).

``--cpu-smoke`` proves the script here, without a GPU: a small phantom, engines ``cpu``,
``cpu-device-window`` (the device graphs forced on the CPU) and ``torch-eager`` on the CPU.

Run on the GPU machine through ``bench/gpu_check.sh`` (which installs onnxruntime-gpu first);
here: ``.venv/bin/python bench/gpu_check.py --cpu-smoke``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inference.package import ModelPackage  # noqa: E402
from inference.predict import Prediction, Predictor  # noqa: E402
from inference.providers import CPU, CUDA, TENSORRT, provider_entries  # noqa: E402
from inference.session import SessionCache  # noqa: E402
from preread.domain import Volume  # noqa: E402

GOAL_DICE = 0.999


@dataclass
class Result:
    engine: str
    requested: str
    provider: str = "-"
    device: str = "-"
    first_s: float = float("nan")
    seconds: list[float] = field(default_factory=list)
    findings: int = 0
    dice: float = float("nan")
    error: str | None = None
    labels: npt.NDArray[np.int32] | None = None
    prediction: Prediction | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def environment(gpu: bool) -> dict[str, Any]:
    """What runs here: ONNX Runtime build and providers, the GPU torch sees.

    On the GPU machine torch (a CUDA 13 build) is imported first: it loads the CUDA and cuDNN
    libraries of the image's nvidia-* packages, which onnxruntime-gpu (CUDA 13 too) then finds
    already loaded (see ``onnxruntime.preload_dlls``, called as well).
    """
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        import torch

        info["torch"] = torch.__version__
        if gpu and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = "(not installed)"
    from inference.install import onnxruntime_distribution
    from inference.session import onnxruntime_module

    info["onnxruntime_distribution"] = onnxruntime_distribution()  # refuses both / neither
    ort = onnxruntime_module()
    if gpu and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    info["onnxruntime"] = ort.__version__
    info["onnxruntime_device"] = ort.get_device()
    info["available_providers"] = ort.get_available_providers()
    info["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
    if gpu:  # onnxruntime-gpu's TensorRT provider loads TensorRT 10 at session creation
        import ctypes

        try:
            ctypes.CDLL("libnvinfer.so.10")
            info["tensorrt_libs"] = "libnvinfer.so.10 loads"
        except OSError:
            info["tensorrt_libs"] = (
                "libnvinfer.so.10 not found: the TensorRT provider cannot load here, so "
                "tensorrt-fp16 will fail (install TensorRT 10 for CUDA 13 to measure it)"
            )
    return info


def ort_engine(
    name: str,
    package: ModelPackage,
    volume: Volume,
    providers: list[str],
    device_window: Any,
    repeat: int,
    cache_dir: Path,
) -> Result:
    result = Result(engine=name, requested=providers[0])
    try:
        entries = provider_entries(providers, tensorrt_cache_dir=cache_dir)
        predictor = Predictor(
            package, entries, "fail", sessions=SessionCache(), device_window=device_window
        )
        info = predictor.session_info
        result.provider, result.device = info.provider, info.device
        print(
            f"[{name}] requested {', '.join(providers)} -> provider {info.provider} on "
            f"{info.device} (session providers {', '.join(info.session_providers)}); "
            f"window {'on the device' if predictor.on_device else 'numpy on the host'}",
            flush=True,
        )
        t0 = time.perf_counter()
        prediction = predictor.predict(volume)
        result.first_s = time.perf_counter() - t0
        for _ in range(repeat):
            prediction = predictor.predict(volume)
            result.seconds.append(prediction.timings["infer"])
        result.findings = len(prediction.findings)
        result.labels = prediction.labels
        result.prediction = prediction
    except Exception as exc:  # report every engine, then fail the run
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def torch_engine(
    package: ModelPackage, volume: Volume, reference: Prediction, device: str, repeat: int
) -> Result:
    """torch eager + MONAI's sliding window over the reference's region, then the same
    postprocessing (:func:`inference.postprocess.find_nodules`)."""
    result = Result(engine="torch-eager", requested=f"torch:{device}")
    try:
        import torch
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import UNet

        from inference.body import find_body
        from inference.postprocess import find_nodules
        from inference.preprocess import to_model_grid
        from inference.sliding_window import grow_region
        from training.config import NetworkConfig

        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        card = package.card
        # training.train.build_network, without training.train's imports (pydicom, highdicom,
        # matplotlib: not on the GPU image)
        cfg = NetworkConfig.model_validate(card.training.extra["network_config"])
        net = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            channels=cfg.channels,
            strides=cfg.strides,
            num_res_units=cfg.num_res_units,
            dropout=cfg.dropout,
            norm=cfg.norm,
        )
        state = torch.load(package.path / "weights.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval().to(device)
        result.provider, result.device = f"torch {torch.__version__}", device
        spec = card.inference
        model_input = to_model_grid(volume, card.input)
        body = find_body(model_input.hu, model_input.geometry)
        assert reference.region is not None
        box = grow_region(reference.region, spec.roi_size_vox, model_input.geometry.shape)
        image = np.ascontiguousarray(model_input.array[box])

        def run() -> npt.NDArray[np.float32]:
            if device == "cuda":
                torch.cuda.synchronize()
            with torch.inference_mode():
                x = torch.from_numpy(image)[None, None].to(device)
                out = sliding_window_inference(
                    x,
                    list(spec.roi_size_vox),
                    spec.batch_size,
                    net,
                    overlap=spec.overlap,
                    mode=spec.mode,
                    sigma_scale=spec.sigma_scale,
                )
                assert isinstance(out, torch.Tensor)
                p = torch.sigmoid(out[0, 1] - out[0, 0]).cpu().numpy()
            return np.asarray(p, dtype=np.float32)

        t0 = time.perf_counter()
        inner = run()
        result.first_s = time.perf_counter() - t0
        for _ in range(repeat):
            t0 = time.perf_counter()
            inner = run()
            result.seconds.append(time.perf_counter() - t0)
        probability = np.zeros(model_input.geometry.shape, np.float32)
        probability[box] = inner
        detections = find_nodules(
            probability,
            model_input.hu,
            model_input.geometry,
            threshold=card.thresholds.probability,
            min_volume_mm3=card.thresholds.min_volume_mm3,
            midline_x_mm=body.midline_x_mm,
        )
        result.findings = len(detections.findings)
        result.labels = detections.label_map
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return result


def dice(a: npt.NDArray[np.int32], b: npt.NDArray[np.int32]) -> float:
    fa, fb = a > 0, b > 0
    total = int(fa.sum()) + int(fb.sum())
    return 1.0 if total == 0 else 2.0 * float((fa & fb).sum()) / total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "lung-nodule" / "1.0.0")
    ap.add_argument("--seed", type=int, default=424_242)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per engine (after one)")
    ap.add_argument("--cache-dir", type=Path, help="TensorRT caches (default: a fresh folder)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--cpu-smoke", action="store_true", help="small phantom, CPU engines only")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.matrix, args.slices, args.repeat = min(args.matrix, 128), min(args.slices, 48), 1

    from inference.preprocess import to_model_grid
    from training.phantoms import generate_phantom

    env = environment(gpu=not args.cpu_smoke)
    for key, value in env.items():
        print(f"{key}: {value}", flush=True)
    package = ModelPackage.load(args.model)
    t0 = time.perf_counter()
    phantom = generate_phantom(args.seed, matrix=args.matrix, max_slices=args.slices)
    grid = to_model_grid(phantom.volume, package.card.input).geometry.shape
    print(
        f"phantom seed {args.seed}: {list(phantom.volume.array.shape)} -> model grid "
        f"{list(grid)} ({time.perf_counter() - t0:.1f} s to make)",
        flush=True,
    )
    tmp = tempfile.TemporaryDirectory()
    cache_dir = args.cache_dir or Path(tmp.name) / "tensorrt"

    # the reference: its labels matter, its time is context (one timed run)
    results = [ort_engine("cpu", package, phantom.volume, [CPU], "off", 1, cache_dir)]
    reference = results[0]
    region_source = reference.prediction
    if reference.error is not None or reference.labels is None or region_source is None:
        print("the CPU reference failed", file=sys.stderr)
        return 1
    if args.cpu_smoke:
        results.append(
            ort_engine("cpu-device-window", package, phantom.volume, [CPU], "on", 1, cache_dir)
        )
        results.append(torch_engine(package, phantom.volume, region_source, "cpu", 1))
    else:
        gpu = [
            ("tensorrt-fp16", [TENSORRT, CUDA, CPU], "auto"),
            ("cuda-fp32", [CUDA, CPU], "auto"),
            ("cuda-fp32-host-blend", [CUDA, CPU], "off"),
        ]
        for name, providers, mode in gpu:
            results.append(
                ort_engine(name, package, phantom.volume, providers, mode, args.repeat, cache_dir)
            )
        results.append(torch_engine(package, phantom.volume, region_source, "cuda", args.repeat))

    for r in results:
        if r.labels is not None:
            r.dice = dice(r.labels, reference.labels)
    by_name = {r.engine: r for r in results}
    base = by_name.get("cuda-fp32") if not args.cpu_smoke else reference
    torch_r = by_name.get("torch-eager")
    print()
    print(
        f"sliding window (resampled volume {list(grid)}), median of {args.repeat} after a first run"
    )
    header = (
        f"{'engine':<22}{'provider used':<28}{'first s':>9}{'median s':>10}"
        f"{'vs ' + (base.engine if base else '-'):>22}{'torch/this':>12}{'findings':>10}"
        f"{'Dice vs CPU':>13}"
    )
    print(header)
    failed = False
    for r in results:
        if r.error is not None:
            failed = True
            print(f"{r.engine:<22}FAILED: {r.error}")
            continue
        ratio = base.median_s / r.median_s if base and base.seconds else float("nan")
        vs_torch = torch_r.median_s / r.median_s if torch_r and torch_r.seconds else float("nan")
        flag = "" if r.dice >= GOAL_DICE else "  < goal 0.999"
        print(
            f"{r.engine:<22}{r.provider + ' ' + r.device:<28.28}{r.first_s:>9.2f}"
            f"{r.median_s:>10.3f}{ratio:>21.2f}x{vs_torch:>11.2f}x{r.findings:>10d}"
            f"{r.dice:>13.5f}{flag}"
        )
        if r.requested in (CPU, CUDA, TENSORRT) and r.provider != r.requested:
            failed = True  # policy fail raises first; this is the belt to those braces
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": env,
                    "phantom": {"seed": args.seed, "matrix": args.matrix, "slices": args.slices},
                    "model_grid": list(grid),
                    "results": [
                        {k: v for k, v in r.__dict__.items() if k not in ("labels", "prediction")}
                        for r in results
                    ],
                },
                indent=2,
                default=str,
            )
        )
    tmp.cleanup()
    if failed:
        print("FAILED: an engine did not run on the provider it asked for (see above)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
