"""`sightline ops status` against kmock's fake Kubernetes API server (an in-process HTTP server).

The official `kubernetes` client talks real HTTP to kmock, which serves the Deployments, Pods, events and
autoscalers put into it below, as a cluster would after `helm install sl charts/sightline -n sightline`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes import client

from services.cli import ops
from services.cli.__main__ import main

pytestmark = pytest.mark.unit

NS, RELEASE = "sightline", "sl"
DEPLOYMENTS = "apps/v1/deployments"
PODS = "v1/pods"
STARTED = "2026-01-05T09:00:00Z"


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "sightline", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": "sightline"}


def deployment(component: str, replicas: int = 2, updated: int | None = None, ready: int | None = None,
               available: int | None = None, total: int | None = None, generation: int = 3) -> dict[str, Any]:
    updated = replicas if updated is None else updated
    ready = updated if ready is None else ready
    selector = {k: v for k, v in labels(component).items() if k != "app.kubernetes.io/part-of"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"sl-sightline-{component}", "namespace": NS, "labels": labels(component),
                     "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels(component)},
                              "spec": {"containers": [{"name": component, "image": "sightline:1"}]}}},
        "status": {"observedGeneration": generation, "replicas": replicas if total is None else total,
                   "updatedReplicas": updated, "readyReplicas": ready,
                   "availableReplicas": ready if available is None else available},
    }


def pod(component: str, suffix: str, ready: bool = True, container_state: dict | None = None,
        restarts: int = 0, last_state: dict | None = None, phase: str = "Running",
        conditions: list[dict] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"sl-sightline-{component}-{suffix}", "namespace": NS, "labels": labels(component)},
        "spec": {"containers": [{"name": component, "image": "sightline:1"}]},
        "status": {
            "phase": phase,
            "conditions": conditions or [{"type": "Ready", "status": str(ready),
                                          "reason": None if ready else "ContainersNotReady"}],
            "containerStatuses": [{"name": component, "image": "sightline:1", "imageID": "", "ready": ready,
                                   "restartCount": restarts, "lastState": last_state or {},
                                   "state": container_state or {"running": {"startedAt": STARTED}}}],
        },
    }


def warning(pod_name: str, reason: str, message: str, at: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason, "message": message,
            "metadata": {"name": f"{pod_name}.{reason}.{at[-3:-1]}", "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": NS}, "lastTimestamp": at}


def hpa(component: str, current: int, desired: int, name: str | None = None,
        conditions: list[dict] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name or f"sl-sightline-{component}", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": f"sl-sightline-{component}"}, "minReplicas": 2, "maxReplicas": 8},
        "status": {"currentReplicas": current, "desiredReplicas": desired, "conditions": conditions or []},
    }


def put(server: kmock.KubernetesEmulator, resource: str, obj: dict[str, Any]) -> None:
    server.objects[resource, obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj


def healthy_release(server: kmock.KubernetesEmulator) -> None:
    for component in ("ingest", "search"):
        put(server, DEPLOYMENTS, deployment(component))
        for suffix in ("a1", "b2"):
            put(server, PODS, pod(component, suffix))
    put(server, "autoscaling/v2/horizontalpodautoscalers", hpa("ingest", 2, 2))


async def report_from(server: kmock.KubernetesEmulator) -> ops.Report:
    configuration = client.Configuration(host=str(server.url).rstrip("/"))
    with client.ApiClient(configuration) as api:
        return await asyncio.to_thread(ops.status, api, NS, RELEASE)


async def test_a_rolled_out_release_is_ready(kmock: kmock.KubernetesEmulator) -> None:
    healthy_release(kmock)
    report = await report_from(kmock)
    assert report.ok
    assert [(d.component, d.desired, d.updated, d.ready, d.available, d.rollout) for d in report.deployments] == [
        ("ingest", 2, 2, 2, 2, "complete"), ("search", 2, 2, 2, 2, "complete")]
    ingest = report.deployments[0]
    assert ingest.scaling == ops.Scaling("HorizontalPodAutoscaler", "sl-sightline-ingest", 2, 2, 2, 8, [])
    assert report.deployments[1].scaling is None
    # events and ScaledObjects were not served: reported as unreadable, not as failures
    assert report.notes == ["events not readable (no permission or not installed)",
                            "KEDA ScaledObjects not readable (no permission or not installed)"]
    # the client asked for the release's objects only
    assert kmock[kmock.resource(DEPLOYMENTS)][0].params["labelSelector"] == ops.release_selector(RELEASE)


async def test_a_stuck_rollout_names_the_pods_and_why(kmock: kmock.KubernetesEmulator) -> None:
    healthy_release(kmock)
    put(kmock, DEPLOYMENTS, deployment("hotlist", replicas=2, updated=1, ready=1, total=3))
    put(kmock, PODS, pod("hotlist", "old1"))
    put(kmock, PODS, pod("hotlist", "old2"))
    crashing = pod("hotlist", "new1", ready=False, restarts=4,
                   container_state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
                   last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}})
    put(kmock, PODS, crashing)
    put(kmock, DEPLOYMENTS, deployment("triton", replicas=1, updated=1, ready=0, available=0))
    put(kmock, PODS, pod("triton", "gpu1", ready=False, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}], container_state={
        "waiting": {"reason": "ContainerCreating"}}))
    probing = pod("search", "c3", ready=False)
    put(kmock, PODS, probing)
    for at, msg in (("2026-01-05T10:00:01Z", "Readiness probe failed: service unhealthy (responded with "
                                             "\"NOT_SERVING\")"),
                    ("2026-01-05T10:00:06Z", "Readiness probe failed: timeout: failed to connect service")):
        put(kmock, "v1/events", warning(probing["metadata"]["name"], "Unhealthy", msg, at))
    put(kmock, "v1/events", warning("unrelated-pod", "Unhealthy", "not ours", "2026-01-05T10:00:00Z"))

    report = await report_from(kmock)
    assert not report.ok
    by_component = {d.component: d for d in report.deployments}
    assert by_component["ingest"].ok
    hot = by_component["hotlist"]
    assert not hot.rolled_out and hot.rollout == "1 of 2 new replicas updated"
    assert hot.pods_not_ready == [ops.PodIssue("sl-sightline-hotlist-new1", "Running", [
        "container hotlist waiting: CrashLoopBackOff: back-off 40s restarting",
        "container hotlist restarted 4x, last exit: OOMKilled (exit code 137)"])]
    triton = by_component["triton"]
    assert triton.rolled_out is False and triton.rollout == "0 of 1 updated replicas available"
    assert triton.pods_not_ready[0].reasons == [
        "not scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "container triton waiting: ContainerCreating"]
    # rolled out and 2 of 2 ready, but a third pod fails its probe: listed, newest event first
    search = by_component["search"]
    assert search.ok
    assert search.pods_not_ready[0].reasons == [
        "container search running but not ready",
        "Unhealthy: Readiness probe failed: timeout: failed to connect service",
        'Unhealthy: Readiness probe failed: service unhealthy (responded with "NOT_SERVING")']


async def test_keda_scaled_object_reports_its_hpa_replicas(kmock: kmock.KubernetesEmulator) -> None:
    healthy_release(kmock)
    put(kmock, DEPLOYMENTS, deployment("hotlist", replicas=4))
    for suffix in ("a", "b", "c", "d"):
        put(kmock, PODS, pod("hotlist", suffix))
    put(kmock, "autoscaling/v2/horizontalpodautoscalers", hpa(
        "hotlist", 4, 6, name="keda-hpa-sl-sightline-hotlist",
        conditions=[{"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
                     "message": "the desired replica count is more than the maximum replica count"}]))
    put(kmock, "keda.sh/v1alpha1/scaledobjects", {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "sl-sightline-hotlist", "namespace": NS, "labels": labels("hotlist")},
        "spec": {"scaleTargetRef": {"name": "sl-sightline-hotlist"}, "minReplicaCount": 2, "maxReplicaCount": 6},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Active", "status": "True"}]}})
    report = await report_from(kmock)
    hot = next(d for d in report.deployments if d.component == "hotlist")
    assert hot.ok
    assert hot.scaling == ops.Scaling("ScaledObject", "sl-sightline-hotlist", 4, 6, 2, 6, [
        "ScalingLimited: the desired replica count is more than the maximum replica count", "a trigger is active"])
    assert "KEDA 4->6 (2-6)" in ops.format_text(report)


@pytest.fixture
def kubeconfig(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "ops", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "ops"}}],
    }))
    return str(path)


async def test_command_exit_status_and_json(kmock: kmock.KubernetesEmulator, kubeconfig: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ops", "status", "--kubeconfig", kubeconfig, "-n", NS, "-r", RELEASE]
    healthy_release(kmock)
    assert await asyncio.to_thread(main, args) == 0
    text = capsys.readouterr().out
    assert text.startswith('release "sl" in namespace "sightline": READY')
    assert "sl-sightline-ingest" in text and "HPA 2->2 (2-8)" in text

    put(kmock, DEPLOYMENTS, deployment("ingest", generation=4) | {"status": {"observedGeneration": 3}})
    assert await asyncio.to_thread(main, [*args, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    ingest = next(d for d in out["deployments"] if d["component"] == "ingest")
    assert ingest["ok"] is False and ingest["rollout"] == "waiting for the controller to observe the new spec"


async def test_no_deployments_or_no_cluster_is_not_ready(kmock: kmock.KubernetesEmulator, kubeconfig: str,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    put(kmock, PODS, pod("ingest", "x"))  # the kinds exist, the release has no Deployment
    put(kmock, DEPLOYMENTS, deployment("ingest") | {"metadata": {"name": "other", "namespace": "elsewhere"}})
    assert await asyncio.to_thread(main, ["ops", "status", "--kubeconfig", kubeconfig, "-r", RELEASE]) == 1
    assert "no Sightline Deployments with labels" in capsys.readouterr().out
    missing = str(tmp_path / "absent")
    assert main(["ops", "status", "--kubeconfig", missing]) == 1
    assert "cannot read the cluster" in capsys.readouterr().err


def test_rollout_state_follows_kubectl() -> None:
    assert ops.rollout_state(deployment("x")) == (True, "complete")
    assert ops.rollout_state(deployment("x", total=3)) == (False, "1 old replicas pending termination")
    stuck = deployment("x", updated=1)
    stuck["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                      "message": 'ReplicaSet "x-5d9" has timed out progressing.'}]
    assert ops.rollout_state(stuck) == (False, 'progress deadline exceeded: ReplicaSet "x-5d9" has timed out '
                                               "progressing.")
    assert ops.rollout_state(deployment("x", replicas=0)) == (True, "complete")
