"""``sightline ops status``: is a Sightline release rolled out and ready in Kubernetes?

Reads the release's Deployments, their Pods, Warning events, HorizontalPodAutoscalers and KEDA ScaledObjects
through the Kubernetes API (kubeconfig, or the in-cluster service account) and reports per Deployment the
desired / updated / ready / available replicas, whether the rollout is complete (the same test as `kubectl
rollout status`), each pod that is not ready and why (container waiting reasons, last termination, failed
probes and scheduling failures from events), and the autoscaler's current and desired replicas where the
caller may read them. Exit status 0 when every Deployment is rolled out and ready, 1 otherwise (including when
the cluster cannot be asked or the release has no Deployments).

Everything but `fetch` is pure: it works on the JSON form of the objects (as `kubectl get -o json` prints).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

Obj = dict[str, Any]
# Warning events worth showing next to a pod (newest first, at most this many per pod).
POD_EVENT_REASONS = {"Unhealthy", "FailedScheduling", "FailedMount", "FailedCreatePodSandBox", "BackOff", "Failed"}
MAX_EVENTS_PER_POD = 3
MAX_MESSAGE = 200


@dataclass(frozen=True)
class PodIssue:
    pod: str
    phase: str
    reasons: list[str]


@dataclass(frozen=True)
class Scaling:
    kind: str  # HorizontalPodAutoscaler | ScaledObject
    name: str
    current: int | None
    desired: int | None
    min: int | None
    max: int | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    component: str
    desired: int
    updated: int
    ready: int
    available: int
    rolled_out: bool
    rollout: str
    pods_not_ready: list[PodIssue]
    scaling: Scaling | None

    @property
    def ok(self) -> bool:
        return self.rolled_out and self.ready >= self.desired and self.available >= self.desired


@dataclass(frozen=True)
class Report:
    namespace: str
    release: str
    deployments: list[DeploymentStatus]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.deployments) and all(d.ok for d in self.deployments)

    def to_json(self) -> Obj:
        return {"ok": self.ok, **asdict(self),
                "deployments": [{"ok": d.ok, **asdict(d)} for d in self.deployments]}


@dataclass(frozen=True)
class ClusterState:
    """What `fetch` read; None where the caller may not read it (or the API kind is not installed)."""

    deployments: list[Obj]
    pods: list[Obj]
    events: list[Obj] | None = None
    autoscalers: list[Obj] | None = None
    scaled_objects: list[Obj] | None = None


# --- pure logic -------------------------------------------------------------------------------------------


def release_selector(release: str) -> str:
    """The labels the chart puts on every object of a release (charts/sightline/templates/_helpers.tpl)."""
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/part-of=sightline"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None)


def rollout_state(deployment: Obj) -> tuple[bool, str]:
    """(complete, message), the checks of `kubectl rollout status` for a Deployment."""
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status", {})
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return False, "waiting for the controller to observe the new spec"
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return False, f"progress deadline exceeded: {_short(progressing.get('message', ''))}"
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < desired:
        return False, f"{updated} of {desired} new replicas updated"
    if (old := status.get("replicas", 0) - updated) > 0:
        return False, f"{old} old replicas pending termination"
    if (available := status.get("availableReplicas", 0)) < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, "complete"


def _matches(selector: Obj, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _event_time(event: Obj) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def pod_issue(pod: Obj, events: Iterable[Obj]) -> PodIssue | None:
    """Why the pod is not ready, or None when it is ready."""
    status = pod.get("status", {})
    ready = _condition(pod, "Ready")
    if ready and ready.get("status") == "True" and not pod["metadata"].get("deletionTimestamp"):
        return None
    reasons: list[str] = []
    if pod["metadata"].get("deletionTimestamp"):
        reasons.append("terminating")
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reasons.append(f"not scheduled: {_short(scheduled.get('message') or scheduled.get('reason', ''))}")
    for kind, statuses in (("init container", status.get("initContainerStatuses")),
                           ("container", status.get("containerStatuses"))):
        for c in statuses or []:
            state, last = c.get("state") or {}, c.get("lastState") or {}
            if waiting := state.get("waiting"):
                detail = f": {_short(waiting['message'])}" if waiting.get("message") else ""
                reasons.append(f"{kind} {c['name']} waiting: {waiting.get('reason', 'unknown')}{detail}")
            elif (terminated := state.get("terminated")) and kind == "container":
                reasons.append(f"{kind} {c['name']} terminated: {terminated.get('reason', '')} "
                               f"(exit code {terminated.get('exitCode')})")
            elif "running" in state and not c.get("ready") and kind == "container":
                reasons.append(f"{kind} {c['name']} running but not ready")
            if (previous := last.get("terminated")) and c.get("restartCount", 0):
                reasons.append(f"{kind} {c['name']} restarted {c['restartCount']}x, last exit: "
                               f"{previous.get('reason', '')} (exit code {previous.get('exitCode')})")
    seen: set[str] = set()
    for event in sorted(events, key=_event_time, reverse=True):
        line = f"{event.get('reason')}: {_short(event.get('message', ''))}"
        if line not in seen and len(seen) < MAX_EVENTS_PER_POD:
            seen.add(line)
            reasons.append(line)
    if not reasons and ready:
        reasons.append(f"not ready: {ready.get('reason') or 'no reason given'}")
    return PodIssue(pod["metadata"]["name"], status.get("phase", "Unknown"), reasons)


def _scaling(name: str, autoscalers: list[Obj], scaled_objects: list[Obj]) -> Scaling | None:
    hpa = next((h for h in autoscalers if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                and h["spec"]["scaleTargetRef"]["name"] == name), None)
    scaled = next((s for s in scaled_objects if s["spec"]["scaleTargetRef"]["name"] == name), None)
    if hpa is None and scaled is None:
        return None
    hpa_status = (hpa or {}).get("status", {})
    notes = [f"{c['type']}: {_short(c.get('message') or c.get('reason', ''))}"
             for c in (hpa or {}).get("status", {}).get("conditions") or []
             if (c["type"] in ("AbleToScale", "ScalingActive") and c["status"] == "False")
             or (c["type"] == "ScalingLimited" and c["status"] == "True")]
    if scaled is not None:
        ready = _condition(scaled, "Ready")
        if ready is None or ready.get("status") != "True":
            notes.insert(0, f"ScaledObject not ready: {_short((ready or {}).get('message', 'no Ready condition'))}")
        active = _condition(scaled, "Active")
        notes.append("a trigger is active" if active and active.get("status") == "True" else "no trigger active")
        spec = scaled["spec"]
        return Scaling("ScaledObject", scaled["metadata"]["name"], hpa_status.get("currentReplicas"),
                       hpa_status.get("desiredReplicas"), spec.get("minReplicaCount"), spec.get("maxReplicaCount"),
                       notes)
    assert hpa is not None
    return Scaling("HorizontalPodAutoscaler", hpa["metadata"]["name"], hpa_status.get("currentReplicas"),
                   hpa_status.get("desiredReplicas"), hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"],
                   notes)


def build_report(namespace: str, release: str, state: ClusterState) -> Report:
    notes = [f"{what} not readable (no permission or not installed)" for what, value in
             (("events", state.events), ("HorizontalPodAutoscalers", state.autoscalers),
              ("KEDA ScaledObjects", state.scaled_objects)) if value is None]
    if not state.deployments:
        notes.insert(0, f"no Sightline Deployments with labels {release_selector(release)} in {namespace}")
    pod_events: dict[str, list[Obj]] = {}
    for event in state.events or []:
        involved = event.get("involvedObject", {})
        if involved.get("kind") == "Pod" and event.get("reason") in POD_EVENT_REASONS:
            pod_events.setdefault(involved.get("name", ""), []).append(event)
    statuses = []
    for dep in sorted(state.deployments, key=lambda d: d["metadata"]["name"]):
        name, status = dep["metadata"]["name"], dep.get("status", {})
        rolled_out, message = rollout_state(dep)
        pods = [p for p in state.pods if _matches(dep["spec"]["selector"], p["metadata"].get("labels") or {})]
        issues = [i for p in sorted(pods, key=lambda p: p["metadata"]["name"])
                  if (i := pod_issue(p, pod_events.get(p["metadata"]["name"], []))) is not None]
        statuses.append(DeploymentStatus(
            name=name, component=(dep["metadata"].get("labels") or {}).get("app.kubernetes.io/component", name),
            desired=dep.get("spec", {}).get("replicas", 1), updated=status.get("updatedReplicas", 0),
            ready=status.get("readyReplicas", 0), available=status.get("availableReplicas", 0),
            rolled_out=rolled_out, rollout=message, pods_not_ready=issues,
            scaling=_scaling(name, state.autoscalers or [], state.scaled_objects or [])))
    return Report(namespace, release, statuses, notes)


def _scaling_cell(s: Scaling | None) -> str:
    if s is None:
        return "-"
    kind = "KEDA" if s.kind == "ScaledObject" else "HPA"
    current = "?" if s.current is None else s.current
    desired = "?" if s.desired is None else s.desired
    return f"{kind} {current}->{desired} ({s.min}-{s.max})"


def format_text(report: Report) -> str:
    verdict = "READY" if report.ok else "NOT READY"
    attention = sum(not d.ok for d in report.deployments)
    lines = [f'release "{report.release}" in namespace "{report.namespace}": {verdict}'
             + (f" ({attention} of {len(report.deployments)} deployments need attention)" if attention else "")]
    header = ("DEPLOYMENT", "DESIRED", "UPDATED", "READY", "AVAILABLE", "ROLLOUT", "SCALING")
    rows = [(d.name, str(d.desired), str(d.updated), str(d.ready), str(d.available), d.rollout,
             _scaling_cell(d.scaling)) for d in report.deployments]
    if rows:
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
        lines.append("")
        for row, dep in zip((header, *rows), (None, *report.deployments), strict=True):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
            if dep is None:
                continue
            for issue in dep.pods_not_ready:
                lines.append(f"  pod {issue.pod} ({issue.phase})")
                lines.extend(f"    - {reason}" for reason in issue.reasons)
            if dep.scaling is not None:
                lines.extend(f"  {dep.scaling.kind} {dep.scaling.name}: {note}" for note in dep.scaling.notes)
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)


# --- Kubernetes API ---------------------------------------------------------------------------------------


def connect(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An API client from kubeconfig (the file given, else KUBECONFIG or ~/.kube/config), else in-cluster."""
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except ConfigException as from_file:
        if kubeconfig is not None or context is not None:
            raise
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            raise ConfigException(f"no usable kubeconfig ({from_file}) and not running in a cluster") from None
        return client.ApiClient(configuration)


