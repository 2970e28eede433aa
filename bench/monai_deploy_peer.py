"""Benchmark PreRead end to end against a peer: the same model and study through MONAI Deploy.

Run: ``./run bench peer`` (``.venv/bin/python bench/monai_deploy_peer.py``; ``--quick`` for a
sanity run on a 256×256×60 phantom; ``--help`` for the options). Prints a table; asserts
nothing. Needs Orthanc with its DICOMweb plugin, DCMTK's ``storescu``, and the peer's virtual
environment ``.venv-peer`` (``--peer-python``), made once with::

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install torch==2.13.0
    .venv-peer/bin/pip install monai-deploy-app-sdk==4.0.0 monai pydicom highdicom scikit-image

(monai-deploy-app-sdk 4.0.0 brings holoscan-cu13 4.6.0, whose Python 3.11 x86_64 wheel runs on
this CPU-only machine.)

The study: one phantom chest CT (seed 990000, 512×512, capped at 300 slices of 0.625 mm),
sent by ``storescu`` (``TCP_NODELAY=1``) to a fresh private Orthanc (StableAge 2 s) per side.
The model: ``models/lung-nodule/1.0.0`` — PreRead runs its ``model.onnx`` on ONNX Runtime
(``--preread-model lung-nodule``: PreRead's default instead, the newest installed, a staged
2.x pipeline; the report then says the models differ); the peer runs a TorchScript of 1.0.0's
network, built here from the training code
(``training.train.network_from_package``: the card's network config + ``weights.pt``) and
checked against the ONNX file on a 96³ input (max |difference| printed).

* **PreRead**: the embedded service as ``preread serve`` runs it against an existing Orthanc (in
  a process of its own, started and warm before the send: the watcher polls ``/changes`` every
  1 s, the default; the in-process runner; the model loaded), reading the study when it is
  stable and storing a TID 1500 SR and a SEG back into Orthanc.
* **Peer**: ``bench/peer/lung_nodule_app.py`` in ``.venv-peer``, a MONAI Deploy ``Application``
  as the SDK's example apps are written (DICOMDataLoaderOperator → DICOMSeriesSelectorOperator →
  DICOMSeriesToVolumeOperator → MonaiSegInferenceOperator with the card's preprocessing, roi 96³,
  overlap 0.25, gaussian → DICOMSegmentationWriterOperator and DICOMTextSRWriterOperator), run
  as its users run one, a process per study (``python app.py -i in -o out -m model.ts``). This
  script plays the part the Informatics Gateway plays for a MONAI Deploy app: it polls
  ``/changes`` (every 20 ms) for the study's ``StableStudy``, downloads the CT instances over
  Orthanc's REST API (4 at a time, uncompressed) into the app's input folder, runs the app,
  and stores its SEG and SR into Orthanc with ``storescu``.

Measured: for each, from ``StableStudy`` seen in the change feed (this process polls every
20 ms) to the SR stored in Orthanc (PreRead: the job's ``finished_at``; peer: ``storescu``
returned), with the steps of each; the ratio PreRead / peer (the issue's goal: ≤ 0.3), and,
for the record, the two sides' compute without start-up (PreRead: sum of the job's stages;
peer: the app's volume-to-files time). The sides run one after the other, not at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicom_gateway.orthanc_server import OrthancServer

from harness import (  # bench/harness.py
    HOSPITAL_AET,
    BenchError,
    Child,
    child_config,
    child_settings,
    emit,
    grant_phantoms,
    read_child_config,
    remove_work,
    run_bench,
    send,
)

ROOT = Path(__file__).resolve().parent.parent
#: the network the peer runs (a MONAI Deploy app runs one network, not a staged pipeline)
PEER_MODEL = "lung-nodule@1.0.0"
PEER_APP = ROOT / "bench" / "peer" / "lung_nodule_app.py"
PEER_EVENT = "PEER-TIMINGS "
GOAL_RATIO = 0.3
STAGES = ("fetch", "decode", "volume", "preprocess", "infer", "postprocess", "encode", "store")


# -- PreRead (child process) -------------------------------------------------------------------


def child_main() -> int:
    """The embedded service against the Orthanc named on stdin, until the study's job is final."""
    from preread.service import Service
    from preread.store.states import FINISHED

    cfg = read_child_config()
    settings = child_settings(cfg, models=[cfg["model"]])
    with Service(settings) as service:
        grant_phantoms(service, "bench/monai_deploy_peer.py")
        service.start_loop()
        emit("ready", poll_interval_s=settings.poll_interval_s)
        deadline = time.monotonic() + float(cfg["timeout_s"])
        while time.monotonic() < deadline:
            jobs = service.store.current_for_study(cfg["study_uid"])
            if jobs and jobs[0].state in FINISHED:
                job = jobs[0]
                emit(
                    "done",
                    state=job.state.value,
                    reason=job.reason,
                    timings=dict(job.timings),
                    provider=job.provider_used,
                    created_at=job.created_at.timestamp(),
                    finished_at=job.finished_at.timestamp() if job.finished_at else None,
                    findings=job.findings_count,
                    model=f"{job.model_id}@{job.model_version}",
                    sr_series=job.outputs.sr.orthanc_series_id if job.outputs.sr else None,
                )
                return 0
            time.sleep(0.05)
        emit("error", message="the job did not finish in time")
    return 1


