"""deploy/kubernetes, rendered offline: `kubectl kustomize`, the Kubernetes schemas, the wiring.

No Kubernetes server runs here. The base is rendered as `kubectl apply -k` would (in a copy,
with freshly generated CURVE keys, since keys are never committed), every object is
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, offline), and the
wiring is checked: every address a pod is given names a Service and a port that exist,
every Secret and ConfigMap a pod uses exists (with the keys it reads), and the probes use
ports the container declares.
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import ROOT, require

DEPLOY = ROOT / "deploy" / "kubernetes"
KEYS = ("broker", "sink", "camera", "worker")
# per command: the FRAMEBROKER_* variables that name a host, and the ports used there
ROLE_PORTS = {  # what each command's clients reach on its Service
    "produce": {"FRAMEBROKER_BROKER": {5555, 5558}},
    "consume": {"FRAMEBROKER_BROKER": {5556, 5560}, "FRAMEBROKER_SINK": {5559}},
}


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[dict]:
    require(shutil.which("kubectl") is not None, "kubectl (Debian's kubernetes-client)")
    copy = tmp_path_factory.mktemp("k8s") / "kubernetes"
    shutil.copytree(DEPLOY, copy)
    keys = [str(copy / "base" / "keys" / name) for name in KEYS]
    subprocess.run(
        [sys.executable, "-m", "framebroker", "keys", "generate", *keys],
        check=True,
        capture_output=True,
    )
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(copy)], check=True, capture_output=True, text=True
    ).stdout
    (copy.parent / "all.yaml").write_text(rendered)
    return [o for o in yaml.safe_load_all(rendered) if o]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def test_every_object_validates_against_the_kubernetes_schemas(objects, tmp_path):
    import kubernetes_validate

    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Service", "StatefulSet"]


def test_the_shape_the_issue_asks_for(objects):
    services = by_kind(objects, "Service")
    sets, deployments = by_kind(objects, "StatefulSet"), by_kind(objects, "Deployment")
    assert services["broker"]["spec"]["clusterIP"] == "None"  # the broker set
    assert sets["broker"]["spec"]["serviceName"] == "broker"
    assert services["sink"]["spec"]["clusterIP"] == "None"  # the sink set
    assert deployments["sink"]["spec"]["replicas"] >= 2
    assert "volumeClaimTemplates" in sets["postgres"]["spec"]
    assert {"camera-pattern", "camera-lobby", "detectors"} <= set(deployments)
    for w in workloads(objects):
        pod = w["spec"]["template"]
        for c in pod["spec"]["containers"]:
            assert c["resources"]["requests"], w["metadata"]["name"]
        if w["metadata"]["name"] != "postgres":
            assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
            port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
            assert port in {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    for name in ("detectors", *(n for n in deployments if n.startswith("camera-"))):
        volumes = deployments[name]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}} in volumes


def service_ports(service: dict) -> set[int]:
    return {p["port"] for p in service["spec"]["ports"]}


def selects(service: dict, workload: dict) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_every_address_names_a_service_and_port_that_exist(objects):
    services = by_kind(objects, "Service")
    secrets = by_kind(objects, "Secret")
    for service in services.values():  # each Service reaches a workload's named ports
        (target,) = [w for w in workloads(objects) if selects(service, w)]
        named = {
            p["name"]
            for c in target["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    checked = 0
    for w in workloads(objects):
        for c in w["spec"]["template"]["spec"]["containers"]:
            role = c.get("args", [""])[0]
            for var in c.get("env", []):
                wanted = ROLE_PORTS.get(role, {}).get(var["name"])
                if wanted is None:
                    continue
                assert var["value"] in services, f"{var['value']} is no Service"
                assert wanted <= service_ports(services[var["value"]])
                checked += 1
    assert checked >= 4
    url = base64.b64decode(secrets["framebroker-db"]["data"]["url"]).decode()
    db = urlsplit(url)
    assert db.scheme == "postgresql" and db.port in service_ports(services[db.hostname])
    user = base64.b64decode(secrets["postgres"]["data"]["POSTGRES_PASSWORD"]).decode()
    assert db.password == user  # the sinks' URL matches the database's password


def test_every_secret_and_configmap_used_exists(objects):
    secrets, maps = by_kind(objects, "Secret"), by_kind(objects, "ConfigMap")
    used = 0
    for w in workloads(objects):
        spec = w["spec"]["template"]["spec"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
                used += 1
        for c in spec["containers"]:
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])
            }
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert (
                        ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]]["data"]
                    )
                if "configMapKeyRef" in ref:
                    assert (
                        ref["configMapKeyRef"]["key"]
                        in maps[ref["configMapKeyRef"]["name"]]["data"]
                    )
                    used += 1
            for ref in c.get("envFrom", []):
                assert ref["secretRef"]["name"] in secrets
    assert used >= 8


def test_probes_use_the_ports_and_health_checks_of_the_image(objects):
    for w in workloads(objects):
        for c in w["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c[kind]
                for action in ("tcpSocket", "httpGet"):
                    if action in probe:
                        assert probe[action]["port"] in ports, (w["metadata"]["name"], kind)
                if "exec" in probe and c["image"].startswith("framebroker"):
                    command = probe["exec"]["command"]
                    assert command == ["framebroker-healthcheck", c["args"][0]]


def test_cameras_yaml_is_written_from_the_camera_list():
    spec = importlib.util.spec_from_file_location("cameras", DEPLOY / "base" / "cameras.py")
    assert spec is not None and spec.loader is not None
    cameras = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cameras)
    listed = (DEPLOY / "base" / "cameras.env").read_text()
    assert (DEPLOY / "base" / "cameras.yaml").read_text() == cameras.render(listed)
    with pytest.raises(ValueError, match="needs both"):
        cameras.render("cam1.stream=a/b\n")
    with pytest.raises(ValueError, match="DNS label"):
        cameras.render("Cam_1.stream=a\nCam_1.source=test:\n")


def test_keys_are_never_committed():
    ignored = (DEPLOY / "base" / "keys" / ".gitignore").read_text().split()
    assert ignored[ignored.index("*") + 1 :] == ["!.gitignore", "!README.md"]
