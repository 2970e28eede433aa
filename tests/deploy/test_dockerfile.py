"""deploy/Dockerfile: pinned bases, the cpu/gpu extras of pyproject.toml, a non-root user, no
secret; tini as the entry point (credentials from NAME_FILE are read by the settings)."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.checks import DEPLOY, ROOT, settings_variables

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))


def test_base_images_are_pinned_and_the_variant_picks_the_extra() -> None:
    args = _args()
    assert args["VARIANT"] == "cpu"
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert re.fullmatch(
        r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"]
    )
    froms = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert froms == ["${PYTHON_IMAGE}", "${CUDA_IMAGE}", "base-${VARIANT}", "base-${VARIANT}"]
    assert 'pip install ".[${VARIANT}]"' in DOCKERFILE


def test_the_variants_are_extras_of_the_project() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert {"cpu", "gpu"} <= set(extras)
    assert any(d.startswith("onnxruntime-gpu") for d in extras["gpu"])
    assert any(re.match(r"onnxruntime\b(?!-)", d) for d in extras["cpu"])


def test_runs_as_a_numeric_non_root_user_without_secrets() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0].isdigit()
    assert not re.search(r"(?i)^(ENV|ARG)\s.*(password|secret|token)", DOCKERFILE, re.MULTILINE)
    names = set(re.findall(r"\b(PREREAD_[A-Z0-9_]+)=", DOCKERFILE))
    assert names and names <= settings_variables()
    assert "STOPSIGNAL SIGINT" in DOCKERFILE
    assert re.search(r'^ENTRYPOINT \["tini", "--"\]$', DOCKERFILE, re.M)


def test_the_ignore_file_keeps_secrets_and_environments_out() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*"  # nothing but what is named after it
    assert "!deploy/secrets/" not in ignore and "!.venv/" not in ignore
    assert (DEPLOY / ".gitignore").read_text().split() == ["secrets/"]