# -- the driver --------------------------------------------------------------------------------


def new_orthanc(folder: Path) -> OrthancServer:
    from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer

    server = OrthancServer(
        OrthancConfig(
            storage_dir=folder,
            stable_age_s=2,
            dicom_modalities=(
                DicomPeer("hospital", HOSPITAL_AET, "127.0.0.1", 11112),
                DicomPeer("peer", "MONAIDEPLOY", "127.0.0.1", 11113),
            ),
        )
    )
    server.start()
    return server


def wait_stable(server: OrthancServer, timeout_s: float) -> tuple[str, float]:
    """Poll ``/changes`` every 20 ms until a ``StableStudy``; (Orthanc study id, time seen)."""
    deadline = time.monotonic() + timeout_s
    since = 0
    with server.client() as client:
        while True:
            page = client.changes(since=since, limit=1000)
            for change in page.changes:
                if change.is_stable_study:
                    return change.orthanc_id, time.time()
            since = page.last
            if time.monotonic() > deadline:
                raise BenchError(f"no StableStudy within {timeout_s:.0f} s")
            time.sleep(0.02)


def build_torchscript(models_dir: Path, out: Path) -> float:
    """The network from the training code + ``weights.pt``, traced; returns max |TS - ONNX|."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import yaml

    from training.train import network_from_package

    package = models_dir / "lung-nodule" / "1.0.0"
    card = yaml.safe_load((package / "model.yaml").read_text())
    net = network_from_package(package, card["training"]["extra"]["network_config"])
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 96, 96, 96), dtype=np.float32))
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.zeros(1, 1, 96, 96, 96))  # type: ignore[no-untyped-call]
        expected = traced(x).numpy()
    traced.save(str(out))
    session = ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {card["onnx"]["input_name"]: x.numpy()})[0]
    return float(np.abs(np.asarray(got) - expected).max())


@dataclass(frozen=True)
class PrereadSide:
    total_s: float
    send_s: float
    timings: dict[str, float]
    watcher_s: float
    findings: int | None
    provider: str | None
    model: str


@dataclass(frozen=True)
class PeerSide:
    total_s: float
    send_s: float
    fetch_s: float
    app_s: float
    startup_s: float
    load_s: float
    infer_s: float
    write_s: float
    store_s: float
    nodules: int | None
    modalities: list[str]


def run_preread(args: argparse.Namespace, ct_dir: Path, study_uid: str, work: Path) -> PrereadSide:
    server = new_orthanc(work / "orthanc-preread")
    child: Child | None = None
    try:
        child = Child(
            __file__,
            child_config(
                server,
                work / "preread",
                args.models_dir,
                study_uid=study_uid,
                timeout_s=args.timeout,
                model=args.preread_model,
            ),
            work / "preread.log",
        )
        child.event(300, "ready")
        time.sleep(1.0)
        send_s = send([ct_dir], server.aet, server.dicom_port, contexts_from_files=True)
        _, seen = wait_stable(server, 120)
        done = child.event(args.timeout + 60, "finished job")
    finally:
        if child is not None:
            child.stop()
        server.stop()
    if done["state"] != "done" or not done["sr_series"]:
        raise BenchError(f"PreRead's job ended {done['state']}: {done['reason']}")
    timings = {k: float(v) for k, v in done["timings"].items()}
    return PrereadSide(
        total_s=float(done["finished_at"]) - seen,
        send_s=send_s,
        timings=timings,
        watcher_s=float(done["created_at"]) - seen,
        findings=done["findings"],
        provider=done["provider"],
        model=done["model"],
    )


def fetch_instances(server: OrthancServer, study_id: str, out: Path) -> int:
    """Every instance of the study, as Orthanc stored it, into ``out`` (4 requests at once)."""
    import httpx

    out.mkdir(parents=True)
    auth = (server.username, server.password)
    headers = {"Accept-Encoding": "identity"}
    with httpx.Client(base_url=server.url, auth=auth, headers=headers, timeout=60) as client:
        listing = client.get(f"/studies/{study_id}/instances")
        listing.raise_for_status()
        ids = [item["ID"] for item in listing.json()]

        def one(instance_id: str) -> None:
            response = client.get(f"/instances/{instance_id}/file")
            response.raise_for_status()
            (out / f"{instance_id}.dcm").write_bytes(response.content)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, ids))
    return len(ids)


def study_modalities(server: OrthancServer, study_id: str) -> list[str]:
    """The modalities of the study's series in Orthanc (to show the SR arrived)."""
    with server.client() as client:
        return sorted(client.series(sid).modality for sid in client.study(study_id).series_ids)


