"""Plain Kubernetes manifests for a tagged notebook: what an ops team reviews, diffs and `kubectl apply`s.

- the pipeline run as a Job (the image's `jupyter-mlops run` on the notebook baked into it);
- `schedule`: the same Job as a CronJob (overlap forbidden, like the local scheduler's overlap policy);
- `sweep`: an Indexed Job whose pod `i` runs trial `i`, read from a ConfigMap by `JOB_COMPLETION_INDEX`;
- `model`: one Deployment + Service per variant (primary, canary, shadow) and a Gateway API HTTPRoute carrying the
  canary weight, the shadow as a RequestMirror filter.

Every pod runs as a non-root user without privilege escalation. The workspace (store, runs, model registry) is a
PersistentVolumeClaim mounted at /mlops, or, with an object-store artifacts URL, artifacts go there; credentials and
a team store URL only ever come by Secret reference: nothing secret is written into a manifest.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import MlopsError

IMAGE_NOTEBOOK_DIR = "/opt/mlops/notebook"  # where `jupyter-mlops build` puts the notebook in the image
WORKSPACE_MOUNT = "/mlops"
WORKSPACE = f"{WORKSPACE_MOUNT}/workspace"
SERVE_PORT = 8080
USER_ID = 1000  # the image's non-root user (see image.py)


@dataclass
class Target:
    """Where and how the pods run: image, namespace, resources, artifacts and the Secrets they may read."""

    image: str
    namespace: str = "default"
    cpu: str = "1"
    memory: str = "2Gi"
    workspace_claim: str | None = "mlops-workspace"  # None: an emptyDir (then use a team store and object storage)
    artifacts_url: str | None = None  # s3://bucket/prefix ... (fsspec); credentials from artifacts_secret
    artifacts_secret: str | None = None  # a Secret whose keys become env vars (AWS_ACCESS_KEY_ID, ...)
    store_secret: str | None = None  # a Secret with key `url`: MLOPS_STORE_URL (the team store)
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise MlopsError(f"--image must be an image reference like registry.example.com/team/model:1.0, got "
                             f"{self.image!r}")
        dns_label(self.namespace, "--namespace")
        for flag, value in (("--artifacts-secret", self.artifacts_secret), ("--store-secret", self.store_secret),
                            ("--pvc", self.workspace_claim)):
            if value is not None:
                dns_label(value, flag)
        if self.artifacts_url and "://" not in self.artifacts_url:
            raise MlopsError(f"--artifacts must be an object-store URL like s3://bucket/prefix, got "
                             f"{self.artifacts_url!r} (a volume is given with --pvc)")
        found = credentials_in_url(self.artifacts_url or "")
        if found:
            raise MlopsError(f"--artifacts holds credentials ({found}): give the bare URL and the credentials in a "
                             "Secret (--artifacts-secret NAME), so they never land in a manifest")


# query parameters that carry a credential in object-store URLs (S3 presigned, Azure SAS, GCS signed, fsspec's)
_SECRET_PARAMETER = re.compile(r"(secret|token|passw|signature|credential|(^|[_-])sig$|(^|[_-])key$|access[_-]?key|"
                               r"account[_-]?key|sas)", re.IGNORECASE)


def credentials_in_url(url: str) -> str | None:
    """What in a URL is a credential, said without repeating it; None for a bare URL."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "a user or token before `@`"
    secret = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAMETER.search(name)]
    if secret:
        return f"the query parameter `{secret[0]}`"
    return None


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns_label(value: str, what: str) -> str:
    if not _DNS_LABEL.match(value or ""):
        raise MlopsError(f"{what} `{value}` is not a valid Kubernetes name: lowercase letters, digits and '-', at "
                         "most 63 characters, starting and ending with a letter or digit")
    return value


def resource_name(*parts: str) -> str:
    """A DNS-1123 label made from free text (a notebook's file name, a model name)."""
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    return re.sub(r"-+", "-", text)[:63].rstrip("-") or "mlops"


def _labels(target: Target, app: str, component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "jupyter-mlops", **target.labels, **extra}


def _meta(target: Target, name: str, labels: dict[str, str]) -> dict:
    return {"name": name, "namespace": target.namespace, "labels": labels}


def _container(target: Target, name: str, command: list[str]) -> dict:
    env: list[dict] = [{"name": "MLOPS_WORKSPACE", "value": WORKSPACE}, {"name": "HOME", "value": "/tmp"}]
    if target.artifacts_url:
        env.append({"name": "MLOPS_ARTIFACTS_URL", "value": target.artifacts_url})
    if target.store_secret:
        env.append({"name": "MLOPS_STORE_URL",
                    "valueFrom": {"secretKeyRef": {"name": target.store_secret, "key": "url"}}})
    container = {
        "name": name, "image": target.image, "imagePullPolicy": "IfNotPresent", "command": command, "env": env,
        "resources": {"requests": {"cpu": target.cpu, "memory": target.memory},
                      "limits": {"memory": target.memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE_MOUNT},
                         {"name": "tmp", "mountPath": "/tmp"}],  # HOME: kernels' connection files, caches
    }
    if target.artifacts_secret:
        container["envFrom"] = [{"secretRef": {"name": target.artifacts_secret}}]
    return container


