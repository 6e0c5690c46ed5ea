"""Security and wiring properties of the rendered Helm chart (charts/sightline).

Renders the chart with `helm template` (scripts/install_k8s_tools.sh puts helm in .tools/bin) and checks
what a reviewer would otherwise check by eye: hardened pods, probes, the NetworkPolicy graph, autoscaling.
Schema validation of the same manifests is scripts/validate_k8s.sh.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sightline"
HELM = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".tools" / "bin"))

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(HELM is None, reason="helm not installed (run scripts/install_k8s_tools.sh)"),
]

KEDA_ON = ["--set", "keda.enabled=true", "--set", "redis.kedaAddress=redis:6379", "--set", "redis.passwordKey=pw"]
PROFILES = {
    "default": [],
    "gpu+keda": ["-f", str(CHART / "values-gpu.yaml"), *KEDA_ON],
    "dev": ["-f", str(CHART / "values-dev.yaml")],
}
PYTHON_SERVICES = ["ingest", "search", "hotlist", "audit", "identity", "retention", "tracker", "portal", "console"]
GRPC_SERVICES = PYTHON_SERVICES[:7]

Manifest = dict[str, Any]


def render(*args: str) -> list[Manifest]:
    assert HELM is not None
    out = subprocess.run(
        [HELM, "template", "sl", str(CHART), "--namespace", "sightline", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=list(PROFILES))
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(*PROFILES[request.param])


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def component(m: Manifest) -> str:
    return m["metadata"]["labels"]["app.kubernetes.io/component"]


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest, Manifest]]:
    for dep in of_kind(manifests, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        for c in pod["containers"]:
            yield component(dep), pod, c


def test_every_component_is_deployed(manifests: list[Manifest]) -> None:
    deployed = {component(d) for d in of_kind(manifests, "Deployment").values()}
    assert deployed == {*PYTHON_SERVICES, "triton"}


def test_pods_are_hardened(manifests: list[Manifest]) -> None:
    for name, pod, c in containers(manifests):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp, name
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
        assert "limits" in c["resources"] and "requests" in c["resources"], name


def test_service_accounts_do_not_mount_tokens(manifests: list[Manifest]) -> None:
    accounts = of_kind(manifests, "ServiceAccount")
    assert len(accounts) == 10
    assert all(sa["automountServiceAccountToken"] is False for sa in accounts.values())


def test_probes(manifests: list[Manifest]) -> None:
    for name, _, c in containers(manifests):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in c, f"{name} lacks {probe}"
        if name in GRPC_SERVICES:
            # The serving port is TLS only; the kubelet's gRPC probes (no TLS) ask the plain health-only port.
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["SIGHTLINE_HEALTH_PORT"] == str(ports["health"]) and ports["health"] != ports["grpc"], name
            assert c["readinessProbe"]["grpc"]["port"] == ports["health"], name
            assert c["livenessProbe"]["grpc"]["port"] == ports["health"], name
        elif name == "triton":
            assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        else:
            assert "httpGet" in c["readinessProbe"], name


def test_every_service_has_a_metrics_port(manifests: list[Manifest]) -> None:
    for name, _, c in containers(manifests):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == (8002 if name == "triton" else 9464), name


def test_metrics_are_served_and_scraped(manifests: list[Manifest]) -> None:
    for dep in of_kind(manifests, "Deployment").values():
        name = component(dep)
        port = "8002" if name == "triton" else "9464"
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == port, name
        if name != "triton":
            assert env_of(manifests, name)["SIGHTLINE_METRICS_PORT"]["value"] == port


def policy_for(manifests: list[Manifest], name: str) -> Manifest:
    return next(p for p in of_kind(manifests, "NetworkPolicy").values() if component(p) == name)


def peer_components(rule: Manifest, key: str) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in rule.get(key, [])
        if "podSelector" in p and "namespaceSelector" not in p
    }


def test_default_deny_covers_the_release(manifests: list[Manifest]) -> None:
    deny = policy_for(manifests, "network-policy")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert "app.kubernetes.io/component" not in deny["spec"]["podSelector"]["matchLabels"]


def test_only_ingest_reaches_triton(manifests: list[Manifest]) -> None:
    triton = policy_for(manifests, "triton")["spec"]
    serving = [r for r in triton["ingress"] if any(p["port"] in (8000, 8001) for p in r["ports"])]
    assert len(serving) == 1
    assert "from" in serving[0], "an ingress rule without `from` would admit everyone"
    assert peer_components(serving[0], "from") == {"ingest"}
    assert all(p.keys() == {"podSelector"} for p in serving[0]["from"])
    # and no other component is allowed egress to it
    for name in PYTHON_SERVICES:
        egress = policy_for(manifests, name)["spec"]["egress"]
        reaches = set().union(*(peer_components(r, "to") for r in egress))
        assert ("triton" in reaches) == (name == "ingest"), name


def egress_ports(manifests: list[Manifest], name: str) -> set[int]:
    return {p["port"] for r in policy_for(manifests, name)["spec"]["egress"] for p in r["ports"]}


def test_service_egress_matches_the_brief(manifests: list[Manifest]) -> None:
    assert egress_ports(manifests, "portal") == {53, 27017, 6379}
    assert egress_ports(manifests, "search") == {53, 50054, 50055, 27017, 6379}
    assert egress_ports(manifests, "ingest") == {53, 8001, 27017, 6379}
    assert egress_ports(manifests, "hotlist") == {53, 6379, 27017, 50054}
    assert egress_ports(manifests, "console") == {53, 50051, 50052, 50053, 50054, 50055, 50056}
    assert egress_ports(manifests, "identity") == {53, 50054, 27017, 6379}
    assert egress_ports(manifests, "retention") == {53, 50054, 27017, 6379}
    assert egress_ports(manifests, "tracker") == {53, 27017, 6379}
    assert egress_ports(manifests, "triton") == {53}


def env_of(manifests: list[Manifest], name: str) -> dict[str, Manifest]:
    (c,) = [c for n, _, c in containers(manifests) if n == name]
    return {e["name"]: e for e in c.get("env", [])}


def test_address_variables_follow_connections(manifests: list[Manifest]) -> None:
    for name in PYTHON_SERVICES:
        assert ("SIGHTLINE_TRITON_URL" in env_of(manifests, name)) == (name == "ingest"), name
    search = env_of(manifests, "search")
    # the services' settings fields are <name>_address
    assert search["SIGHTLINE_AUDIT_ADDRESS"]["value"] == "sl-sightline-audit:50054"
    assert search["SIGHTLINE_IDENTITY_ADDRESS"]["value"] == "sl-sightline-identity:50055"
    assert env_of(manifests, "hotlist")["SIGHTLINE_MATCHER__GROUP"]["value"] == "hotlist-matcher"


KEYS = "/etc/sightline/keys"
TOKEN_PUBLIC = {"SIGHTLINE_TOKEN_PUBLIC_KEY_FILE": f"{KEYS}/token/token.pub.pem"}
WRITERS = ("ingest", "search", "hotlist", "retention", "identity")  # sign their calls to audit (service keys)


def service_key(name: str) -> dict[str, str]:
    return {"SIGHTLINE_SERVICE_KEY_FILE": f"{KEYS}/services/service_{name}_ed25519.pem"}


def mounted_files(pod: Manifest, c: Manifest) -> set[str]:
    """Paths of the Secret items the container can read (mounted read-only)."""
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v and not v["name"].startswith("tls")}
    files = set()
    for m in c["volumeMounts"]:
        if m["name"] in secrets:
            assert m["readOnly"] is True
            assert secrets[m["name"]]["defaultMode"] == 0o440
            files |= {f"{m['mountPath']}/{item['path']}" for item in secrets[m["name"]]["items"]}
    return files


def test_key_files_reach_only_their_services(manifests: list[Manifest]) -> None:
    data_master = {"SIGHTLINE_DATA_MASTER_KEY_FILE": f"{KEYS}/data/master.key"}
    expected = {
        "identity": {"SIGHTLINE_TOKEN_SIGNING_KEY_FILE": f"{KEYS}/token/token.pem", **TOKEN_PUBLIC,
                     **service_key("identity"), **data_master},
        "audit": {**TOKEN_PUBLIC, "SIGHTLINE_AUDIT_SIGNING_KEY_FILE": f"{KEYS}/audit/audit.pem",
                  "SIGHTLINE_AUDIT_PUBLIC_KEY_FILE": f"{KEYS}/audit/audit.pub.pem",
                  "SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR": f"{KEYS}/services"},
        "hotlist": {**TOKEN_PUBLIC, **service_key("hotlist")},
        **{name: {**TOKEN_PUBLIC, **data_master, **service_key(name)} for name in ("ingest", "search", "retention")},
    }
    writers_public = {f"{KEYS}/services/service_{name}_ed25519.pub.pem" for name in WRITERS}
    for name, pod, c in containers(manifests):
        if name in ("triton", "gateway"):
            assert mounted_files(pod, c) == set()
            continue
        env = {e["name"]: e.get("value") for e in c["env"]
               if e["name"].endswith(("_KEY_FILE", "_KEYS_DIR")) and not e["name"].startswith("SIGHTLINE_TLS_")}
        assert env == expected.get(name, TOKEN_PUBLIC), name
        # the pod can read exactly the files its variables name: no signing key where it is not used
        files = {path for var, path in env.items() if not var.endswith("_DIR")}
        assert mounted_files(pod, c) == files | (writers_public if name == "audit" else set()), name
    settings = next(m for m in manifests if m["kind"] == "ConfigMap")["data"]
    assert settings["SIGHTLINE_DEV_KEYS"] == "false"


def test_the_audit_trail_has_one_writer_pod(manifests: list[Manifest]) -> None:
    """The audit service refuses to sign a chain it did not write: a second pod, even for a rollout, would be
    reported as tampering (finding 3 of the outside attack)."""
    audit = next(d for d in of_kind(manifests, "Deployment").values() if component(d) == "audit")
    assert audit["spec"]["replicas"] == 1 and audit["spec"]["strategy"] == {"type": "Recreate"}
    assert not [m for m in manifests if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
                and m["spec"]["scaleTargetRef"]["name"] == audit["metadata"]["name"]]
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render("--set", "services.audit.replicas=2")
    assert "only writer" in failed.value.stderr


def test_unknown_key_fails_to_render() -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render("--set", "services.search.keys={token-public,nope}")
    assert 'services.search.keys names "nope"' in failed.value.stderr


def test_triton_never_loads_models_over_its_api(manifests: list[Manifest]) -> None:
    """Finding 1 of the outside attack: a model loaded over Triton's API runs its own code."""
    triton = next(c for name, _, c in containers(manifests) if name == "triton")
    assert "--model-control-mode=none" in triton["args"]
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render("--set", "triton.extraArgs={--model-control-mode=explicit}")
    assert "model loading over the API stays off" in failed.value.stderr


