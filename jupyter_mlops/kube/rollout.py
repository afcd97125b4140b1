"""A progressive rollout on Kubernetes: what rollout.py's controller reads from the cluster and changes on it.

The counters are every pod's own. A variant's Service's EndpointSlices name its ready pods, and each pod's
/metrics is read and summed; a Service would answer from one pod at a time, and a pod's counts are its own. A
decision reaches the cluster after the store has it:
- a step: the HTTPRoute's weights;
- promoted: the primary Deployment serves the canary's version (its pods replaced one by one), the HTTPRoute sends
  it everything, and the canary's Deployment and Service are deleted;
- rolled back: the primary alone again, and the canary's Deployment and Service deleted.
Each pass first puts on the cluster what the store says and the cluster has not been given yet (the rollout's
`applied` mark), so a controller killed between the two leaves it undone only until the next pass.
"""
from __future__ import annotations

from typing import Any

from . import manifests


def settings(engine, shadow: int | None) -> dict:
    """What a controller in a pod needs to rebuild the deployment's objects: names and sizes, never a secret's
    value (the Secrets are named)."""
    target = engine.target
    return {"namespace": target.namespace, "image": target.image, "cpu": target.cpu, "memory": target.memory,
            "artifacts_secret": target.artifacts_secret, "store_secret": target.store_secret,
            "artifacts_url": target.artifacts_url, "gateway": engine.gateway, "shadow": shadow}


def _target(given: dict) -> manifests.Target:
    return manifests.Target(given["image"], given["namespace"], given["cpu"], given["memory"], workspace_claim=None,
                            artifacts_url=given.get("artifacts_url"), artifacts_secret=given.get("artifacts_secret"),
                            store_secret=given.get("store_secret"))


class Cluster:
    """The cluster side of one rollout (its `settings["kubernetes"]`)."""

    def __init__(self, rollout: dict, api_client: Any = None):
        self.rollout, self.given = rollout, rollout["settings"]["kubernetes"]
        self._api = api_client

    @property
    def api(self):
        if self._api is None:
            from .apply import load_client

            self._api = load_client()
        return self._api

    def counters(self) -> dict:
        """Per variant, the counts of every ready pod behind its Service, summed."""
        from kubernetes import client

        from ..serving.metrics import add_counters, read_counters
        from .apply import explain

        name, namespace = self.rollout["name"], self.given["namespace"]
        found: dict[str, dict] = {}
        for variant in ("primary", "canary"):
            service = manifests.resource_name(name, variant)
            try:
                slices = client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
                    namespace, label_selector=f"kubernetes.io/service-name={service}").items
            except Exception as exc:
                raise OSError(str(explain(exc, "list", "endpointslices", namespace))) from None
            total: dict = {"requests": 0.0, "failed": 0.0, "buckets": {}}
            for piece in slices:
                if (piece.metadata.labels or {}).get("kubernetes.io/service-name") != service:
                    continue  # the selector did it already; checked again, since a slice names one Service
                port = next((p.port for p in piece.ports or [] if p.name in (None, "http")), manifests.SERVE_PORT)
                for endpoint in piece.endpoints or []:
                    if endpoint.conditions is not None and endpoint.conditions.ready is False:
                        continue
                    for address in endpoint.addresses:
                        # a pod serves its version as its own primary: all it counted is this variant's
                        for counted in read_counters(f"http://{address}:{port}", name).values():
                            add_counters(total, counted)
            found[variant] = total
        return found

    def desired(self) -> str:
        """What the cluster should have for the rollout as the store has it now."""
        return f"{self.rollout['status']}:{self.rollout['step']}"

    def apply(self) -> list[str]:
        """Put the rollout's current state on the cluster (idempotent); "created/updated/deleted Kind/name"."""
        from .apply import apply, delete

        r, given = self.rollout, self.given
        target = _target(given)
        if r["status"] == "stopped":  # a new deploy or an undeploy made the objects it wanted
            return []
        if r["status"] == "running":
            objects = manifests.serving(target, r["name"], r["primary_version"], r["canary"], r["steps"][r["step"]],
                                        given.get("shadow"), given["gateway"])
            return apply(self.api, [o for o in objects if o["kind"] == "HTTPRoute"])
        serving = r["canary"] if r["status"] == "promoted" else r["primary_version"]
        done = apply(self.api, manifests.serving(target, r["name"], serving, None, shadow=given.get("shadow"),
                                                 gateway=given["gateway"]))
        canary = manifests.resource_name(r["name"], "canary")
        return done + delete(self.api, given["namespace"], [("apps/v1", "Deployment", canary),
                                                             ("v1", "Service", canary)])
