"""deploy/helm/preread rendered for real by Helm's own engine (helm-python-sdk: Helm 4's Go SDK
behind ctypes, no helm binary), linted, and validated against Kubernetes' OpenAPI schemas
(kubernetes-validate, offline) for every values file; then the cross-checks: images, ports,
commands and PREREAD_* variables exist."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.checks import (
    CHART,
    DEPLOY,
    ENVIRONMENTS,
    command_problems,
    image_problems,
    option_value,
    orthanc_json,
    project_version,
    unknown_settings,
    walk,
)

KUBE_VERSIONS = ("1.27", "1.33")  # the chart's kubeVersion floor, and a recent release
ORTHANC = orthanc_json((DEPLOY / "orthanc" / "orthanc.json").read_text())
# dev makes its Secret from --set values; these stand in for them
DEV_SECRETS = {
    "secrets": {
        "values": {
            "databaseUrl": "postgresql+psycopg://preread:dev@postgres/preread",
            "orthancPassword": "dev",
            "brokerUrl": "redis://redis:6379/0",
        }
    }
}


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def env_values(env: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / f"values-{env}.yaml").read_text())
    return merged(values, DEV_SECRETS) if env == "dev" else values


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="preread", namespace="preread", is_install=True)
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    env = str(request.param)
    return env, render(env_values(env))


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: c
        for name, d in by_kind(docs, "Deployment").items()
        for c in d["spec"]["template"]["spec"]["containers"]
    }


def manifest_variables(docs: list[dict[str, Any]]) -> set[str]:
    names = {e["name"] for c in containers(docs).values() for e in c.get("env", [])}
    for cm in by_kind(docs, "ConfigMap").values():
        names |= set(cm.get("data", {}))
    return names


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_lint_is_clean(env: str) -> None:
    report = helm.lint(str(CHART), env_values(env), strict=True)
    assert report["errors"] == []
    # severity 1 is INFO ("icon is recommended"); warnings and errors are not allowed
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_every_manifest_validates_against_kubernetes(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    for version in KUBE_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_can_fail(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    deployment = json.loads(json.dumps(next(d for d in docs if d["kind"] == "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_the_workloads(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    env, docs = rendered
    deployments = by_kind(docs, "Deployment")
    pools = [p["name"] for p in env_values(env).get("workers", {}).get("gpuPools", [])]
    assert set(deployments) == {
        "preread-api",
        "preread-watcher",
        "preread-worker-cpu",
        *(f"preread-worker-{p}" for p in pools),
    }
    assert deployments["preread-watcher"]["spec"]["replicas"] == 2
    budgets = by_kind(docs, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/preread", "/tmp"} <= mounts  # writable places on a read-only root
        assert container["resources"]["requests"], name
        assert container["readinessProbe"], name


def test_probes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    by_name = containers(docs)
    api = by_name["preread-api"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    watcher = by_name["preread-watcher"]
    assert watcher["readinessProbe"]["exec"]["command"] == ["preread", "health", "ready", "watch"]
    assert watcher["livenessProbe"]["exec"]["command"] == ["preread", "health", "leader"]
    for name, container in by_name.items():
        if name.startswith("preread-worker-"):
            probe = container["readinessProbe"]["exec"]["command"]
            assert probe == ["preread", "health", "ready", "worker"]


def test_gpu_pools_get_a_gpu_each_and_their_nodes(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    env, docs = rendered
    deployments = by_kind(docs, "Deployment")
    for pool in env_values(env).get("workers", {}).get("gpuPools", []):
        deployment = deployments[f"preread-worker-{pool['name']}"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert deployment["spec"]["replicas"] == pool["replicas"]
        assert container["command"] == ["preread", "worker", "--gpu", "0"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["image"].endswith("-gpu")
        assert pod["nodeSelector"] == pool["nodeSelector"]
        assert pod["tolerations"] == pool["tolerations"]
    cpu = deployments["preread-worker-cpu"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert not cpu["image"].endswith("-gpu")


def test_secrets_are_made_only_in_dev(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    env, docs = rendered
    secrets = by_kind(docs, "Secret")
    assert bool(secrets) == (env == "dev")
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in containers(docs).values()
        for e in c["env"]
        if "valueFrom" in e
    }
    expected = set(secrets) if env == "dev" else {env_values(env)["secrets"]["existingSecret"]}
    assert refs == expected
    for cm in by_kind(docs, "ConfigMap").values():  # no credential in the ConfigMap
        assert not [k for k in cm["data"] if "PASSWORD" in k or "DATABASE_URL" in k]


def test_variables_images_commands_and_ports_exist(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    names = manifest_variables(docs)
    assert {"PREREAD_DATABASE_URL", "PREREAD_ORTHANC_URL"} <= names
    assert unknown_settings(names) == []
    images = [c["image"] for c in containers(docs).values()]
    assert image_problems(images, project_version()) == []
    for name, container in containers(docs).items():
        assert command_problems(container["command"]) == [], name
    api = containers(docs)["preread-api"]
    (port,) = api["ports"]
    assert str(port["containerPort"]) == option_value(api["command"], "--port")
    (settings,) = by_kind(docs, "ConfigMap").values()
    assert settings["data"]["PREREAD_ORTHANC_URL"].endswith(f":{ORTHANC['HttpPort']}")
    for node in walk(docs):  # nothing says "latest"
        if isinstance(node, dict) and isinstance(node.get("image"), str):
            assert not node["image"].endswith(":latest")


def test_a_made_up_setting_is_caught() -> None:
    values = merged(env_values("prod"), {"config": {"PREREAD_ORTHANC_PASWORD_TYPO": "x"}})
    assert unknown_settings(manifest_variables(render(values))) == ["PREREAD_ORTHANC_PASWORD_TYPO"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secrets": {"existingSecret": ""}}, "secrets.existingSecret"),
        ({"signingKeys": {"existingSecret": ""}}, "needs signingKeys.existingSecret"),
        ({"config": {"PREREAD_DATABASE_URL": "postgresql://x"}}, "is a credential"),
        ({"config": {"ORTHANC_URL": "http://x"}}, "only PREREAD_* settings"),
        ({"image": {"tag": "latest"}}, "never latest"),
        ({"workers": {"gpuPools": [{"name": "A100", "replicas": 1}]}}, "not a DNS label"),
    ],
)
def test_the_chart_refuses_unsafe_values(change: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(merged(env_values("prod"), change))


def test_dev_needs_its_credentials_given() -> None:
    values: dict[str, Any] = yaml.safe_load((CHART / "values-dev.yaml").read_text())
    with pytest.raises(helm.HelmError, match=re.escape("secrets.values.databaseUrl")):
        render(values)