def test_disruption_budgets_and_autoscalers() -> None:
    manifests = render()
    deployments = {component(d) for d in of_kind(manifests, "Deployment").values()}
    assert {component(p) for p in of_kind(manifests, "PodDisruptionBudget").values()} == deployments
    # retention runs a single sweeper, tracker a single consumer, audit a single writer; everything else
    # autoscales on CPU without KEDA
    hpas = {component(h) for h in of_kind(manifests, "HorizontalPodAutoscaler").values()}
    assert hpas == deployments - {"retention", "tracker", "audit"}


def test_keda_scales_hotlist_on_stream_lag_and_triton_on_queue_time() -> None:
    manifests = render(*KEDA_ON)
    scaled = {component(s): s["spec"]["triggers"] for s in of_kind(manifests, "ScaledObject").values()}
    assert set(scaled) == {"hotlist", "triton"}
    assert scaled["hotlist"][0]["type"] == "redis-streams"
    assert scaled["hotlist"][0]["metadata"]["stream"] == "sightline:passes:v1"  # the matcher reads passes
    assert scaled["triton"][0]["type"] == "prometheus"
    assert "nv_inference_queue_duration_us" in scaled["triton"][0]["metadata"]["query"]
    hpas = {component(h) for h in of_kind(manifests, "HorizontalPodAutoscaler").values()}
    assert not hpas & set(scaled), "a workload must not have both a ScaledObject and an HPA"


