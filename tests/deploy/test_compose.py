"""deploy/compose.yaml: valid against the Compose Specification's JSON schema (the copy that
check-jsonschema ships), every image, port, command and PREREAD_* variable real, secrets from
files only, host ports only for the API and Orthanc's DICOM port."""

from __future__ import annotations

import copy
import importlib.resources
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.checks import (
    DEPLOY,
    command_problems,
    image_problems,
    option_value,
    orthanc_json,
    project_version,
    unknown_settings,
)

ORTHANC = orthanc_json((DEPLOY / "orthanc" / "orthanc.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    schema_file = (
        importlib.resources.files("check_jsonschema")
        / "builtin_schemas"
        / "vendor"
        / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_variables(doc: dict[str, Any]) -> set[str]:
    return {name for s in doc["services"].values() for name in environment(s)}


def test_the_file_is_valid_compose(compose: dict[str, Any]) -> None:
    assert compose_schema_errors(compose) == []


def test_the_schema_check_can_fail(compose: dict[str, Any]) -> None:
    bad = copy.deepcopy(compose)
    bad["services"]["api"]["restart_policy"] = "always"  # not a service key
    bad["servics"] = {}
    errors = compose_schema_errors(bad)
    assert any("servics" in e for e in errors)
    assert any("restart_policy" in e for e in errors)


def test_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "orthanc",
        "postgres",
        "redis",
        "api",
        "watcher",
        "worker",
        "worker-gpu",
    }
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
    assert services["watcher"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_every_preread_variable_is_a_setting(compose: dict[str, Any]) -> None:
    names = compose_variables(compose)
    assert {"PREREAD_ORTHANC_URL", "PREREAD_DATABASE_URL_FILE"} <= names
    assert unknown_settings(names) == []


def test_a_made_up_variable_is_caught(compose: dict[str, Any]) -> None:
    bad = copy.deepcopy(compose)
    bad["services"]["api"]["environment"]["PREREAD_ORTHANC_PASSWRD"] = "x"
    bad["services"]["worker"]["environment"]["PREREAD_AET_FILE"] = "/run/secrets/x"
    assert unknown_settings(compose_variables(bad)) == [
        "PREREAD_AET_FILE",
        "PREREAD_ORTHANC_PASSWRD",
    ]


def test_every_image_is_ours_or_pinned(compose: dict[str, Any]) -> None:
    images = [s["image"] for s in compose["services"].values()]
    assert image_problems(images, project_version()) == []
    built = {s["image"]: s["build"] for s in compose["services"].values() if "build" in s}
    assert set(built) == {f"preread:{project_version()}", f"preread:{project_version()}-gpu"}
    for image, build in built.items():
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert build["args"]["VARIANT"] == ("gpu" if image.endswith("-gpu") else "cpu")
    assert image_problems(["redis:latest", "mongo:7.0.1"], project_version()) == [
        "redis:latest: pin an explicit version tag",
        "mongo:7.0.1: neither built by deploy/Dockerfile nor well known",
    ]


def test_commands_exist_and_ports_match(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "watcher", "worker", "worker-gpu"):
        assert command_problems(services[name]["command"]) == [], name
    api_port = option_value(services["api"]["command"], "--port")
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert published == {
        "api": [f"{api_port}:{api_port}"],
        "orthanc": [f"{ORTHANC['DicomPort']}:{ORTHANC['DicomPort']}"],
    }
    url = environment(services["api"])["PREREAD_ORTHANC_URL"]
    assert url == f"http://orthanc:{ORTHANC['HttpPort']}"
    assert services["worker-gpu"]["command"] == ["preread", "worker", "--gpu", "0"]
    assert command_problems(["preread", "serve", "--listen", "0.0.0.0"]) == [
        "serve: no option --listen"
    ]


def test_secrets_come_from_files_only(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    assert declared and all(set(s) == {"file"} for s in declared.values())
    assert all(s["file"].startswith("./secrets/") for s in declared.values())
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "_URL", "USERS")):
                assert key.endswith("_FILE") or ("://" in value and "@" not in value), (name, key)
        for secret in service.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in declared
    orthanc = compose["services"]["orthanc"]
    targets = {s["target"] for s in orthanc["secrets"] if isinstance(s, dict)}
    assert targets == {"ORTHANC__REGISTERED_USERS", "ORTHANC__POSTGRESQL__PASSWORD"}
    assert environment(compose["services"]["postgres"])["POSTGRES_PASSWORD_FILE"].startswith(
        "/run/secrets/"
    )


def test_orthanc_gets_its_configuration_and_tcp_nodelay(compose: dict[str, Any]) -> None:
    orthanc = compose["services"]["orthanc"]
    env = environment(orthanc)
    assert env["TCP_NODELAY"] == "1"
    assert env["DICOM_WEB_PLUGIN_ENABLED"] == env["POSTGRESQL_PLUGIN_ENABLED"] == "true"
    assert "./orthanc/orthanc.json:/etc/orthanc/preread.json:ro" in orthanc["volumes"]


def test_the_gpu_worker_reserves_a_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["device_ids"] == [option_value(gpu["command"], "--gpu")]
    providers = json.loads(environment(gpu)["PREREAD_PROVIDERS"])
    assert providers[0] == "CUDAExecutionProvider"


def test_internal_services_stay_on_the_internal_network(compose: dict[str, Any]) -> None:
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis", "watcher", "worker", "worker-gpu"):
        assert compose["services"][name]["networks"] == ["backend"], name
