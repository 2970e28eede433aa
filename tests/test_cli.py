"""The ``preread`` command line: model listing, cards, refusals, phantoms."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from inference.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def preread(
    *args: str, models: Path = ROOT / "models", data: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREREAD_MODELS_DIR": str(models), "COLUMNS": "200"}
    if data is not None:
        env["PREREAD_DATA_DIR"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "preread.cli", *args],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def preread_in_process(
    *args: str, models: Path = ROOT / "models", data: Path | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """The same command in this process (typer's runner): the administration commands below
    run a dozen times each, and a fresh interpreter costs seconds every time (the console
    script itself is exercised by the subprocess tests above)."""
    from typer.testing import CliRunner

    from preread.cli import app

    env = {"PREREAD_MODELS_DIR": str(models), "COLUMNS": str(columns)}
    if data is not None:
        env["PREREAD_DATA_DIR"] = str(data)
    result = CliRunner().invoke(app, list(args), env=env)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def _copy_newest_package(models: Path) -> Path:
    """The newest shipped lung-nodule package, alone, in a models folder of its own."""
    newest = Registry(ROOT / "models").find("lung-nodule").path
    package = models / "lung-nodule" / newest.name
    shutil.copytree(newest, package)
    return package


def test_models_list_and_show_the_shipped_package() -> None:
    listed = preread("models", "list")
    assert listed.returncode == 0, listed.stderr
    version = Registry(ROOT / "models").find("lung-nodule").card.version
    assert "lung-nodule" in listed.stdout and version in listed.stdout
    shown = preread("models", "show", f"lung-nodule@{version}")
    assert shown.returncode == 0, shown.stderr
    assert "sha256:" in shown.stdout and "27925004" in shown.stdout


def test_a_tampered_model_is_refused_by_name(tmp_path: Path) -> None:
    models = tmp_path / "models"
    package = _copy_newest_package(models)
    onnx = package / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    shown = preread("models", "show", "lung-nodule", models=models)
    assert shown.returncode == 2
    assert "model.onnx" in shown.stderr and "sha256" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_phantoms_command_writes_ct_seg_and_truth(tmp_path: Path) -> None:
    made = preread(
        "phantoms",
        str(tmp_path / "out"),
        "--count",
        "2",
        "--seed",
        "18",
        "--matrix",
        "96",
        "--max-slices",
        "40",
    )
    assert made.returncode == 0, made.stderr
    studies = sorted((tmp_path / "out").iterdir())
    assert len(studies) == 2
    for study in studies:
        assert (study / "truth.json").is_file()
        assert len(list((study / "ct").iterdir())) == 40


def test_train_refuses_a_broken_config_with_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {id: x}\n")
    run = preread("train", str(cfg), data=tmp_path)
    assert run.returncode == 2
    assert str(cfg) in run.stderr and "invalid training config" in run.stderr


def test_finetune_refuses_a_dataset_that_is_not_there_before_writing_anything(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    run = preread_in_process(
        "models", "finetune", "lung-nodule@2.6.0", "--dataset", "reviews-x@1", data=data
    )
    assert run.returncode == 2 and "reviews-x" in run.stderr, run.stdout + run.stderr
    assert not (data / "learning").exists()
    stages = preread_in_process("models", "stages", "lung-nodule", data=data)
    assert stages.returncode == 0 and "before candidate" not in stages.stdout  # not pinned


def test_clients_and_keys_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = preread_in_process(
        "clients", "create", "--tenant", "hosp-a", "--scopes", "reports:read,models:read",
        "--name", "RIS A", data=data,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    fields = dict(
        line.split(":", 1) for line in made.stdout.splitlines() if line.startswith("client_")
    )
    client_id, secret = fields["client_id"].strip(), fields["client_secret"].strip()
    assert client_id.startswith("prc_") and len(secret) >= 40
    listed = preread_in_process("clients", "list", data=data)
    assert listed.returncode == 0 and client_id in listed.stdout
    # on an 80-column terminal too: an operator copies the id to revoke the client
    assert client_id in preread_in_process("clients", "list", data=data, columns=80).stdout
    assert secret not in listed.stdout  # shown once, stored hashed
    assert secret not in (data / "preread.db").read_bytes().decode("latin-1")
    bad = preread_in_process("clients", "create", "--tenant", "Hosp A", data=data)
    assert bad.returncode == 2 and "tenant" in bad.stderr and "Traceback" not in bad.stderr
    scope = preread_in_process(
        "clients", "create", "--tenant", "hosp-a", "--scopes", "root", data=data
    )
    assert scope.returncode == 2 and "unknown scope" in scope.stderr
    revoked = preread_in_process("clients", "revoke", client_id, data=data)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    first = preread_in_process("keys", "rotate", data=data)
    second = preread_in_process("keys", "rotate", data=data)
    assert first.returncode == 0 and second.returncode == 0
    keys = preread_in_process("keys", "list", data=data).stdout.split()
    older = keys[0]
    assert "(signs)" in keys and older.startswith("k")
    assert preread_in_process("keys", "retire", older, data=data).returncode == 0
    newest = [
        k for k in preread_in_process("keys", "list", data=data).stdout.split() if k.startswith("k")
    ]
    assert len(newest) == 1
    refused = preread_in_process("keys", "retire", newest[0], data=data)
    assert refused.returncode == 2 and "rotate first" in refused.stderr


def test_grants_commands_and_the_models_a_revoked_grant_trained(tmp_path: Path) -> None:

    data = tmp_path / "data"
    bad = preread_in_process(
        "grants", "create", "--tenant", "hosp-a", "--purpose", "model-training",
        "--legal-basis", "IRB 7", "--issued-by", "platform",
        "--valid-from", "2026-01-01", "--valid-to", "2025-01-01", data=data,
    )  # fmt: skip
    assert bad.returncode == 2 and "before it starts" in bad.stderr
    unknown = preread_in_process(
        "grants", "create", "--tenant", "hosp-a", "--purpose", "marketing",
        "--legal-basis", "x", "--issued-by", "y", data=data,
    )  # fmt: skip
    assert unknown.returncode == 2 and "unknown purpose" in unknown.stderr
    made = preread_in_process(
        "grants", "create", "--tenant", "hosp-a", "--purpose", "model-training",
        "--legal-basis", "IRB 7", "--issued-by", "platform", "--modality", "CT", data=data,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    grant_id = made.stdout.split()[1].rstrip(":")
    listed = preread_in_process("grants", "list", data=data)
    assert grant_id in listed.stdout and "model-training" in listed.stdout
    assert grant_id in preread_in_process("grants", "list", data=data, columns=80).stdout
    # a model whose card says it was trained on this grant's studies
    models = tmp_path / "models"
    package = _copy_newest_package(models)
    card = yaml.safe_load((package / "model.yaml").read_text())
    card["training"]["grants"] = [grant_id]
    (package / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    revoked = preread_in_process(
        "grants", "revoke", grant_id, "--reason", "consent withdrawn", "--by", "platform",
        models=models, data=data,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert f"lung-nodule {package.name}" in revoked.stdout
    again = preread_in_process(
        "grants", "revoke", grant_id, "--reason", "x", "--by", "y", models=models, data=data
    )
    assert again.returncode == 2 and "already revoked" in again.stderr
    audit = preread_in_process("audit", "verify", data=data)
    assert audit.returncode == 0 and "intact" in audit.stdout


def test_model_stage_commands_say_what_they_did_and_refuse_by_name(tmp_path: Path) -> None:
    """``preread models stages|shadow|promote|rollback|retire|reads`` on the shipped packages
    (the moves themselves: tests/lifecycle)."""
    data = tmp_path / "data"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return preread_in_process("models", *args, data=data)

    who = ("--by", "Dr Chen", "--reason", "a trial on new scanners")
    newest = Registry(ROOT / "models").find("lung-nodule").card.version
    stages = run("stages", "lung-nodule")
    assert stages.returncode == 0, stages.stdout
    assert re.search(rf"{newest}\s+│ active", stages.stdout), stages.stdout
    assert "named by PREREAD_MODELS" in stages.stdout
    shadow = run("shadow", "lung-nodule@2.4.0", *who)
    assert shadow.returncode == 0 and "in shadow from the next study on" in shadow.stdout
    again = run("shadow", "lung-nodule@2.4.0", *who)
    assert again.returncode == 2 and "lung-nodule@2.4.0 is shadow: cannot shadow it" in again.stderr
    refused = run("promote", "lung-nodule@2.4.0", *who)
    assert refused.returncode == 2
    assert "| on 0 reviewed studies |" in refused.stdout
    assert "0 reviewed studies read in shadow, fewer than the 20" in refused.stderr
    back = run("rollback", f"lung-nodule@{newest}", *who)
    assert back.returncode == 2 and "replaced no version" in back.stderr
    assert run("retire", "lung-nodule@2.4.0", *who).returncode == 0
    unnamed = run("shadow", "lung-nodule", *who)
    assert unnamed.returncode == 2 and "name a version as ID@VERSION" in unnamed.stderr
    nobody = run("shadow", "lung-nodule@2.3.0", "--by", " ", "--reason", "x")
    assert nobody.returncode == 2 and "--by is required" in nobody.stderr
    reads = run("reads", f"lung-nodule@{newest}")
    assert reads.returncode == 0 and f"studies read by lung-nodule@{newest}: 0" in reads.stdout
    after = run("stages", "lung-nodule")
    assert re.search(r"2\.4\.0\s+│ retired", after.stdout), after.stdout