def test_gpu_profile_schedules_triton_on_a_gpu() -> None:
    manifests = render("-f", str(CHART / "values-gpu.yaml"))
    (triton,) = [c for name, _, c in containers(manifests) if name == "triton"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-config-name=gpu" in triton["args"]
    pod = next(d for d in of_kind(manifests, "Deployment").values() if component(d) == "triton")
    assert pod["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    (cpu_triton,) = [c for name, _, c in containers(render()) if name == "triton"]
    assert "nvidia.com/gpu" not in cpu_triton["resources"]["limits"]
    assert not any(a.startswith("--model-config-name") for a in cpu_triton["args"])


def test_existing_secrets_are_used_and_none_created_by_default() -> None:
    manifests = render()
    assert not of_kind(manifests, "Secret")
    ingest = env_of(manifests, "ingest")
    assert ingest["SIGHTLINE_MONGO_URI"]["valueFrom"]["secretKeyRef"]["name"] == "sightline-mongodb"
    assert ingest["SIGHTLINE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "sightline-redis"
    assert not of_kind(manifests, "Job")  # storage users are the operator's unless storageUsers.provision


def test_each_service_connects_to_mongodb_and_redis_as_its_own_user(manifests: list[Manifest]) -> None:
    """Finding 7: one database user per service: each service's connection string is its own key."""
    for name in PYTHON_SERVICES:
        env = env_of(manifests, name)
        for variable in ("SIGHTLINE_MONGO_URI", "SIGHTLINE_REDIS_URL"):
            if variable in env:
                assert env[variable]["valueFrom"]["secretKeyRef"]["key"] == name, (name, variable)
    assert "SIGHTLINE_MONGO_URI" not in env_of(manifests, "console")


def test_dev_profile_creates_per_service_users_and_provisions_them() -> None:
    """Finding 7: the dev Secrets hold one URI per service with its own user and a generated password, and a
    hook Job creates those users (with the matrix's privileges) before the services start."""
    manifests = render(*PROFILES["dev"])
    mongo = of_kind(manifests, "Secret")["sl-sightline-mongodb"]
    for service, encoded in mongo["data"].items():
        url = urlsplit(base64.b64decode(encoded).decode())
        assert (url.username, url.hostname) == (f"sightline-{service}", "mongodb") and len(url.password) == 32
    assert set(mongo["data"]) == {"audit", "hotlist", "identity", "ingest", "portal", "retention", "search",
                                  "tracker"}
    assert mongo["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"
    job = of_kind(manifests, "Job")["sl-sightline-storage-users"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:5] == ["python", "-m", "services.cli", "storage", "provision"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policy = of_kind(manifests, "NetworkPolicy")["sl-sightline-storage-users"]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {53, 27017, 6379}


def test_unknown_connection_fails_to_render() -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render("--set", "services.search.connectsTo={mongodb,nowhere}")
    assert '"nowhere", which is neither mongodb, redis nor an enabled component' in failed.value.stderr


def test_edge_profile_runs_the_gateway_alone_with_a_spool_volume() -> None:
    manifests = render("-f", str(CHART / "values-edge.yaml"))
    deployments = of_kind(manifests, "Deployment")
    assert {component(d) for d in deployments.values()} == {"gateway"}
    dep = next(iter(deployments.values()))
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    c = pod["containers"][0]
    assert c["command"][-2:] == ["--config", "/etc/sightline/gateway/site.yaml"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    claim = of_kind(manifests, "PersistentVolumeClaim")[f"{dep['metadata']['name']}-spool"]
    assert {"name": "spool", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in pod["volumes"]
    assert {"name": "spool", "mountPath": "/var/lib/sightline-gateway"} in c["volumeMounts"]
    site = yaml.safe_load(of_kind(manifests, "ConfigMap")[dep["metadata"]["name"]]["data"]["site.yaml"])
    assert site["spool"]["path"] == "/var/lib/sightline-gateway/spool.db"
    assert site["ingest"]["target"] == "ingest.sightline.example.org:50051"
    from services.gateway.config import SiteConfig

    site["cameras"][0]["secret_file"] = __file__  # the mounted Secret, here any readable file
    SiteConfig.model_validate(site)  # what the chart renders is a valid site configuration
    assert dep["metadata"]["name"] in of_kind(manifests, "NetworkPolicy")


def test_gateway_in_a_full_release_targets_its_ingest() -> None:
    camera = ["--set", "gateway.enabled=true", "--set", "gateway.siteId=s1",
              "--set", "gateway.cameras[0].camera_id=c1", "--set", "gateway.cameras[0].secret_file=/x",
              "--set", "gateway.cameras[0].source.type=folder", "--set", "gateway.cameras[0].source.path=/drop"]
    manifests = render(*camera)
    site = yaml.safe_load(next(m for m in of_kind(manifests, "ConfigMap").values()
                               if component(m) == "gateway")["data"]["site.yaml"])
    assert site["ingest"]["target"] == "sl-sightline-ingest:50051"


def test_every_service_serves_tls_from_its_own_secret_mounted_read_only(manifests: list[Manifest]) -> None:
    """Issue #17: each Python service's certificate, key and CA come from its own Secret, mounted read-only;
    ingest requires client certificates (camera gateways); the web front ends probe over HTTPS."""
    for name, pod, c in containers(manifests):
        if name in ("triton", "gateway"):
            continue
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SIGHTLINE_TLS_CERT_FILE"] == "/etc/sightline/tls/tls.crt", name
        assert env["SIGHTLINE_TLS_KEY_FILE"] == "/etc/sightline/tls/tls.key", name
        assert env["SIGHTLINE_TLS_CA_FILE"] == "/etc/sightline/tls/ca.crt", name
        volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert volume["secret"]["secretName"] == f"sl-sightline-{name}-tls" and volume["secret"]["defaultMode"] == 0o440
        mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
        assert mount["readOnly"] is True and mount["mountPath"] == "/etc/sightline/tls"
        assert (env.get("SIGHTLINE_TLS_REQUIRE_CLIENT_CERT") == "true") == (name == "ingest"), name
        if name in ("portal", "console"):
            assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS", name
    triton = next(c for name, _, c in containers(manifests) if name == "triton")
    assert "--grpc-use-ssl=true" in triton["args"]  # ingest's frames to Triton: TLS too


def test_cert_manager_issues_one_certificate_per_service() -> None:
    certificates = [m for m in render("--set", "tls.certManager.enabled=true") if m["kind"] == "Certificate"]
    assert {c["spec"]["secretName"] for c in certificates} == {f"sl-sightline-{n}-tls"
                                                               for n in [*PYTHON_SERVICES, "triton"]}
    for cert in certificates:
        name = cert["metadata"]["name"]
        assert name in cert["spec"]["dnsNames"] and cert["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
        assert cert["spec"]["renewBefore"] == "720h" and "server auth" in cert["spec"]["usages"]