def _pod_spec(target: Target, container: dict, restart: str) -> dict:
    volume = ({"name": "workspace", "persistentVolumeClaim": {"claimName": target.workspace_claim}}
              if target.workspace_claim else {"name": "workspace", "emptyDir": {}})
    return {"restartPolicy": restart, "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                                "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container], "volumes": [volume, {"name": "tmp", "emptyDir": {}}]}


_UNITS = {"m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
          "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
          "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
          "Ei": Decimal(2) ** 60}


def _quantity(text: str) -> Decimal:
    from ..tags import QUANTITY

    match = QUANTITY.match(text)
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E") and suffix[1:]:
        return Decimal(match["number"]) * Decimal(10) ** int(suffix[1:])
    return Decimal(match["number"]) * _UNITS.get(suffix, Decimal(1))


def pod_hints(pipeline) -> dict[str, dict[str, str]]:
    """Kale's `limit:`/`annotation:`/`label:` tags of every step, for the one pod that runs them all: the largest
    limit asked for each resource, every annotation and label (a later step's value wins on the same key)."""
    merged: dict[str, dict[str, str]] = {}
    for step in pipeline.steps:
        for kind, values in step.pod.items():
            into = merged.setdefault(kind, {})
            for key, value in values.items():
                if kind == "limits" and key in into and _quantity(into[key]) >= _quantity(value):
                    continue
                into[key] = value
    return merged


def _with_pod_hints(template: dict, pod: dict[str, dict[str, str]] | None) -> dict:
    """A pod template with the notebook's pod hints: labels and annotations on the pod, limits on its container
    (cpu and memory as request and limit, so a hint above the default request stays schedulable)."""
    if not pod:
        return template
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**pod.get("labels", {}), **metadata.get("labels", {})}  # ours stay: selectors use them
    if pod.get("annotations"):
        metadata["annotations"] = {**metadata.get("annotations", {}), **pod["annotations"]}
    resources = template["spec"]["containers"][0]["resources"]
    for resource, value in pod.get("limits", {}).items():
        resources["limits"][resource] = value
        if resource in ("cpu", "memory"):
            resources["requests"][resource] = value
    return template


def _run_command(notebook_file: str, parameters: dict[str, Any]) -> list[str]:
    command = ["jupyter-mlops", "run", f"{IMAGE_NOTEBOOK_DIR}/{notebook_file}"]
    for name, value in parameters.items():
        command += ["-p", name, value if isinstance(value, str) else json.dumps(value)]
    return command


def run_job(target: Target, app: str, notebook_file: str, parameters: dict[str, Any],
            pod: dict[str, dict[str, str]] | None = None) -> dict:
    """`pod`: the notebook's pod hints (`pod_hints(pipeline)`)."""
    labels = _labels(target, app, "run")
    template = {"metadata": {"labels": labels},
                "spec": _pod_spec(target, _container(target, "pipeline", _run_command(notebook_file, parameters)),
                                  "Never")}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(target, resource_name(app, "run"), labels),
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 7 * 86400,
                     "template": _with_pod_hints(template, pod)}}


def cron_job(target: Target, app: str, notebook_file: str, parameters: dict[str, Any], cron: str,
             timezone: str = "UTC", pod: dict[str, dict[str, str]] | None = None) -> dict:
    job = run_job(target, app, notebook_file, parameters, pod)
    labels = _labels(target, app, "schedule")
    job["spec"]["template"]["metadata"]["labels"] = {**(pod or {}).get("labels", {}), **labels}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": _meta(target, resource_name(app, "schedule"), labels),
            "spec": {"schedule": cron, "timeZone": timezone,
                     "concurrencyPolicy": "Forbid",  # a tick is skipped while the previous run still runs
                     "startingDeadlineSeconds": 300,  # a tick missed by more than this is skipped, not run late
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 5,
                     "jobTemplate": {"metadata": {"labels": labels}, "spec": job["spec"]}}}


