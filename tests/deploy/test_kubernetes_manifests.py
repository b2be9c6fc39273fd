"""deploy/kubernetes: every manifest the kustomization lists is valid for a pinned Kubernetes
version (kubernetes-validate's schemas, strict: unknown fields are errors), and together they
make the topology docs/deployment.md describes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests promise to work on (docs/deployment.md).
KUBERNETES_VERSION = "1.31.0"
PROVIDER_LABELS = {"app.kubernetes.io/name": "school-idp", "app.kubernetes.io/component": "provider"}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    return loaded


def rendered() -> list[dict[str, Any]]:
    """Return the documents of every resource the kustomization lists, in its order."""
    documents = []
    for name in kustomization()["resources"]:
        documents += [doc for doc in yaml.safe_load_all((KUSTOMIZE_DIR / name).read_text()) if doc]
    return documents


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered()}


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def test_the_kustomization_lists_every_manifest_in_the_folder() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in KUSTOMIZE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("document", rendered(), ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_manifest_is_valid_for_the_pinned_kubernetes_version(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_probe(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    broken = copy.deepcopy(resources["Deployment", "idp"])
    pod_spec(broken)["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_provider_runs_two_or_more_probed_replicas_with_resources(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    provider = resources["Deployment", "idp"]
    assert provider["spec"]["replicas"] >= 2
    assert provider["spec"]["template"]["metadata"]["labels"] == PROVIDER_LABELS
    (container,) = pod_spec(provider)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_worker_deployment_runs_idp_worker(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    (container,) = pod_spec(resources["Deployment", "idp-worker"])["containers"]
    assert container["args"] == ["idp", "worker"]
    assert resources["Job", "idp-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "idp",
        "db",
        "upgrade",
    ]


def test_service_pdb_and_hpa_select_the_provider(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert resources["Service", "idp"]["spec"]["selector"] == PROVIDER_LABELS
    assert resources["PodDisruptionBudget", "idp"]["spec"]["selector"]["matchLabels"] == PROVIDER_LABELS
    hpa = resources["HorizontalPodAutoscaler", "idp"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "idp"}
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_ingress_serves_the_issuer_over_tls_to_the_service(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    ingress = resources["Ingress", "idp"]["spec"]
    settings = resources["ConfigMap", "idp-settings"]["data"]
    (rule,) = ingress["rules"]
    assert settings["IDP_ISSUER"] == f"https://{rule['host']}"
    assert ingress["tls"][0]["hosts"] == [rule["host"]]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "idp", "port": {"name": "http"}}
    # The Ingress controller is the one proxy in front of the pods.
    assert settings["IDP_TRUSTED_PROXIES"] == "1"


def test_secret_holds_only_placeholders(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    secret = resources["Secret", "idp-secrets"]["stringData"]
    assert {"IDP_DATABASE_URL", "IDP_SECRET_KEY", "IDP_KEYS_PASSPHRASE", "IDP_SMTP_URL"} <= set(secret)
    assert all("REPLACE-ME" in value for name, value in secret.items() if name != "IDP_REDIS_URL")


def test_every_pod_runs_unprivileged(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    pods = [doc for doc in resources.values() if doc["kind"] in {"Deployment", "Job"}]
    assert len(pods) == 3
    for resource in pods:
        spec = pod_spec(resource)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
