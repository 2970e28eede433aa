"""``preread datasets build|list|show|diff``: training datasets from radiologists' reviews.

``build --from-reviews --tenant T --grant G [--since YYYY-MM-DD] [--model ID] [--name N]``
turns the tenant's signed reviews into the next version of a de-identified dataset under the
``model-training`` grant G (:mod:`preread.datasets.reviews`); it reads the studies from the
deployment's Orthanc (``PREREAD_ORTHANC_URL``) or, with the embedded default, starts the private
Orthanc itself. ``list`` the datasets and versions, ``show NAME[@V]`` one manifest (verified
against its files), ``diff NAME@V1 NAME@V2`` the cases added, removed and relabelled. Datasets
live in ``PREREAD_DATASETS_DIR`` (default ``<data dir>/datasets``). Exit 0 done, 2 refused (one
line saying why).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from preread.audit.cli import cli_actor
from preread.datasets import DatasetError, DatasetRegistry, diff
from preread.settings import Settings

__all__ = ["register"]

Command = Callable[..., Any]
datasets_app = typer.Typer(
    no_args_is_help=True,
    help="Training datasets from radiologists' signed reviews: build, list, show, diff.",
)
console = Console(highlight=False)


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add ``preread datasets build|list|show|diff`` to ``app``."""
    app.add_typer(datasets_app, name="datasets")
    for name, fn in (("build", build), ("list", list_datasets), ("show", show), ("diff", diff_cmd)):
        datasets_app.command(name)(friendly(fn))


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise DatasetError(f"--since {value!r} is not a date (YYYY-MM-DD)") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def build(
    tenant: Annotated[str, typer.Option(help="whose reviews (the grant is this tenant's)")],
    grant: Annotated[str, typer.Option(help="the model-training grant's id")],
    from_reviews: Annotated[
        bool, typer.Option("--from-reviews", help="build from signed reviews (required)")
    ] = False,
    since: Annotated[str | None, typer.Option(help="reviews signed since YYYY-MM-DD")] = None,
    model: Annotated[str, typer.Option(help="the model id whose readings were reviewed")] = (
        "lung-nodule"
    ),
    name: Annotated[
        str | None, typer.Option(help="dataset name (default reviews-<tenant>)")
    ] = None,
) -> None:
    """Build the next dataset version from the tenant's signed reviews."""
    from preread.datasets import DatasetContext, build_from_reviews
    from preread.service import Service
    from preread.training_access import TrainingAccess

    if not from_reviews:
        raise DatasetError("say where the labels come from: --from-reviews")
    settings = Settings()
    with Service(settings) as service:
        access = TrainingAccess.open(settings, service.store)
        try:
            ctx = DatasetContext(
                store=service.store,
                grants=service.grants,
                audit=service.audit,
                source=service.source,
                access=access,
                registry=DatasetRegistry(settings.datasets_path),
            )
            result = build_from_reviews(
                ctx,
                tenant=tenant,
                grant_id=grant,
                model_id=model,
                since=_since(since),
                name=name,
                created_by=cli_actor(),
            )
        finally:
            access.close()
    m = result.manifest
    positives = sum(len(c.positives) for c in m.cases)
    negatives = sum(len(c.negatives) for c in m.cases)
    state = "new" if result.new else "unchanged: the newest version already holds this content"
    console.print(
        f"{m.ref} ({state}): {len(m.cases)} studies, {positives} positive nodules "
        f"({sum(p.reader_placed for c in m.cases for p in c.positives)} reader-placed), "
        f"{negatives} hard negatives; {len(m.left_out)} reviews left out; "
        f"sha256 {m.content_sha256[:16]}"
    )
    for item in m.left_out:
        console.print(f"left out: review {item.review_id}: {item.reason}")


def list_datasets() -> None:
    """Every dataset and its versions."""
    registry = DatasetRegistry(Settings().datasets_path)
    table = Table(title=f"datasets in {registry.root}")
    for column in ("dataset", "created", "studies", "positives", "negatives", "grants", "sha256"):
        table.add_column(column)
    for name in registry.names():
        for version in registry.versions(name):
            m = registry.manifest(name, version)
            table.add_row(
                m.ref,
                f"{m.created_at:%Y-%m-%d %H:%M}",
                str(len(m.cases)),
                str(sum(len(c.positives) for c in m.cases)),
                str(sum(len(c.negatives) for c in m.cases)),
                " ".join(m.grant_ids),
                m.content_sha256[:16],
            )
    console.print(table)


def show(ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")]) -> None:
    """One version's manifest (its files verified first)."""
    manifest, _ = DatasetRegistry(Settings().datasets_path).resolve(ref)
    console.print_json(manifest.model_dump_json())


def diff_cmd(
    old: Annotated[str, typer.Argument(help="NAME@VERSION")],
    new: Annotated[str, typer.Argument(help="NAME@VERSION")],
) -> None:
    """The cases added, removed and relabelled from OLD to NEW."""
    registry = DatasetRegistry(Settings().datasets_path)
    before, _ = registry.resolve(old)
    after, _ = registry.resolve(new)
    change = diff(before, after)
    console.print(
        f"{before.ref} -> {after.ref}: {len(change.added)} added, {len(change.removed)} "
        f"removed, {len(change.relabelled)} relabelled"
    )
    for label, cases in (("+", change.added), ("-", change.removed), ("~", change.relabelled)):
        for case in cases:
            console.print(f"{label} {case}")