def check_every(seconds: float) -> str:
    """The cron that checks a trigger about every `seconds`: every N minutes below an hour, else every N hours."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours = min(23, max(1, round(seconds / 3600)))
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"


def trigger_cron_job(target: Target, app: str, schedule: str, every: float,
                     pod: dict[str, dict[str, str]] | None = None) -> dict:
    """A triggered schedule's checks (data change, drift) on the cluster: a CronJob whose pod runs
    `jupyter-mlops scheduler --once --only SCHEDULE` in the notebook's image against the team store; a change
    found there fires the run in that pod, claimed in the store like every other tick."""
    labels = _labels(target, app, "trigger")
    container = _container(target, "check", ["jupyter-mlops", "scheduler", "--once", "--only", schedule])
    template = {"metadata": {"labels": labels}, "spec": _pod_spec(target, container, "Never")}
    job = {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "template": _with_pod_hints(template, pod)}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": _meta(target, resource_name(app, "trigger"), labels),
            "spec": {"schedule": check_every(every), "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": 300, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 5,
                     "jobTemplate": {"metadata": {"labels": labels}, "spec": job}}}


def rollout_controller(target: Target, model: str) -> list[dict]:
    """A progressive rollout's controller on the cluster: a CronJob whose pod runs `jupyter-mlops scheduler --once
    --rollout MODEL` every minute against the team store, with a service account allowed only what the
    controller does: read the variants' EndpointSlices, patch the HTTPRoute, and at the end roll the primary
    Deployment and delete the canary's Deployment and Service."""
    app = resource_name(model)
    name = resource_name(model, "rollout")
    labels = _labels(target, app, "rollout")
    rules = [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list"]},
             {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"],
              "verbs": ["get", "create", "patch"]},
             {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "patch", "delete"]},
             {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch", "delete"]}]
    container = _container(target, "controller", ["jupyter-mlops", "scheduler", "--once", "--rollout", model])
    spec = _pod_spec(target, container, "Never")
    spec.update(serviceAccountName=name, automountServiceAccountToken=True)  # it speaks to the API server
    job = {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
           "template": {"metadata": {"labels": labels}, "spec": spec}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(target, name, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(target, name, labels),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(target, name, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": target.namespace}]},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(target, name, labels),
         "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 120,
                  "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"metadata": {"labels": labels}, "spec": job}}},
    ]


def sweep_jobs(target: Target, app: str, notebook_file: str, trials: list[dict[str, Any]],
               parallel: int, pod: dict[str, dict[str, str]] | None = None) -> list[dict]:
    """A ConfigMap with the trials and an Indexed Job: pod i runs `jupyter-mlops run --trial-of trials.json`, which
    takes the parameters at JOB_COMPLETION_INDEX."""
    labels = _labels(target, app, "sweep")
    config_name = resource_name(app, "sweep-trials")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(target, config_name, labels),
              "data": {"trials.json": "[\n" + ",\n".join(json.dumps(t, default=str) for t in trials) + "\n]\n"}}
    container = _container(target, "trial", _run_command(notebook_file, {}) +
                           ["--trial-of", "/etc/mlops-sweep/trials.json"])
    container["volumeMounts"].append({"name": "trials", "mountPath": "/etc/mlops-sweep", "readOnly": True})
    spec = _pod_spec(target, container, "Never")
    spec["volumes"].append({"name": "trials", "configMap": {"name": config_name}})
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(target, resource_name(app, "sweep"), labels),
           "spec": {"completionMode": "Indexed", "completions": len(trials), "parallelism": max(1, parallel),
                    "backoffLimitPerIndex": 1, "maxFailedIndexes": len(trials), "ttlSecondsAfterFinished": 7 * 86400,
                    "template": _with_pod_hints({"metadata": {"labels": labels}, "spec": spec}, pod)}}
    return [config, job]


def serving(target: Target, model: str, primary: int, canary: int | None = None, weight: float = 10.0,
            shadow: int | None = None, gateway: str = "mlops-gateway", replicas: int = 2) -> list[dict]:
    """Deployment + Service per variant, and the HTTPRoute that splits (canary) and mirrors (shadow) traffic."""
    app = resource_name(model)
    variants = [("primary", primary, replicas)]
    if canary is not None:
        variants.append(("canary", canary, 1))
    if shadow is not None:
        variants.append(("shadow", shadow, 1))
    out: list[dict] = []
    for variant, version, count in variants:
        name = resource_name(model, variant)
        labels = _labels(target, app, "server", **{"mlops.jupyter.org/variant": variant,
                                                   "mlops.jupyter.org/model-version": str(version)})
        selector = {"app.kubernetes.io/name": app, "mlops.jupyter.org/variant": variant}
        container = _container(target, "server", ["jupyter-mlops", "serve", f"{model}:{version}", "--host",
                                                   "0.0.0.0", "--port", str(SERVE_PORT)])
        container["ports"] = [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]
        container["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                                       "periodSeconds": 5, "failureThreshold": 3}
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"},
                                      "initialDelaySeconds": 10, "periodSeconds": 10}
        out.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(target, name, labels),
                    "spec": {"replicas": count, "selector": {"matchLabels": selector},
                             "strategy": {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                             "template": {"metadata": {"labels": labels},
                                          "spec": _pod_spec(target, container, "Always")}}})
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(target, name, labels),
                    "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                                              "protocol": "TCP"}]}})
    if not 0 <= weight <= 100:
        raise MlopsError(f"--weight must be between 0 and 100 (percent), got {weight:g}")
    backends = [{"name": resource_name(model, "primary"), "port": 80,
                 "weight": int(round(100 - weight)) if canary is not None else 100}]
    if canary is not None:
        backends.append({"name": resource_name(model, "canary"), "port": 80, "weight": int(round(weight))})
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}
    if shadow is not None:
        rule["filters"] = [{"type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": resource_name(model, "shadow"), "port": 80}}}]
    out.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": _meta(target, app, _labels(target, app, "route")),
                "spec": {"parentRefs": [{"name": dns_label(gateway, "--gateway")}], "rules": [rule]}})
    return out