def run_peer(args: argparse.Namespace, ct_dir: Path, model_ts: Path, work: Path) -> PeerSide:
    server = new_orthanc(work / "orthanc-peer")
    try:
        send_s = send([ct_dir], server.aet, server.dicom_port, contexts_from_files=True)
        study_id, seen = wait_stable(server, 120)
        t0 = time.perf_counter()
        fetch_instances(server, study_id, work / "peer-in")
        t1 = time.perf_counter()
        out = work / "peer-out"
        log = work / "peer.log"
        command = [str(args.peer_python), str(PEER_APP), "-i", str(work / "peer-in")]
        command += ["-o", str(out), "-m", str(model_ts)]
        with log.open("wb") as handle:
            proc = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=work,
                timeout=args.timeout,
                check=False,
            )
        t2 = time.perf_counter()
        text = log.read_text(errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"the MONAI Deploy app failed ({proc.returncode}):\n{text[-3000:]}")
        outputs = sorted(out.glob("*.dcm"))
        if not outputs:
            raise BenchError(f"the MONAI Deploy app wrote no DICOM file:\n{text[-3000:]}")
        store_s = send(
            outputs, server.aet, server.dicom_port, calling="MONAIDEPLOY", contexts_from_files=True
        )
        stored = time.time()
        modalities = study_modalities(server, study_id)
    finally:
        server.stop()
    line = next((ln for ln in text.splitlines() if ln.startswith(PEER_EVENT)), None)
    if line is None:
        raise BenchError(f"the MONAI Deploy app printed no timings:\n{text[-3000:]}")
    peer = json.loads(line[len(PEER_EVENT) :])
    marks: dict[str, float] = peer["marks"]
    app_s = t2 - t1
    return PeerSide(
        total_s=stored - seen,
        send_s=send_s,
        fetch_s=t1 - t0,
        app_s=app_s,
        startup_s=app_s - marks["finished"],
        load_s=marks["volume_received"],
        infer_s=marks["inferred"] - marks["volume_received"],
        write_s=marks["finished"] - marks["inferred"],
        store_s=store_s,
        nodules=peer.get("nodules"),
        modalities=modalities,
    )