def _readable(call: Callable[[], list[Any]]) -> list[Any] | None:
    try:
        return call()
    except ApiException as exc:
        if exc.status in (401, 403, 404):
            return None
        raise


def fetch(api: client.ApiClient, namespace: str, release: str) -> ClusterState:
    selector = release_selector(release)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    as_json = api.sanitize_for_serialization
    events = _readable(lambda: core.list_namespaced_event(namespace, field_selector="type=Warning").items)
    hpas = _readable(lambda: client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace).items)
    return ClusterState(
        deployments=as_json(apps.list_namespaced_deployment(namespace, label_selector=selector).items),
        pods=as_json(core.list_namespaced_pod(namespace, label_selector=selector).items),
        events=None if events is None else as_json(events),
        # All of the namespace: KEDA's own HPA (keda-hpa-<name>) does not carry the release's labels.
        autoscalers=None if hpas is None else as_json(hpas),
        scaled_objects=_readable(lambda: client.CustomObjectsApi(api).list_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", label_selector=selector)["items"]),
    )


def status(api: client.ApiClient, namespace: str, release: str) -> Report:
    return build_report(namespace, release, fetch(api, namespace, release))


# --- command line -----------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("ops", help="operations tools for a Kubernetes install")
    commands = parser.add_subparsers(dest="ops_command", required=True)
    st = commands.add_parser("status", help="rollout and readiness of a release; exit 0 only when all is ready")
    st.add_argument("--namespace", "-n", default="sightline", help="namespace of the release (default: sightline)")
    st.add_argument("--release", "-r", default="sightline", help="Helm release name (default: sightline)")
    st.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
    st.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    st.add_argument("--json", action="store_true", help="print the report as one JSON object")
    st.set_defaults(handler=run_status)
    return parser


def run_status(args: argparse.Namespace) -> int:
    try:
        with connect(args.kubeconfig, args.context) as api:
            report = status(api, args.namespace, args.release)
    except (ApiException, ConfigException, HTTPError, OSError) as exc:
        reason = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
        print(f"sightline ops status: cannot read the cluster: {_short(reason)}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json()) if args.json else format_text(report))
    return 0 if report.ok else 1
