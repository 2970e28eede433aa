"""``preread models stages|shadow|promote|rollback|retire|reads``: a model version's life.

* ``stages ID`` — every installed version and its stage (candidate, shadow, active, retired),
  who moved it, when and why, and a promotion's gate;
* ``shadow ID@VERSION`` — the version reads every live study the active one reads, from the
  next study on; its results are stored and comparable and never leave PreRead;
* ``promote ID@VERSION`` — the version in shadow becomes active if the gate passes on the
  studies it read in shadow that radiologists reviewed, and on the held-out phantoms (the
  figures are printed, audited and kept with the stage); the version it replaces is retired;
* ``rollback ID@VERSION`` — the active version is withdrawn and the one it replaced is active
  again; ``--since`` lists the studies it read, ``--reread`` has them read again;
* ``retire ID@VERSION`` — a candidate or shadow version is no longer used;
* ``reads ID@VERSION`` — the studies whose current reading is by the version.

Every move needs ``--by`` (who approves) and ``--reason``; each is audited (``model.stage``).
It takes effect for the next job within seconds (the watcher and every worker read the stages
again every 2 s); jobs already queued for a withdrawn version are not read with it, and the
active version reads those studies at the next reconcile. Exit codes: 0 done, 2 refused (one
line saying why; a refused promotion prints the gate's table first).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from preread.composition import job_store, model_packages
from preread.lifecycle import GateRefusedError, LifecycleError, ModelLife, WithdrawnRead
from preread.settings import Settings

__all__ = ["open_life", "register"]

Command = Callable[..., Any]
console = Console(highlight=False)

By = Annotated[str, typer.Option("--by", help="who approves the move (audited)")]
Reason = Annotated[str, typer.Option("--reason", help="why (audited)")]
Ref = Annotated[str, typer.Argument(help="ID@VERSION, e.g. lung-nodule@2.6.0")]


def register(app: typer.Typer, friendly: Callable[[Command], Command]) -> None:
    """Add the lifecycle commands to ``preread models``."""
    for name, fn in (
        ("stages", stages),
        ("shadow", shadow),
        ("promote", promote),
        ("rollback", rollback),
        ("retire", retire),
        ("reads", reads),
    ):
        app.command(name)(friendly(fn))


@contextmanager
def open_life() -> Iterator[ModelLife]:
    from inference.registry import Registry
    from preread.audit import AuditLog

    settings = Settings()
    store = job_store(settings)
    try:
        store.migrate()
        registry = Registry(settings.models_dir)
        yield ModelLife(store, AuditLog(store.engine), registry, model_packages(settings, registry))
    finally:
        store.close()


def _ref(ref: str) -> tuple[str, str]:
    model_id, sep, version = ref.partition("@")
    if not sep or not model_id or not version:
        raise LifecycleError(f"{ref!r}: name a version as ID@VERSION (e.g. lung-nodule@2.6.0)")
    return model_id, version


def _date(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise LifecycleError(f"--since {value!r}: give a date as YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def stages(model_id: Annotated[str, typer.Argument(help="a model id of PREREAD_MODELS")]) -> None:
    """Every installed version of the model and its stage."""
    with open_life() as life:
        table = Table(title=f"{model_id}: versions and stages")
        for column in ("version", "stage", "since", "by", "reason", "replaced"):
            table.add_column(column)
        for s in life.stages(model_id):
            table.add_row(
                s.version,
                s.stage.value,
                f"{s.changed_at:%Y-%m-%d %H:%M}" if s.changed_at else "",
                escape(s.changed_by or ""),
                escape(s.reason or ""),
                s.replaced or "",
            )
        console.print(table)


def shadow(ref: Ref, by: By, reason: Reason) -> None:
    """Put a version in shadow: it reads what the active one reads; nothing it finds leaves."""
    model_id, version = _ref(ref)
    with open_life() as life:
        life.shadow(model_id, version, by=by, reason=reason)
    console.print(f"{model_id}@{version} is in shadow from the next study on")


def promote(
    ref: Ref,
    by: By,
    reason: Reason,
    min_studies: Annotated[
        int, typer.Option(min=1, help="reviewed studies read in shadow the gate needs at least")
    ] = 20,
) -> None:
    """Make a version in shadow the active one, if the gate passes."""
    from preread.reviews.store import ReviewStore

    model_id, version = _ref(ref)
    with open_life() as life:
        try:
            record, result = life.promote(
                model_id,
                version,
                ReviewStore(life.store),
                by=by,
                reason=reason,
                min_studies=min_studies,
            )
        except GateRefusedError as exc:
            console.print(exc.result.table())
            raise
    console.print(result.table())
    console.print(f"{record.ref} is active (replacing {record.replaced}) from the next study on")


def rollback(
    ref: Ref,
    by: By,
    reason: Reason,
    since: Annotated[
        str | None, typer.Option(help="list the studies it read since YYYY-MM-DD (default: all)")
    ] = None,
    reread: Annotated[
        bool, typer.Option("--reread", help="read those studies again with the restored version")
    ] = False,
) -> None:
    """Withdraw the active version: the version it replaced is active again."""
    model_id, version = _ref(ref)
    with open_life() as life:
        record, withdrawn = life.rollback(
            model_id, version, by=by, reason=reason, since=_date(since), reread=reread
        )
    console.print(f"{record.ref} is active again; {model_id}@{version} is retired")
    _print_reads(withdrawn, f"studies read by {model_id}@{version}", reread)


def retire(ref: Ref, by: By, reason: Reason) -> None:
    """Retire a candidate or shadow version."""
    model_id, version = _ref(ref)
    with open_life() as life:
        life.retire(model_id, version, by=by, reason=reason)
    console.print(f"{model_id}@{version} is retired")


def reads(
    ref: Ref,
    since: Annotated[str | None, typer.Option(help="read since YYYY-MM-DD")] = None,
) -> None:
    """The studies whose current reading is by the version."""
    model_id, version = _ref(ref)
    with open_life() as life:
        found = life.withdrawn_reads(model_id, version, _date(since))
    _print_reads(found, f"studies read by {model_id}@{version}", False)


def _print_reads(found: list[WithdrawnRead], title: str, reread: bool) -> None:
    table = Table(title=f"{title}: {len(found)}")
    for column in ("StudyInstanceUID", "job", "finished", *(("re-read by job",) if reread else ())):
        table.add_column(column)
    for r in found:
        row = [
            r.study_instance_uid,
            r.job_id,
            f"{r.finished_at:%Y-%m-%d %H:%M}" if r.finished_at else "",
        ]
        if reread:
            row.append(r.reread_by or "(no longer current: not re-read)")
        table.add_row(*row)
    console.print(table)
    if reread and found:
        console.print(
            "the re-reads start at the service's next reconcile (PREREAD_RECONCILE_INTERVAL_S)"
        )