def report(
    args: argparse.Namespace,
    n_files: int,
    n_bytes: int,
    shape: tuple[int, ...],
    parity: float,
    pr: PrereadSide,
    peer: PeerSide,
) -> int:
    stage_sum = sum(pr.timings.get(s, 0.0) for s in STAGES)
    print()
    print("End to end, StableStudy -> SR stored in Orthanc: PreRead vs MONAI Deploy App SDK")
    print(
        f"study: phantom seed {args.seed}, {shape[0]} slices of {shape[1]}x{shape[2]}; "
        f"{n_files} CT instances, {n_bytes / 1e6:.0f} MB"
    )
    same = pr.model == PEER_MODEL
    print(
        f"model: PreRead {pr.model} on ONNX Runtime ({pr.provider}); peer: TorchScript of "
        f"{PEER_MODEL}'s network (max |TS - ONNX| on 96^3: {parity:.1e})"
        + ("" if same else f"; not the same model: PreRead runs {pr.model}'s whole pipeline")
    )
    print(f"machine: {os.cpu_count()} CPU core(s); load average {os.getloadavg()[0]:.2f} (1 min)")
    print()
    print(f"{'PreRead (warm service, watcher poll 1 s)':<48}{'s':>8}")
    print(f"{'  StableStudy seen -> job created (watcher)':<48}{pr.watcher_s:>8.2f}")
    for stage in STAGES:
        if stage in pr.timings:
            print(f"{'  ' + stage:<48}{pr.timings[stage]:>8.2f}")
    rest = pr.total_s - pr.watcher_s - stage_sum
    print(f"{'  in no stage (selection, job store)':<48}{rest:>8.2f}")
    print(f"{'  total: StableStudy -> SR stored':<48}{pr.total_s:>8.2f}")
    print(f"  findings: {pr.findings}")
    print()
    print(f"{'MONAI Deploy App SDK (a process per study)':<48}{'s':>8}")
    print(f"{'  fetch the instances (REST, 4 at a time)':<48}{peer.fetch_s:>8.2f}")
    print(f"{'  app: start, imports (Holoscan, torch, monai)':<48}{peer.startup_s:>8.2f}")
    print(f"{'  app: DICOM load, series select, to volume':<48}{peer.load_s:>8.2f}")
    print(f"{'  app: pre-transforms, sliding window, post':<48}{peer.infer_s:>8.2f}")
    print(f"{'  app: SEG + text SR written':<48}{peer.write_s:>8.2f}")
    print(f"{'  store SEG + SR (storescu)':<48}{peer.store_s:>8.2f}")
    print(f"{'  total: StableStudy -> SR stored':<48}{peer.total_s:>8.2f}")
    print(f"  nodules (components >= 10 mm3): {peer.nodules}; study series now: {peer.modalities}")
    print()
    ratio = pr.total_s / peer.total_s
    warm_peer = peer.load_s + peer.infer_s + peer.write_s
    print(
        f"sends (not in the totals): PreRead side {pr.send_s:.1f} s, peer side {peer.send_s:.1f} s"
    )
    print(
        f"compute without start-up: PreRead stages {stage_sum:.2f} s vs peer app "
        f"{warm_peer:.2f} s ({stage_sum / warm_peer:.2f}x)"
    )
    print(
        f"PreRead / peer, StableStudy -> SR stored: {ratio:.2f}x  (goal <= {GOAL_RATIO}: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from training.phantom_dicom import write_phantom_study
    from training.phantoms import generate_phantom

    if not args.peer_python.exists():
        raise BenchError(f"{args.peer_python} not found: make the peer venv (see the docstring)")
    work = Path(tempfile.mkdtemp(prefix="preread-bench-peer-"))
    try:
        print(f"work folder: {work}{' (kept)' if args.keep else ''}", flush=True)
        phantom = generate_phantom(args.seed, matrix=args.matrix, max_slices=args.slices)
        files = write_phantom_study(phantom, work / "study")
        ct = sorted(files.ct_dir.iterdir())
        n_bytes = sum(p.stat().st_size for p in ct)
        shape = tuple(int(v) for v in phantom.volume.array.shape)
        print(f"study: {len(ct)} instances, {n_bytes / 1e6:.0f} MB", flush=True)
        model_ts = work / "model.ts"
        parity = build_torchscript(args.models_dir, model_ts)
        print(f"TorchScript written; max |TS - ONNX| = {parity:.1e}", flush=True)
        pr = run_preread(args, files.ct_dir, files.study_instance_uid, work)
        print(f"PreRead: StableStudy -> SR stored in {pr.total_s:.2f} s", flush=True)
        peer = run_peer(args, files.ct_dir, model_ts, work)
        print(f"peer: StableStudy -> SR stored in {peer.total_s:.2f} s", flush=True)
        return report(args, len(ct), n_bytes, shape, parity, pr, peer)
    finally:
        remove_work(work, keep=args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(description="PreRead vs MONAI Deploy App SDK, stable -> SR")
    ap.add_argument("--seed", type=int, default=990_000, help="phantom seed (400 slices uncapped)")
    ap.add_argument("--slices", type=int, default=300, help="slice cap")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns")
    ap.add_argument("--quick", action="store_true", help="a 256x256x60 phantom")
    ap.add_argument("--peer-python", type=Path, default=ROOT / ".venv-peer" / "bin" / "python")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument(
        "--preread-model",
        default=PEER_MODEL,
        help=f"what PreRead serves (default {PEER_MODEL}, the peer's network; 'lung-nodule': "
        "the newest installed, a staged 2.x pipeline the peer does not run)",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="per side (s)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, outputs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()
    if args.quick:
        args.slices, args.matrix = 60, 256
    return run_bench(
        run,
        args,
        tools=("storescu", "Orthanc"),
        cleaned="Orthanc, PreRead and folders cleaned up",
    )


if __name__ == "__main__":
    sys.exit(main())
