"""The learning loop end to end (what ``preread demo --learning`` runs): phantom studies read
by the shipped model through a real Orthanc → reviews signed through the review page's code
→ a dataset built under a model-training grant → the classifier fine-tuned into a candidate,
evaluated beside the active version and published → shadow on new studies → the gate's
figures → promotion → a study read by the promoted version → rollback with re-read."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.registry import Registry
from preread.audit import AuditAction
from preread.learning import (
    LEARNING_SEED,
    demo_build,
    demo_models_dir,
    report_lines,
    run_learning,
)
from preread.service import Service
from preread.settings import Settings
from tests.pipeline.conftest import MATRIX, MODELS_DIR, SLICES

pytestmark = pytest.mark.train


def _default() -> tuple[str, str]:
    """The newest installed lung-nodule (the default, as ``preread demo --learning`` reads)
    and the version its fine-tuned candidate gets: the next patch release."""
    newest = Registry(MODELS_DIR).versions("lung-nodule")[-1]
    major, minor, patch = (int(x) for x in newest.split("."))
    return f"lung-nodule@{newest}", f"{major}.{minor}.{patch + 1}"


def test_reviews_become_a_candidate_that_shadows_passes_the_gate_and_is_rolled_back(
    tmp_path: Path,
) -> None:
    active, candidate = _default()
    models = demo_models_dir(Settings(models_dir=MODELS_DIR), tmp_path / "models")
    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=models,
        models=[active],  # a published candidate is not what "lung-nodule" names
        poll_interval_s=0.2,
        reconcile_interval_s=3600,
    )
    with Service(settings) as service:
        from preread.demo import demo_grant

        demo_grant(service)
        service.start_loop()
        report = run_learning(
            service,
            count=3,
            shadow_count=3,
            seed=LEARNING_SEED,
            matrix=MATRIX,
            max_slices=SLICES,
            build=demo_build(MATRIX, SLICES),  # what ./run demo --learning builds
            timeout_s=300,
        )
        moves = [
            (r.event.detail or {}).get("move")
            for r in service.audit.records()
            if r.event.action is AuditAction.MODEL_STAGE
        ]
    print("\n".join(report_lines(report)))
    first = report.first_reviews
    assert first.accepted > 0 and first.rejected > 0, first  # positives and hard negatives
    dataset = report.dataset
    assert dataset.ref == "reviews-default@1" and len(dataset.cases) == 3
    assert {c.model for c in dataset.cases} == {active}
    # the candidate's card: the dataset version (content hash), its grants, what it came from
    extra = report.candidate_card_extra
    assert report.candidate == f"lung-nodule@{candidate}"
    assert extra["datasets"] == [f"{dataset.ref} sha256:{dataset.content_sha256}"]
    assert extra["dataset_grants"] == dataset.grant_ids
    assert extra["classifier_fine_tuned_from"] == active
    assert extra["operating_point"]["kept_from"] == active
    assert Registry(models).versions("lung-nodule")[-1] == candidate
    # the gate: the three shadow studies, reviewed; the held-out figures read side by side
    gate = report.gate.figures
    assert gate["studies"] == 3 and gate["active"] == active, gate
    assert gate["held_out"]["data"]["count"] == 2
    assert report.promoted, report.gate.failures
    assert report.read_after_promotion == report.candidate
    assert [w.study_instance_uid for w in report.withdrawn] and report.reread_by == active
    assert {"shadow", "promote", "rollback"} <= set(moves), moves
