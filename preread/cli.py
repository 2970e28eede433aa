"""The ``preread`` command line.

Each command builds the settings once, calls library functions and prints; heavy imports
(torch, monai, onnxruntime) happen inside the commands that need them, so ``preread --help``
and the serving commands start fast and the serving install works without torch.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from preread.composition import job_store, orthanc_client
from preread.errors import PrereadError
from preread.private_files import write_private_file
from preread.settings import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="PreRead: AI pre-reads of CT studies."
)
models_app = typer.Typer(
    no_args_is_help=True,
    help="Model packages: list, show, build, publish; a version's life: stages, shadow, promote,"
    " rollback, retire, reads.",
)
app.add_typer(models_app, name="models")

console = Console(stderr=True, soft_wrap=True)  # error lines stay whole (paths, UIDs)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Print PreRead's own errors as one clear line and exit 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PrereadError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except ValidationError as exc:  # a PREREAD_* variable that does not validate
            problems = "; ".join(
                f"PREREAD_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            )
            console.print(f"[bold red]configuration error:[/] {escape(problems)}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
@_friendly
def phantoms(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the studies into")],
    count: Annotated[int, typer.Option(min=1, help="number of studies")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="seed of the first study (then seed+1, …)")] = 0,
    matrix: Annotated[int, typer.Option(min=32, max=1024, help="rows = columns")] = 512,
    max_slices: Annotated[int | None, typer.Option(min=8, help="cap the slice count")] = None,
    follow_up: Annotated[
        bool,
        typer.Option(
            "--follow-up",
            help="write COUNT follow-up pairs instead: a baseline and a follow-up study of one "
            "patient each, and followup-truth.json",
        ),
    ] = False,
) -> None:
    """Write synthetic chest-CT studies: CT series, truth SEG and truth.json per study."""
    from training.phantom_dicom import write_phantoms

    if follow_up:
        from training.followup_phantoms import follow_up_pair, write_follow_up_pair

        with _progress() as bar:
            task = bar.add_task("follow-up pairs", total=count, info="")
            written = []
            for pair_seed in range(seed, seed + count):
                pair = follow_up_pair(pair_seed, matrix=matrix, max_slices=max_slices)
                written.append(write_follow_up_pair(pair, out_dir))
                bar.advance(task, 1)
        for base, fu in written:
            out.print(f"{base.study_dir}  {fu.study_dir}")
        return
    with _progress() as bar:
        task = bar.add_task("phantoms", total=count, info="")
        studies = write_phantoms(
            out_dir,
            count,
            seed,
            matrix=matrix,
            max_slices=max_slices,
            progress=lambda n: bar.advance(task, n),
        )
    for s in studies:
        out.print(str(s.study_dir))


@app.command()
@_friendly
def train(
    config: Annotated[Path, typer.Argument(help="training config (YAML)")],
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    resume: Annotated[bool, typer.Option(help="continue from the run's checkpoint")] = True,
    workers: Annotated[int, typer.Option(min=1, help="processes preparing cases")] = 2,
    loader_workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="processes drawing training batches ahead of the loop (0: in it); "
            "the weights are the same whatever the number",
        ),
    ] = 0,
) -> None:
    """Train a model from a config: phantoms or a folder of (CT series + SEG) pairs."""
    from preread.training_access import DEID_METHOD
    from training.config import load_config
    from training.data import training_cases
    from training.orthanc_data import PullResult
    from training.provenance import DatasetProvenance
    from training.train import train as run_training

    cfg = load_config(config)
    settings = Settings()
    if device not in {"auto", "cpu", "cuda"}:
        raise typer.BadParameter("--device must be auto, cpu or cuda")
    with ExitStack() as stack:
        access = None
        if cfg.data.source == "orthanc":  # patient data: grants, de-identification, audit
            from preread.training_access import TrainingAccess

            store = job_store(settings)
            stack.callback(store.close)
            store.migrate()
            access = TrainingAccess.open(settings, store)
            stack.callback(access.close)
        pulled: list[PullResult] = []
        datasets = _training_datasets(cfg.data.datasets or [], settings)
        with _progress() as bar:
            n = cfg.data.phantoms.count if cfg.data.phantoms else 0
            prep = bar.add_task("preparing cases", total=n or None, info="")
            cases = training_cases(
                cfg.data,
                cfg.input,
                settings.data_dir / "cache" / "cases",
                orthanc=_orthanc_client(settings) if access is not None else None,
                admit=access.admit if access is not None else None,
                deidentify=access.deidentify if access is not None else None,
                pulled=pulled,
                workers=workers,
                progress=lambda k: bar.advance(prep, k),
                dataset_folders=[folder for _, folder in datasets],
            )
            if pulled:
                got = pulled[0]
                out.print(
                    f"data: {len(got.cases)} annotated studies under model-training grants "
                    f"{', '.join(got.grants) or '(none)'}, de-identified; "
                    f"{len(got.refused)} left out (no valid grant)"
                )
            task = bar.add_task("training", total=cfg.optim.iterations, info="")

            def on_step(it: int, loss: float, rate: float) -> None:
                bar.update(task, completed=it, info=f"loss {loss:.4f}  {rate:.1f} patches/s")

            result = run_training(
                cfg,
                cases,
                device=device,
                resume=resume,
                on_step=on_step,
                loader_workers=loader_workers,
            )
        provenance = (
            DatasetProvenance(
                "orthanc",
                pulled[0].grants,
                len(pulled[0].cases),
                len(pulled[0].refused),
                DEID_METHOD,
            )
            if pulled
            else DatasetProvenance(
                "datasets",
                tuple(sorted({g for m, _ in datasets for g in m.grant_ids})),
                sum(len(m.cases) for m, _ in datasets),
                0,
                DEID_METHOD,
                tuple(f"{m.ref} sha256:{m.content_sha256}" for m, _ in datasets),
            )
            if datasets
            else DatasetProvenance(cfg.data.source)
        )
        provenance.write(result.output_dir)
    out.print(
        f"trained {result.iterations} iterations on {result.device}: final loss "
        f"{result.final_loss:.4f}, {result.patches_per_second:.1f} patches/s -> {result.output_dir}"
    )


def _training_datasets(refs: list[str], settings: Settings) -> list[tuple[Any, Path]]:
    """The dataset versions a config names, verified and still authorized."""
    if not refs:
        return []
    from preread.datasets import DatasetRegistry, authorized_datasets
    from preread.grants import GrantStore

    store = job_store(settings)
    try:
        store.migrate()
        return authorized_datasets(
            refs, DatasetRegistry(settings.datasets_path), GrantStore(store.engine)
        )
    finally:
        store.close()


def _review_datasets(config: Path) -> list[tuple[Any, Path]]:
    """The review dataset versions a staged build config names, verified and authorized."""
    from training.staged import load_staged_config

    cfg, _ = load_staged_config(config)
    return _training_datasets(cfg.reviews.datasets if cfg.reviews else [], Settings())


def _orthanc_client(settings: Settings) -> Any:
    if not settings.orthanc_url:
        raise PrereadError("data.source is 'orthanc': set PREREAD_ORTHANC_URL (and credentials)")
    return orthanc_client(settings)


def _resolve_package(model: str, settings: Settings) -> Path:
    from inference.registry import Registry

    p = Path(model)
    if p.is_dir():
        return p
    model_id, _, version = model.partition("@")
    return Registry(settings.models_dir).find(model_id, version or None).path


@app.command()
@_friendly
def evaluate(
    model: Annotated[str, typer.Argument(help="package folder, or id[@version] from the registry")],
    data: Annotated[
        str, typer.Argument(help="folder of CT+SEG pairs, or phantoms:SEED:COUNT[:MATRIX]")
    ],
    output: Annotated[Path | None, typer.Option("--out", help="write evaluation.json here")] = None,
    min_probability: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="the operating point: count only findings with at least this probability "
            "(default: the card's; the FROC and CPM always use every candidate)",
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="bootstrap resamples of the scans for the 95 % CIs")
    ] = 1000,
) -> None:
    """Score a model package on scans with known nodules (LUNA16 hit rule: sensitivity, FP/scan,
    FROC and CPM with bootstrap confidence intervals, breakdowns, type accuracy, Dice)."""
    from inference.package import ModelPackage
    from preread.models import predictor_for
    from training.evaluate import evaluate as run_eval
    from training.evaluate import folder_scans, phantom_scans

    settings = Settings()
    package = ModelPackage.load(_resolve_package(model, settings))
    # every candidate with its score (the whole FROC), the operating point applied in scoring
    predictor = predictor_for(package, settings, full_probability=True, all_candidates=True)
    if min_probability is None:
        min_probability = package.card.operating_point
    if data.startswith("phantoms:"):
        parts = data.split(":")
        if len(parts) not in (3, 4):
            raise typer.BadParameter("phantoms:SEED:COUNT[:MATRIX]")
        seed, count = int(parts[1]), int(parts[2])
        matrix = int(parts[3]) if len(parts) == 4 else 512
        scans = phantom_scans(seed, count, matrix=matrix)
        total: int | None = count
        meta: dict[str, Any] = {
            "data": {"source": "phantoms", "seed": seed, "count": count, "matrix": matrix}
        }
    else:
        scans = folder_scans(Path(data))
        total = None
        meta = {"data": {"source": "folder", "path": str(Path(data).resolve())}}
    with _progress() as bar:
        task = bar.add_task("evaluating", total=total, info="")
        doc = run_eval(
            predictor,
            scans,
            meta=meta,
            progress=lambda s: bar.advance(task, 1),
            min_probability=min_probability,
            n_resamples=bootstrap,
        )
    _print_eval(doc)
    if output:
        output.write_text(json.dumps(doc, indent=2))
        out.print(f"written {output}")


def _print_eval(doc: dict[str, Any]) -> None:
    t = Table(title="evaluation (LUNA16 hit rule; 95 % CI: bootstrap over scans)")
    t.add_column("metric")
    t.add_column("value", justify="right")

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    def with_ci(key: str) -> str:
        entry = doc.get("confidence_intervals", {}).get(key) or {"value": doc.get(key)}
        ci = entry.get("ci95")
        return f"{f(entry['value'])} ({f(ci[0])}-{f(ci[1])})" if ci else f(entry["value"])

    t.add_row("scans", f(doc["n_scans"]))
    t.add_row("nodules (non-calcified ≥ 6 mm)", f"{doc['n_nodules']} ({doc['n_nodules_ge6mm']})")
    if doc.get("min_probability"):
        t.add_row("findings with probability ≥", f(doc["min_probability"]))
    t.add_row("sensitivity ≥ 6 mm", with_ci("sensitivity_ge6mm"))
    t.add_row("false positives / scan", with_ci("fp_per_scan"))
    t.add_row("FROC CPM", with_ci("cpm"))
    t.add_row("type accuracy (detected ≥ 6 mm)", f(doc.get("type_accuracy")))
    t.add_row("false positives on calcified nodules", f(doc.get("fp_on_calcified")))
    t.add_row("duplicates (neither TP nor FP)", f(doc.get("duplicates")))
    for band, v in doc["sensitivity_by_band"].items():
        t.add_row(f"sensitivity {band} mm (n={v['n']})", f(v["sensitivity"]))
    for name, v in doc.get("breakdown", {}).get("attachment", {}).items():
        t.add_row(f"sensitivity ≥ 6 mm {name} (n={v['n']})", f(v["sensitivity"]))
    t.add_row("median Dice ≥ 6 mm", f(doc["dice_ge6mm"]["median"]))
    t.add_row("diameter MAE ≥ 6 mm (mm)", f(doc["diameter_error_mm_ge6mm"]["mae"]))
    t.add_row("volume median |rel. error|", f(doc["volume_error_rel_ge6mm"]["median_abs"]))
    out.print(t)


API_SHUTDOWN_S = 5.0
"""How long a stopping ``serve`` lets requests in flight finish (uvicorn's graceful shutdown,
the app's lifespan shutdown after it)."""


class _ApiThread:
    """The API served by uvicorn from a background thread (the main thread handles signals:
    uvicorn installs its own handlers only in the main thread)."""

    def __init__(self, service: Any, host: str, port: int) -> None:
        import threading

        import uvicorn

        from preread.api.server import server_config

        # limits on request heads (431); no uvicorn access log (see preread.api.server)
        config = server_config(
            service.app(),
            service.settings,
            host=host,
            port=port,
            timeout_graceful_shutdown=API_SHUTDOWN_S,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="preread-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise PrereadError(f"the API could not start on {host}:{port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop listening, let requests in flight finish, run the lifespan's shutdown."""
        self.server.should_exit = True
        self.thread.join(timeout=API_SHUTDOWN_S + 5)


def _exit_leaving(service: Any, code: int = 0) -> None:
    """Leave at once (with ``code``) when ``service`` released jobs whose threads still run
    (inside the model, say): their leases are released, and the interpreter would otherwise
    wait for them."""
    if getattr(service, "abandoned", 0):
        import logging
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


ORTHANC_PASSWORD_FILE = "orthanc-password"
"""In ``<data_dir>/secrets``: the generated password of the private Orthanc (mode 0600)."""


def _print_endpoints(service: Any, host: str, port: int) -> None:
    for line in endpoint_lines(service, host, port):
        out.print(line)


def endpoint_lines(service: Any, host: str, port: int) -> list[str]:
    """What ``serve`` and ``demo`` print about where to reach them: never a secret. The private
    Orthanc's generated password is written to ``<data_dir>/secrets/orthanc-password`` (0600,
    replaced at each start) and only that path is printed."""
    lines = [
        f"API:     http://{host}:{port}/api/v1/studies   (docs: http://{host}:{port}/docs)",
        "         clients: preread clients create --tenant default --scopes reports:read",
    ]
    if service.orthanc is not None:
        o = service.orthanc
        lines.append(f"Orthanc: {o.url}  DICOM {o.aet}@127.0.0.1:{o.dicom_port}  user {o.username}")
        settings = service.settings
        if settings.orthanc_password is not None:
            lines.append("         password: the one set in PREREAD_ORTHANC_PASSWORD(_FILE)")
        else:
            path = settings.data_dir / "secrets" / ORTHANC_PASSWORD_FILE
            write_private_file(path, o.password.encode("utf-8") + b"\n")
            lines.append(f"         password: in {path} (readable by this user only)")
    return lines


def _print_demo_client(service: Any, host: str, port: int, study_uid: str | None) -> None:
    """A client of the demo's tenant, and the two requests that read a report with it."""
    client, secret = service.clients.create(
        service.settings.default_tenant or "default",
        "demo",
        ["reports:read", "models:read", "studies:analyze"],
        service.settings.rate_limit_per_minute,
    )
    base = f"http://{host}:{port}"
    out.print(f"API client (tenant {client.tenant}): {client.client_id}  secret {secret}")
    extract = """python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'"""
    out.print(
        f"  TOKEN=$(curl -s -u {client.client_id}:{secret} -d grant_type=client_credentials "
        f"{base}/oauth/token | {extract})"
    )
    target = study_uid or "<StudyInstanceUID>"
    out.print(
        f'  curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/studies/{target}/report/fhir'
    )


DEMO_READER = "demo-radiologist"


def _print_demo_reader(service: Any, host: str, port: int, study_uid: str | None) -> None:
    """The demo's radiologist (an account of the demo's tenant, a fresh password each run) and
    where to read: the worklist, a study's review page and the same study in OHIF."""
    from preread.accounts import AccountStore, Role, UserNotFoundError
    from preread.accounts.passwords import new_password
    from preread.demo import DEMO_SENDER

    accounts = AccountStore(service.store.engine, audit=service.audit)
    tenant = service.settings.tenant_of(DEMO_SENDER) or "default"
    password = new_password()
    try:
        accounts.by_username(DEMO_READER)
        accounts.set_password(DEMO_READER, password, by="preread demo")
    except UserNotFoundError:
        accounts.create(
            tenant,
            DEMO_READER,
            Role.RADIOLOGIST,
            password=password,
            display_name="Demo Radiologist",
            by="preread demo",
        )
    base = f"http://{host}:{port}"
    out.print(f"Radiologist (tenant {tenant}): sign in as {DEMO_READER}  password {password}")
    out.print(f"  worklist: {base}/ui/")
    if study_uid:
        out.print(f"  review:   {base}/ui/studies/{study_uid}")
        if service.settings.viewer:
            out.print(f"  OHIF:     {base}/viewer/viewer?StudyInstanceUIDs={study_uid}")


def _stay_then_stop(service: Any, api: _ApiThread, signals: Any, *, once: bool) -> None:
    """Keep the demo's service and API up until a signal (``--once``: not at all), then stop
    them."""
    if not once:
        out.print("PreRead and Orthanc keep running; Ctrl-C stops them.")
        try:
            _wait_for_signal(signals)
        except KeyboardInterrupt:
            console.print("stopping (SIGINT)")
    api.stop()
    service.close(hurry=signals.urgent)


def _wait_for_signal(signals: Any) -> None:
    """Until SIGTERM or SIGINT (:class:`preread.shutdown.ShutdownSignals`)."""
    received = signals.wait()
    console.print(f"stopping ({received.name if received else 'asked'})")


@app.command()
@_friendly
def demo(
    count: Annotated[int, typer.Option(min=1, help="phantom studies to send")] = 3,
    seed: Annotated[
        int | None,
        typer.Option(min=0, help="seed of the first phantom (default 990000; --learning 990303)"),
    ] = None,
    matrix: Annotated[int, typer.Option(min=32, max=1024, help="rows = columns")] = 512,
    max_slices: Annotated[int | None, typer.Option(min=8, help="cap the slice count")] = None,
    once: Annotated[bool, typer.Option("--once", help="exit when the table is printed")] = False,
    host: Annotated[str, typer.Option(help="API address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    follow_up: Annotated[
        bool,
        typer.Option(
            "--follow-up/--no-follow-up",
            help="also a follow-up study, compared with its prior fetched from a second "
            "Orthanc playing the hospital's PACS",
        ),
    ] = True,
    learning: Annotated[
        bool,
        typer.Option(
            "--learning",
            help="the learning loop instead: studies read and reviewed, a dataset, a "
            "fine-tuned candidate in shadow, the gate, promotion and rollback (minutes)",
        ),
    ] = False,
) -> None:
    """Send phantom chest CTs to a private Orthanc by C-STORE; print found vs truth per study
    (and a follow-up study's comparison with its prior vs the truth). With ``--learning``,
    run the learning loop on them instead (:mod:`preread.learning`)."""
    import signal

    from dicom_gateway.orthanc_server import OrthancServer
    from preread.demo import (
        DEMO_SENDER,
        demo_grant,
        follow_up_lines,
        follow_up_setup,
        follow_up_table,
        run_demo,
        run_follow_up,
    )
    from preread.service import Service
    from preread.shutdown import ShutdownSignals

    settings = Settings()
    if "PREREAD_LUNG_RADS" not in os.environ:  # the demo's phantoms stand for screening exams
        settings = settings.model_copy(update={"lung_rads": "all"})
    if learning:
        from preread.learning import LEARNING_SEED

        _learning_demo(
            settings,
            count=count,
            seed=LEARNING_SEED if seed is None else seed,
            matrix=matrix,
            max_slices=max_slices or 64,
            once=once,
            host=host,
            port=port,
        )
        return
    pacs_config = None
    if follow_up and settings.priors_peer and not settings.orthanc_url:
        out.print("follow-up part skipped: PREREAD_PRIORS_PEER names your own PACS")
    elif follow_up and not settings.orthanc_url:  # with it, run_demo refuses (no private one)
        settings, pacs_config = follow_up_setup(settings)
    # SIGTERM: a clean stop; Ctrl-C stays KeyboardInterrupt, so it also ends the demo's run
    with ShutdownSignals((signal.SIGTERM,)) as signals, ExitStack() as stack:
        pacs = None
        if pacs_config is not None:  # stopped last: after the service
            pacs = stack.enter_context(OrthancServer(pacs_config, die_with_parent=True))
            out.print(f"hospital PACS (a second Orthanc): AE {pacs.aet}, {pacs.url}")
        service = stack.enter_context(Service(settings))
        senders = (DEMO_SENDER,) if pacs is None else (DEMO_SENDER, pacs.aet)
        grant = demo_grant(service, senders)
        out.print(
            f"grant {grant.id}: {grant.purpose.value} of the demo's own source "
            f"(AE {' '.join(grant.spec.sender_aets)} -> tenant {grant.tenant}; "
            f"{grant.spec.legal_basis})"
        )
        service.start_loop()
        api = _ApiThread(service, host, port)
        _print_endpoints(service, host, port)
        with console.status("demo") as status:
            rows = run_demo(
                service,
                count=count,
                seed=990_000 if seed is None else seed,
                matrix=matrix,
                max_slices=max_slices,
                on_status=lambda m: status.update(m),
            )
            report = None
            if pacs is not None:
                report = run_follow_up(
                    service,
                    pacs,
                    matrix=matrix,
                    max_slices=max_slices,
                    on_status=lambda m: status.update(m),
                )
        t = Table(
            title="PreRead demo: AI pre-reads of phantom chest CTs (AI-generated, preliminary)"
        )
        for col in (
            "study",
            "slices",
            "state",
            "nodules (≥6 mm)",
            "found",
            "≥6 mm found",
            "false pos.",
            "Lung-RADS",
            "stable→SR s",
            "provider",
        ):
            t.add_column(col)
        for r in rows:
            t.add_row(
                "…" + r.study[-12:],
                str(r.slices),
                r.state,
                f"{r.truth_nodules} ({r.truth_ge6mm})",
                str(r.found),
                f"{r.found_ge6mm_hit}/{r.truth_ge6mm}",
                str(r.false_positives),
                r.lung_rads,
                "-" if r.stable_to_sr_s is None else f"{r.stable_to_sr_s:.1f}",
                r.provider,
            )
        out.print(t)
        for r in rows:
            if r.reason:
                out.print(f"{r.study}: {r.reason}")
        if report is not None:
            out.print(follow_up_table(report))
            for line in follow_up_lines(report):
                out.print(line)
        shown = next((r.study for r in rows if r.state == "done"), None)
        _print_demo_client(service, host, port, shown)
        _print_demo_reader(service, host, port, shown)
        _stay_then_stop(service, api, signals, once=once)
    # a study the series rules turn away (not_applicable, with its reason in the table: the
    # demo's third phantom has 3 mm slices) is a correct answer, not a failure of the demo
    failed = any(r.state not in ("done", "not_applicable") for r in rows)
    failed = failed or (report is not None and report.state != "done")
    _exit_leaving(service, 1 if failed else 0)
    if failed:
        raise typer.Exit(1)


def _learning_demo(
    settings: Settings,
    *,
    count: int,
    seed: int,
    matrix: int,
    max_slices: int,
    once: bool,
    host: str,
    port: int,
) -> None:
    """``preread demo --learning``: the candidate is published into a models folder of the
    demo's own (links to the installed packages), the active version pinned in
    ``PREREAD_MODELS`` so that the new one reads only as the stages say."""
    import signal

    from inference.registry import Registry
    from preread.composition import model_packages
    from preread.demo import demo_grant
    from preread.learning import demo_build, demo_models_dir, report_lines, run_learning
    from preread.service import Service
    from preread.shutdown import ShutdownSignals

    models = demo_models_dir(settings, settings.data_dir / "demo-models")
    pinned = [f"{p.card.id}@{p.card.version}" for p in model_packages(settings)]
    settings = settings.model_copy(update={"models_dir": models, "models": pinned})
    Registry(models)  # fail early on a broken link
    with ShutdownSignals((signal.SIGTERM,)) as signals, Service(settings) as service:
        demo_grant(service)
        service.start_loop()
        api = _ApiThread(service, host, port)
        _print_endpoints(service, host, port)
        with console.status("learning loop") as status:

            def say(message: str) -> None:
                status.update(message)
                out.print(message)

            report = run_learning(
                service,
                count=count,
                shadow_count=count,
                seed=seed,
                matrix=matrix,
                max_slices=max_slices,
                build=demo_build(matrix, max_slices),
                on_status=say,
            )
        for line in report_lines(report):
            out.print(line)
        _stay_then_stop(service, api, signals, once=once)
    _exit_leaving(service, 0 if report.promoted else 1)
    if not report.promoted:
        raise typer.Exit(1)


@app.command()
@_friendly
def serve(
    host: Annotated[str, typer.Option(help="API address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    api_only: Annotated[
        bool,
        typer.Option(
            "--api-only",
            help="scale-out API replica: no watcher, no model; jobs go to `preread worker` "
            "over PREREAD_BROKER_URL",
        ),
    ] = False,
) -> None:
    """Watcher + workers + API in one process (a private Orthanc unless PREREAD_ORTHANC_URL);
    with --api-only, the API of a scale-out deployment. With PREREAD_MLLP_PORT set, it also
    listens for the hospital's final reports (HL7 v2 ORU^R01 over MLLP).

    SIGTERM or SIGINT stops it: the API finishes its requests, running jobs get
    PREREAD_SHUTDOWN_GRACE_S to finish (a second signal: at once) and are released after it,
    the private Orthanc stops and its temporary folder is removed; exit 0."""
    from preread.cli_finalreports import mllp_listener
    from preread.logs import configure_logging
    from preread.service import Service
    from preread.shutdown import ShutdownSignals

    configure_logging()  # third-party loggers (httpx, highdicom, ...) only from WARNING
    settings = Settings()
    with ShutdownSignals() as signals, Service(settings, api_only=api_only) as service:
        mllp = mllp_listener(settings, service)  # PREREAD_MLLP_PORT: final reports over MLLP
        service.start_loop()
        api = _ApiThread(service, host, port)
        _print_endpoints(service, host, port)
        _wait_for_signal(signals)
        if mllp is not None:
            mllp.stop()
        api.stop()
        service.close(hurry=signals.urgent)
    _exit_leaving(service)


@app.command()
@_friendly
def read(
    folder: Annotated[Path, typer.Argument(help="a folder of DICOM files (one or more studies)")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="write SR.dcm and SEG.dcm here")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the PreRead JSON")] = False,
    model: Annotated[str, typer.Option(help="model id[@version]")] = "lung-nodule",
) -> None:
    """Pre-read a folder of DICOM files without Orthanc; SR and SEG go to --out.

    Exit 0 when every study was read or is not applicable (reason on stderr), 2 with one
    ``error:`` line per study on stderr when a study was refused or none could be read.
    """
    from dicom_gateway.errors import printable
    from inference.package import ModelPackage
    from preread.models import predictor_for
    from preread.read import read_folder

    settings = Settings()
    package = ModelPackage.load(_resolve_package(model, settings))
    predictor = predictor_for(package, settings)
    results = read_folder(
        folder,
        predictor,
        out_dir,
        limits=settings.series_limits(),
        outputs=settings.outputs,
        lung_rads=settings.lung_rads_policy(),
    )
    if not results:
        raise PrereadError(f"{folder}: no DICOM study found")
    docs = [r.as_json() for r in results]
    if as_json:
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        for r in results:
            n = len(r.preread["findings"]) if r.preread else 0
            out.print(
                f"{printable(r.study_instance_uid)}: {r.status}"
                + (f", {n} finding(s)" if r.preread else ""),
                highlight=False,
                markup=False,
            )
            for f in r.files:
                out.print(f"  {f}", highlight=False, markup=False)
    for skipped in dict.fromkeys(f for r in results for f in r.skipped):
        console.print(f"[yellow]skipped:[/] {escape(skipped)}", highlight=False)
    refused = any(r.status == "failed" for r in results)
    nothing_read = all(r.status != "done" for r in results)
    for r in results:
        if r.status == "done":
            continue
        prefix = "error" if refused or nothing_read else "not read"
        what = "refused" if r.status == "failed" else "not applicable"
        console.print(
            f"[bold red]{prefix}:[/] study {escape(printable(r.study_instance_uid))} {what}: "
            f"{escape(printable(r.reason or ''))}",
            highlight=False,
        )
    if refused or nothing_read:
        raise typer.Exit(2)


@models_app.command("list")
@_friendly
def models_list() -> None:
    """The model packages installed in PREREAD_MODELS_DIR."""
    from inference.registry import Registry

    settings = Settings()
    t = Table(title=f"models in {settings.models_dir}")
    for col in ("id", "version", "task", "modality", "sensitivity ≥6mm", "FP/scan"):
        t.add_column(col)
    for entry in Registry(settings.models_dir).list():
        card = entry.card
        t.add_row(
            card.id,
            card.version,
            card.task,
            card.modality,
            _fmt(card.metrics.get("sensitivity_ge6mm")),
            _fmt(card.metrics.get("fp_per_scan")),
        )
    out.print(t)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


@models_app.command("show")
@_friendly
def models_show(
    model: Annotated[str, typer.Argument(help="id[@version] or a package folder")],
) -> None:
    """Print a model's card (verifying the package's hash and schema)."""
    from inference.package import ModelPackage

    package = ModelPackage.load(_resolve_package(model, Settings()))
    out.print(package.card_path.read_text())


@models_app.command("publish")
@_friendly
def models_publish(
    run_dir: Annotated[Path, typer.Argument(help="a training run folder (has model.pt)")],
    models_dir: Annotated[
        Path | None, typer.Option(help="registry folder (default PREREAD_MODELS_DIR)")
    ] = None,
    eval_seed: Annotated[int, typer.Option(help="first seed of the held-out phantoms")] = 900_000,
    eval_count: Annotated[
        int, typer.Option(min=1, help="held-out phantoms (≥ 50 for a release)")
    ] = 50,
    eval_matrix: Annotated[int, typer.Option(min=32, max=1024)] = 512,
    force: Annotated[
        bool, typer.Option(help="replace an existing package of this version")
    ] = False,
) -> None:
    """Export ONNX, check parity, evaluate on held-out phantoms, write the card and register it."""
    from training.publish import publish

    target = models_dir or Settings().models_dir
    with _progress() as bar:
        task = bar.add_task("held-out evaluation", total=eval_count, info="")
        path = publish(
            run_dir,
            target,
            eval_seed=eval_seed,
            eval_count=eval_count,
            eval_matrix=eval_matrix,
            force=force,
            progress=lambda: bar.advance(task, 1),
        )
    out.print(f"published {path}")


@models_app.command("build")
@_friendly
def models_build(
    config: Annotated[Path, typer.Argument(help="staged build config (YAML)")] = Path(
        "training/configs/lung-nodule-2.yaml"
    ),
    models_dir: Annotated[
        Path | None, typer.Option(help="registry folder (default PREREAD_MODELS_DIR)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="replace an existing package of this version")
    ] = False,
) -> None:
    """Build a staged model from nothing (detector, mining, classifier, operating point),
    evaluate it beside its baseline on held-out and robustness phantoms, and register it.
    Every step resumes from what an interrupted run left."""
    from training.compare import compare_and_publish
    from training.staged import build

    target = models_dir or Settings().models_dir
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total, info="")
            bar.update(tasks[step], completed=done)

        package = build(config, progress, _review_datasets(config))
        path = compare_and_publish(config, package, target, force=force, progress=progress)
    out.print(f"published {path}")


@models_app.command("finetune")
@_friendly
def models_finetune(
    ref: Annotated[str, typer.Argument(help="the installed staged package, ID@VERSION")],
    dataset: Annotated[
        list[str],
        typer.Option(
            "--dataset", help="a dataset version built from reviews, NAME@VERSION (repeatable)"
        ),
    ],
    version: Annotated[
        str | None, typer.Option(help="the candidate's version (default: the next patch)")
    ] = None,
    iterations: Annotated[int, typer.Option(min=1, help="classifier training steps")] = 200,
    eval_count: Annotated[
        int, typer.Option(min=1, help="held-out phantoms read side by side (100: a release)")
    ] = 100,
    robustness_count: Annotated[int, typer.Option(min=1, help="robustness phantoms")] = 30,
    models_dir: Annotated[
        Path | None, typer.Option(help="registry folder (default PREREAD_MODELS_DIR)")
    ] = None,
) -> None:
    """A candidate version from radiologists' reviews: the package's false-positive classifier
    fine-tuned on the dataset versions (rejected findings as hard negatives, confirmed and
    added nodules as positives, rehearsal phantoms beside them), behind the same detector at a
    sensitivity-matched operating point; evaluated beside the package on the same phantoms and
    published as a candidate (``preread models shadow`` next)."""
    from inference.registry import Registry
    from training.compare import compare_and_publish
    from training.finetune import finetune_config, next_version, write_config
    from training.staged import build

    settings = Settings()
    target = models_dir or settings.models_dir
    registry = Registry(target)
    model_id, _, base_version = ref.partition("@")
    package = registry.find(model_id, base_version or None)
    version = version or next_version(package, registry.versions(model_id))
    datasets = _training_datasets(dataset, settings)  # verified, authorized: before any write
    if model_id in {m.partition("@")[0] for m in settings.models}:  # served here: pin
        from preread.audit.cli import cli_actor
        from preread.cli_models import open_life

        with open_life() as life:
            pinned = life.pin_active(
                model_id, by=cli_actor(), reason=f"before candidate {version} was published"
            )
        out.print(f"{pinned.model_id}@{pinned.version} is the recorded active version")
    folder = settings.data_dir / "learning" / f"{model_id}-{version}"
    config = write_config(
        finetune_config(
            package,
            dataset,
            version=version,
            output_dir=folder / "run",
            iterations=iterations,
            held_out={"seed": 900_000, "count": eval_count},
            robustness={"seed": 950_000, "count": robustness_count},
        ),
        folder / "build.yaml",
    )
    out.print(f"build config: {config}")
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total, info="")
            bar.update(tasks[step], completed=done)

        built = build(config, progress, datasets)
        path = compare_and_publish(config, built, target, progress=progress)
    out.print(f"published {path} (a candidate: preread models shadow {model_id}@{version})")


@models_app.command("evaluate-followup")
@_friendly
def models_evaluate_followup(
    model: Annotated[
        str | None,
        typer.Argument(help="package folder or id[@version] (model mode)"),
    ] = None,
    pairs: Annotated[int, typer.Option("--pairs", min=1, help="follow-up pairs")] = 30,
    seed: Annotated[int, typer.Option(min=0, help="seed of the first pair")] = 970_000,
    mode: Annotated[
        str, typer.Option(help="truth: findings from the truth; model: the model reads both scans")
    ] = "truth",
    matrix: Annotated[int, typer.Option(min=32, max=1024)] = 512,
    max_slices: Annotated[int | None, typer.Option(min=8, help="cap the slice count")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="write the document here")] = None,
) -> None:
    """Measure the follow-up comparison (registration, matching, growth, Lung-RADS) on
    follow-up phantom pairs: matching F1, status accuracy, VDT error, exam category."""
    from training.evaluate_followup import evaluate_followup, model_reader, truth_reader

    if mode not in ("truth", "model"):
        raise typer.BadParameter("--mode must be truth or model")
    meta: dict[str, Any] = {"mode": mode}
    if mode == "model":
        if model is None:
            raise typer.BadParameter("model mode needs a MODEL")
        from inference.package import ModelPackage
        from training.staged import serving_predictor

        package = ModelPackage.load(_resolve_package(model, Settings()))
        reader = model_reader(serving_predictor(package))
        meta["model"] = {"id": package.card.id, "version": package.card.version}
    else:
        reader = truth_reader()
    with _progress() as bar:
        task = bar.add_task("follow-up pairs", total=pairs, info="")
        doc = evaluate_followup(
            reader,
            seed,
            pairs,
            matrix=matrix,
            max_slices=max_slices,
            meta=meta,
            progress=lambda r: bar.advance(task, 1),
        )
    _print_followup(doc)
    if output:
        output.write_text(json.dumps(doc, indent=2))
        out.print(f"written {output}")


def _print_followup(doc: dict[str, Any]) -> None:
    t = Table(title=f"follow-up comparison ({doc['mode']} mode)")
    t.add_column("metric")
    t.add_column("value", justify="right")

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    m, s, v, e, r = (
        doc["matching"],
        doc["status"],
        doc["vdt"],
        doc["exam_category"],
        doc["registration"],
    )
    by = doc["n_nodules_by_status"]
    t.add_row("pairs (compared)", f"{doc['n_pairs']} ({doc['n_compared']})")
    t.add_row(
        "nodules (new / persistent / resolved)",
        f"{doc['n_nodules']} ({by['new']} / {by['persistent']} / {by['resolved']})",
    )
    t.add_row("matching precision", f(m["precision"]))
    t.add_row(
        f"matching recall (detected in both, n={m['persistent_detected_in_both']})",
        f(m["recall"]),
    )
    t.add_row("matching F1", f(m["f1"]))
    t.add_row(f"matching recall end to end (n={m['persistent']})", f(m["recall_end_to_end"]))
    t.add_row("false-positive persistent rows", f(m["false_positive_rows"]))
    t.add_row(f"status accuracy (n={s['n']})", f(s["accuracy"]))
    for name, acc in s["by_status"].items():
        t.add_row(f"  {name}", f(acc))
    t.add_row(f"VDT median |rel. error| (n={v['n']})", f(v["median_abs_rel_error"]))
    t.add_row("VDT max |rel. error|", f(v["max_abs_rel_error"]))
    t.add_row("VDT within ±10 %", f(v["share_within_10pct"]))
    t.add_row("exam category = truth (follow-up)", f(e["agreement"]))
    t.add_row("exam category = truth, type from the truth", f(e["agreement_truth_types"]))
    t.add_row("exam category = truth (baseline)", f(e["baseline_agreement"]))
    t.add_row(
        "registration residual median / max (mm)",
        f"{f(r['residual_mm_median'])} / {f(r['residual_mm_max'])}",
    )
    t.add_row(
        "registration error at nodules median / max (mm)",
        f"{f(r['error_at_nodules_mm_median'])} / {f(r['error_at_nodules_mm_max'])}",
    )
    out.print(t)


health_app = typer.Typer(
    no_args_is_help=True, help="Container probes of preread worker / preread watch."
)
app.add_typer(health_app, name="health")


@health_app.command("ready")
@_friendly
def health_ready(
    role: Annotated[str, typer.Argument(help="worker or watch")],
) -> None:
    """Exit 0 when everything ROLE needs answers (database, broker, Orthanc, models); 1
    naming what does not."""
    from preread.health import ready

    if role not in ("worker", "watch"):
        raise PrereadError(f"unknown role {role!r}: worker or watch")
    results = ready(Settings(), "worker" if role == "worker" else "watch")
    for check in results:
        typer.echo(check.line())
    if not all(check.ok for check in results):
        raise typer.Exit(1)


@health_app.command("leader")
@_friendly
def health_leader() -> None:
    """Liveness of the watchers: exit 1 when the database answers and no `preread watch`
    holds the leadership; 0 when one does, or when the database cannot be asked (restarting a
    watcher would not help; readiness reports that)."""
    from preread.health import leader_held
    from preread.scale.cli import LEADERSHIP

    url = Settings().database_url
    if not url or not url.startswith("postgresql"):
        raise PrereadError("PREREAD_DATABASE_URL must name PostgreSQL (the watchers' lock)")
    try:
        held = leader_held(url, LEADERSHIP)
    except Exception as exc:  # the database is unreachable: not this process's fault
        typer.echo(f"leader: cannot ask the database ({type(exc).__name__}); not restarting for it")
        return
    typer.echo("leader: " + ("a watcher leads" if held else "no watcher holds the lock"))
    if not held:
        raise typer.Exit(1)


def _register_access_commands() -> None:
    from preread import cli_access as access

    app.add_typer(access.clients_app, name="clients")
    app.add_typer(access.keys_app, name="keys")
    app.add_typer(access.grants_app, name="grants")
    from preread.audit.cli import audit_app
    from preread.scale import cli as scale

    app.add_typer(audit_app, name="audit")
    app.command("worker")(_friendly(scale.worker))
    app.command("watch")(_friendly(scale.watch))
    for group, name, fn in (
        (access.clients_app, "create", access.create_client),
        (access.clients_app, "list", access.list_clients),
        (access.clients_app, "revoke", access.revoke_client),
        (access.keys_app, "list", access.list_keys),
        (access.keys_app, "rotate", access.rotate_keys),
        (access.keys_app, "retire", access.retire_key),
        (access.grants_app, "create", access.create_grant),
        (access.grants_app, "list", access.list_grants),
        (access.grants_app, "revoke", access.revoke_grant),
    ):
        group.command(name)(_friendly(fn))
    from preread.cli_jobs import register as register_jobs

    register_jobs(app, _friendly)
    from preread.cli_users import register as register_users

    register_users(app, _friendly)
    from preread.cli_backfill import register as register_backfill
    from preread.cli_models import register as register_models

    register_backfill(app, _friendly)
    from preread.cli_finalreports import register as register_finalreports

    register_finalreports(app, _friendly)
    register_models(models_app, _friendly)
    from preread.cli_datasets import register as register_datasets

    register_datasets(app, _friendly)


_register_access_commands()


if __name__ == "__main__":
    app()
