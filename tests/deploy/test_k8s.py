"""deploy/: the Kubernetes manifests validate against Kubernetes' own schemas (strict: no
unknown field), and agree with the service they run (port, probes, settings, metric, shutdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.metrics import ServiceMetrics
from service.routes import router
from service.server import HOOKS_S
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes still supported upstream when this was written, and the newest known.
VERSIONS = ["1.31", kubernetes_validate.latest_version()]


def documents(folder: Path) -> dict[str, dict[str, Any]]:
    """{kind: document} of every manifest in `folder` (one of each kind here)."""
    docs = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str):
    docs = documents(K8S)
    assert set(docs) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs.values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_mistake():
    """The check can fail: a misspelt field is an error under strict validation."""
    deployment = documents(K8S)["Deployment"]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def _api(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (api,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(api)


def test_the_deployment_agrees_with_the_service():
    docs = documents(K8S)
    api = _api(docs)
    routes = {getattr(route, "path", None) for route in router.routes}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] in routes
    args = api["args"]
    port = int(args[args.index("--port") + 1])
    assert api["ports"][0]["containerPort"] == port == Settings().port
    # Every EMODISTILL_ variable is a setting (a typo would be ignored by the service).
    env = {e["name"]: e.get("value") for e in api["env"]}
    fields = {f"EMODISTILL_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields
    # Kubernetes waits for preStop, the grace in which the service still accepts requests,
    # the end of open live streams, and the drain, before it kills the pod.
    pre_stop_s = float(api["lifecycle"]["preStop"]["exec"]["command"][1])
    grace_s = float(env["EMODISTILL_SHUTDOWN_GRACE_S"])
    drain_s = float(env["EMODISTILL_DRAIN_S"])
    period_s = docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop_s + grace_s + HOOKS_S + drain_s < period_s
    security = api["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert docs["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert api["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_autoscaler_metric_is_one_the_service_exports():
    docs = documents(K8S)
    (metric,) = docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
    metrics = ServiceMetrics({"name": "emodistill", "version": "1"})
    exported = {m.name for m in metrics.registry.collect()}
    assert metric["pods"]["metric"]["name"] in exported
