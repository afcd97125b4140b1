"""The Kubernetes engine: a run becomes a Job in the cluster, watched from here, its results brought home.

The Job's pod runs the notebook's image (`jupyter-mlops build`) with `jupyter-mlops run --run-id ID --publish`:
steps exchange values under the artifacts URL (object storage both sides reach), and at the end the pod publishes
its run record and executed step notebooks next to them (`<artifacts>/<run>/_run/`). This side records the run in
its own store (local, or the team's) as soon as the Job is created, follows the Job and its pods, and on the end
copies the step notebooks, statuses and metrics into the store, so `runs` shows cluster runs beside local ones.

Failures come back named: no kubeconfig, an unreachable API server, RBAC refusals, an image that cannot be pulled,
a pod OOM-killed or evicted: the run is failed with that reason (and its Job deleted), never left `running`.
Ctrl-C (or `cancel`) deletes the Job with foreground propagation (its pods go too) and cancels the run.
"""
from __future__ import annotations

import json
import posixpath
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import MlopsError
from ..kube.apply import explain, load_client  # noqa: F401 - load_client: callers find it here too
from ..records import RunStatus
from .abc import Engine, Option

PUBLISHED = "_run"  # <artifacts>/<run id>/_run/{run.json, steps/*.ipynb}: what a pod leaves for its caller
IMAGE_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def pod_failure(pod) -> str | None:
    """Why a pod cannot succeed, if it cannot: image pull failures, OOM kills, evictions."""
    status = pod.status
    if status is None:
        return None
    if (status.reason or "") == "Evicted":
        return f"the pod was evicted: {status.message or 'the node ran short of resources'}"
    for container in (status.container_statuses or []) + (status.init_container_statuses or []):
        state = container.state
        if state and state.waiting and state.waiting.reason in IMAGE_PULL_FAILURES:
            return (f"the image `{container.image}` could not be pulled ({state.waiting.reason}: "
                    f"{state.waiting.message or 'no detail'}); push it where the cluster can pull it, or fix --image")
        if state and state.terminated and state.terminated.reason == "OOMKilled":
            return (f"the pod was OOM-killed (out of memory, container `{container.name}`); raise --memory or make "
                    "the step use less")
    return None


def publish(workspace, run: dict) -> None:
    """In the pod, after the run: its record and executed step notebooks, where the caller collects them."""
    import fsspec

    target = f"{workspace.artifacts(run['id'])}/{PUBLISHED}"
    fs, base = fsspec.core.url_to_fs(target)
    fs.makedirs(f"{base}/steps", exist_ok=True)
    for step in run["steps"]:
        if step["output_notebook"] and Path(step["output_notebook"]).is_file():
            fs.put_file(step["output_notebook"], f"{base}/steps/{Path(step['output_notebook']).name}")
    with fs.open(f"{base}/run.json", "w") as f:
        f.write(json.dumps(run, default=str))


def shared_workspace(workspace, notebook, backend: str, credentials: str):
    """The workspace, which this machine and the pods must both reach through its artifacts URL."""
    from ..workspace import Workspace

    ws = Workspace.locate(workspace, notebook)
    if not ws.artifacts_url or "://" not in ws.artifacts_url:
        raise MlopsError(f"--backend {backend} needs artifacts that this machine and the pods both reach: set "
                         "MLOPS_ARTIFACTS_URL to an object-store URL (s3://bucket/prefix), with its credentials "
                         f"{credentials}")
    return ws


_MAKES = ("run", "sweep", "deploy", "schedule")  # the verbs that make pods, and so need an image


class KubernetesEngine(Engine):
    name = "kubernetes"
    summary = "the kubeconfig's cluster: a Job per run, an Indexed Job per sweep, Deployments + HTTPRoute, CronJobs"
    verbs = ("run", "sweep", "deploy", "undeploy", "schedule")
    options = (
        Option("image", "the image `jupyter-mlops build` made for the notebook", verbs=_MAKES),
        Option("namespace", "the namespace", "default"),
        Option("artifacts_secret", "a Secret whose keys become the pods' env (object-store credentials)",
               verbs=_MAKES),
        Option("store_secret", "a Secret whose key `url` is the team store (MLOPS_STORE_URL)", verbs=_MAKES),
        Option("cpu", "each pod's CPU request (default 1)", "1", verbs=_MAKES),
        Option("memory", "each pod's memory (default 2Gi)", "2Gi", verbs=_MAKES),
        Option("gateway", "the Gateway the HTTPRoute attaches to", "mlops-gateway", verbs=("deploy",)),
        Option("api_client", "a kubernetes.client.ApiClient (default: from the kubeconfig)", shown=False),
        Option("poll", "seconds between looks at a Job", 1.0, float, verbs=("run", "sweep"), shown=False),
    )

    def __init__(self, workspace=None, *, image: str | None = None, namespace: str = "default",
                 artifacts_secret: str | None = None, store_secret: str | None = None, cpu: str = "1",
                 memory: str = "2Gi", gateway: str = "mlops-gateway", api_client=None, poll: float = 1.0):
        from ..kube.manifests import Target

        super().__init__(workspace)
        self.target = Target(image or "", namespace, cpu, memory, workspace_claim=None,
                             artifacts_secret=artifacts_secret, store_secret=store_secret)
        self.gateway, self.poll, self._api = gateway, poll, api_client
        self.on_log: Callable[[str], Any] | None = None
        self.cancelled = threading.Event()
        self._streams: dict[str, threading.Thread] = {}  # pod name -> the thread following its log

    def check(self, verb: str) -> None:
        from ..kube.manifests import dns_label

        if verb not in _MAKES:
            dns_label(self.target.namespace, "--namespace")
            return
        if not self.target.image:
            raise MlopsError("--backend kubernetes needs --image: build one with `jupyter-mlops build NOTEBOOK --tag "
                             "REGISTRY/NAME:TAG` and push it where the cluster pulls from")
        self.target.check()

    @property
    def api(self):
        if self._api is None:
            self._api = load_client()
        return self._api

    @property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api)

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def _workspace(self, notebook=None):
        self.ws = shared_workspace(self.workspace, notebook, "kubernetes", "in a Secret given by --artifacts-secret")
        return self.ws

    def cancel(self) -> None:
        self.cancelled.set()

    def _submit(self, objects: list[dict]) -> None:
        from ..kube.apply import apply

        for obj in objects:
            if obj["kind"] == "Job":  # the image's run, told its id and to publish what it did
                container = obj["spec"]["template"]["spec"]["containers"][0]
                container["env"] = [e for e in container["env"] if e["name"] != "MLOPS_ARTIFACTS_URL"] + [
                    {"name": "MLOPS_ARTIFACTS_URL", "value": self.ws.artifacts_url}]
        apply(self.api, objects)

    def run(self, notebook: str | Path, parameters: dict | None = None, *, run_id: str | None = None,
            on_update: Callable | None = None, on_log: Callable[[str], Any] | None = None) -> dict:
        """The run as a Job; the pods' log lines go to `on_log` as they come (step progress is known only at the
        end, from what the pod published)."""
        from ..kube.manifests import pod_hints, resource_name, run_job
        from ..names import check_run_id
        from ..orchestration import describe_run, record_run, validate
        from ..parameters import coerce_parameters
        from ..workspace import new_run_id

        pipeline = validate(notebook)
        parameters = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        run_id = check_run_id(run_id) if run_id else new_run_id()
        self._workspace(notebook)
        self.on_log = on_log
        app = resource_name(Path(notebook).stem)
        job = run_job(self.target, app, Path(notebook).name, parameters, pod_hints(pipeline))
        name = resource_name(app, run_id)
        job["metadata"]["name"] = name
        job["metadata"]["labels"]["mlops.jupyter.org/run"] = run_id
        job["spec"]["template"]["spec"]["containers"][0]["command"] += ["--run-id", run_id, "--publish"]
        namespace = self.target.namespace
        self._submit([job])
        # recorded once the cluster has the Job: a refused submission leaves nothing behind
        record_run(self.ws, run_id, notebook, pipeline, parameters, owner=f"kubernetes/{namespace}/{name}")
        try:
            outcome, reason = self._follow(name, namespace)
        except KeyboardInterrupt:
            self._delete(name, namespace)
            self.ws.store.finish_run(run_id, RunStatus.CANCELLED, "interrupted by the user; the Job was deleted")
            raise
        logs = self._save_logs(name, namespace, run_id)
        if outcome != "succeeded":
            self._delete(name, namespace)
        self._finish(run_id, pipeline, outcome, reason, logs, f"{namespace}/{name}")
        return describe_run(self.ws.store.get_run(run_id))

    def sweep(self, notebook: str | Path, plan, *, on_trial: Callable | None = None) -> dict:
        """The trials as one Indexed Job: pod i runs trial i (parameters from a ConfigMap), `parallel` at once.
        Points are fixed up front (grid or random): a Bayesian search needs each result before its next point."""
        from ..kube.manifests import pod_hints, resource_name, sweep_jobs
        from ..orchestration import describe_run, record_run
        from ..trials import best_trial
        from ..workspace import new_run_id

        if plan.search == "bayes":
            raise MlopsError("--search bayes picks each point from the results before it: run it locally (or use a "
                             "grid or --samples N on the cluster)")
        pipeline, points, metric, direction = plan.pipeline, plan.points.points, plan.metric, plan.direction
        self._workspace(notebook)
        prefix = new_run_id()
        sweep_id = f"sweep-{prefix}"
        app = resource_name(Path(notebook).stem)
        config, job = sweep_jobs(self.target, app, Path(notebook).name, points, plan.parallel, pod_hints(pipeline))
        name = resource_name(app, "sweep", prefix)
        config["metadata"]["name"] = resource_name(app, "trials", prefix)
        job["metadata"]["name"] = name
        job["spec"]["template"]["spec"]["volumes"][-1]["configMap"]["name"] = config["metadata"]["name"]
        job["spec"]["template"]["spec"]["containers"][0]["command"] += ["--run-id-prefix", prefix, "--publish"]
        namespace = self.target.namespace
        self._submit([config, job])
        store = self.ws.store
        store.create_sweep(sweep_id, str(Path(notebook).resolve()), plan.space, len(points), metric, direction)
        run_ids = [f"{prefix}-{i}" for i in range(len(points))]
        for run_id, point in zip(run_ids, points):
            record_run(self.ws, run_id, notebook, pipeline, point, sweep_id=sweep_id,
                       owner=f"kubernetes/{namespace}/{name}")
        done: set[int] = set()

        def trial_ended(index: int, outcome: str, reason: str | None) -> None:
            done.add(index)
            self._finish(run_ids[index], pipeline, outcome, reason, "", f"{namespace}/{name} index {index}")
            if on_trial:
                on_trial(describe_run(store.get_run(run_ids[index])))

        try:
            outcome, reason = self._follow(name, namespace, trial_ended)
        except KeyboardInterrupt:
            self._delete(name, namespace)
            for i, run_id in enumerate(run_ids):
                if i not in done:
                    store.finish_run(run_id, RunStatus.CANCELLED, "interrupted by the user; the Job was deleted")
            store.finish_sweep(sweep_id, RunStatus.CANCELLED, None)
            raise
        if outcome != "succeeded":
            self._delete(name, namespace)
        for i in range(len(run_ids)):
            if i not in done:  # the Job ended before this trial's pod said anything
                trial_ended(i, outcome, reason)
        results = [describe_run(store.get_run(r)) for r in run_ids]
        best = best_trial(results, metric, direction)
        status = RunStatus.SUCCEEDED if any(r["status"] == RunStatus.SUCCEEDED for r in results) else RunStatus.FAILED
        if outcome == "cancelled":
            status = RunStatus.CANCELLED
        store.finish_sweep(sweep_id, status, best["id"] if best else None)
        return {"id": sweep_id, "status": status, "metric": metric, "direction": direction, "shared_steps": [],
                "best": best, "trials": results}

    def deploy(self, name: str, *, canary: int | None = None, weight: float = 10.0, shadow: int | None = None,
               sticky_header: str | None = None, rollout: dict | None = None) -> dict:
        """A Deployment and Service per variant and an HTTPRoute with the canary's weight and a mirror to the
        shadow, created or updated. The servers read the team's registry, so the store and the model packages must
        be shared (--store-secret, and an object-store MLOPS_ARTIFACTS_URL at registration). `rollout`: a planned
        progressive rollout, recorded in the team store with what its controller needs; the controller is a
        CronJob in the namespace (kube/rollout.py) that patches the HTTPRoute as the rollout goes."""
        from ..kube.apply import apply
        from ..kube.manifests import serving
        from ..names import check_name
        from ..registry import primary_version, resolve
        from ..workspace import Workspace

        check_name(name)
        if sticky_header:
            raise MlopsError("--sticky-header cannot be expressed by a standard Gateway API HTTPRoute; deploy without "
                             "it on Kubernetes (or route by header in your gateway's own configuration)")
        if not self.target.store_secret:
            raise MlopsError("the cluster's model servers read the registry: give --store-secret, a Secret whose key "
                             "`url` is the team store (MLOPS_STORE_URL) that holds this model")
        store = Workspace.locate(self.workspace).store
        primary = primary_version(store, name)
        if "://" not in primary["package"]:
            raise MlopsError(f"{name} version {primary['version']} is packaged on this machine ({primary['package']}); "
                             "register it with MLOPS_ARTIFACTS_URL set to object storage so the cluster can fetch it")
        for version in (canary, shadow):
            if version is not None:
                resolve(store, f"{name}:{version}")
        objects = serving(self.target, name, primary["version"], canary, weight, shadow, self.gateway)
        if rollout is None:
            return {"name": name, "status": "applied", "url": None, "lines": apply(self.api, objects)}
        from ..kube.manifests import rollout_controller
        from ..kube.rollout import settings
        from ..rollout import begin

        lines = apply(self.api, objects + rollout_controller(self.target, name))
        planned = {**rollout, "settings": {**rollout["settings"], "kubernetes": settings(self, shadow)}}
        return {"name": name, "status": "applied", "url": None,
                "lines": lines + begin(store, planned, controller_runs=True)["lines"]}

    def undeploy(self, name: str) -> dict:
        """Delete what `deploy` made for model `name`: its HTTPRoute, then each variant's Deployment and Service
        (those never made are skipped)."""
        from ..kube.apply import delete
        from ..kube.manifests import resource_name
        from ..names import check_name

        check_name(name)
        objects = [("gateway.networking.k8s.io/v1", "HTTPRoute", resource_name(name))]
        for variant in ("primary", "canary", "shadow"):
            objects += [("apps/v1", "Deployment", resource_name(name, variant)),
                        ("v1", "Service", resource_name(name, variant))]
        controller = resource_name(name, "rollout")  # a progressive rollout's, when there was one
        objects += [("batch/v1", "CronJob", controller), ("rbac.authorization.k8s.io/v1", "RoleBinding", controller),
                    ("rbac.authorization.k8s.io/v1", "Role", controller), ("v1", "ServiceAccount", controller)]
        lines = delete(self.api, self.target.namespace, objects)
        if not lines:
            raise MlopsError(f"nothing of a deployment `{name}` in namespace `{self.target.namespace}` (no HTTPRoute, "
                             "Deployment or Service of that name); check the name and --namespace")
        return {"name": name, "status": "stopped", "url": None, "lines": lines}

    def schedule(self, notebook: str | Path, name: str, cron: str | None, parameters: dict | None = None, *,
                 timezone: str = "UTC", on_data_change: bool = False, every: str | float | None = None,
                 watch_paths: list[str] | None = None, on_drift: str | None = None, threshold: float | None = None,
                 drift_window: str | float | None = None, register: str | None = None,
                 require: list[str] | None = None) -> dict:
        """A cron schedule as a CronJob (the cluster's controller fires it; overlapping runs forbidden). A
        triggered one (`on_data_change`, `on_drift`) is kept in the team store, and a CronJob checks it every
        `every` by running `jupyter-mlops scheduler --once --only NAME` in the notebook's image."""
        from ..kube.apply import apply
        from ..kube.manifests import IMAGE_NOTEBOOK_DIR, cron_job, pod_hints, resource_name, trigger_cron_job
        from ..names import check_name
        from ..orchestration import validate
        from ..parameters import coerce_parameters
        from ..schedule import add, check_cron, timezone_of
        from ..workspace import Workspace

        check_name(name, "schedule name")
        triggered = bool(on_data_change or on_drift)
        if not triggered:
            check_cron(cron)
        timezone_of(timezone)
        pipeline = validate(notebook)
        values = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        ws = Workspace.locate(self.workspace, notebook)
        self.target.artifacts_url = ws.artifacts_url or None
        self.target.check()
        if not triggered:
            if register or require or every is not None or watch_paths:
                raise MlopsError("on Kubernetes a cron schedule is a CronJob of runs: --register, --require, --every "
                                 "and --watch go with --on-data-change or --on-drift")
            job = cron_job(self.target, resource_name(name), Path(notebook).name, values, cron, timezone,
                           pod_hints(pipeline))
            return {"name": name, "cron": cron, "timezone": timezone, "lines": apply(self.api, [job])}
        if not self.target.store_secret:
            raise MlopsError("a triggered schedule on Kubernetes is checked by pods that read the team store: give "
                             "--store-secret, the Secret holding its URL")
        added = add(ws, notebook, name, cron, values, timezone=timezone, on_data_change=on_data_change,
                    every=every, watch_paths=watch_paths, on_drift=on_drift, threshold=threshold,
                    drift_window=drift_window, register=register, require=require,
                    stored_notebook=f"{IMAGE_NOTEBOOK_DIR}/{Path(notebook).name}")
        job = trigger_cron_job(self.target, resource_name(name), name, added["trigger"]["every"],
                               pod_hints(pipeline))
        return {**added, "lines": [f"schedule {name}: {added['when']}"] + apply(self.api, [job])}

    def _finish(self, run_id: str, pipeline, outcome: str, reason: str | None, logs: str, where: str) -> None:
        """Bring what the pod published home, and end the run with the right status and reason."""
        store = self.ws.store
        published = self._collect(run_id, pipeline)
        if outcome == "cancelled":
            store.finish_run(run_id, RunStatus.CANCELLED, "cancelled; the Job was deleted")
        elif published and published["status"] == RunStatus.SUCCEEDED:
            store.finish_run(run_id, RunStatus.SUCCEEDED)
        else:
            error = (published or {}).get("error") or reason or "the Job failed"
            if not published and logs.strip():  # the pod died before it could say what happened: its last words
                error += "; the pod's log ends:\n" + "\n".join(logs.strip().splitlines()[-8:])
            store.finish_run(run_id, RunStatus.FAILED, f"{error} (Kubernetes Job {where})")

    def _follow(self, name: str, namespace: str, pod_ended: Callable | None = None) -> tuple[str, str | None]:
        """Wait for the Job to end: ("succeeded" | "failed" | "cancelled", reason). For an Indexed Job,
        `pod_ended(index, outcome, reason)` hears of each completion index as its pod ends."""
        reported: set[int] = set()
        try:
            while not self.cancelled.is_set():
                ended = self._watch_once(name, namespace, pod_ended, reported)
                if ended:
                    return ended
                self.cancelled.wait(self.poll)
            return "cancelled", None
        finally:
            for thread in self._streams.values():
                thread.join(5)  # the last lines of a finished pod, before the result is printed

    def _watch_once(self, name: str, namespace: str, pod_ended: Callable | None,
                    reported: set[int]) -> tuple[str, str | None] | None:
        """One look at the Job and its pods: how it ended, or None while it runs."""
        try:
            job = self.batch.read_namespaced_job_status(name, namespace)
            pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        except Exception as exc:
            raise explain(exc, "get", "jobs", namespace) from None
        for pod in pods:
            if (pod.metadata.labels or {}).get("job-name", name) != name:
                continue  # a server that ignores label selectors
            self._stream(pod, namespace)
            failure = pod_failure(pod)
            index = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-completion-index")
            if pod_ended and index is not None and index.isdigit() and int(index) not in reported:
                phase = pod.status.phase if pod.status else None
                if failure or phase in ("Succeeded", "Failed"):
                    reported.add(int(index))
                    pod_ended(int(index), "succeeded" if phase == "Succeeded" else "failed",
                              failure or "the trial's pod failed")
                continue  # one trial's failure is not the sweep's
            if failure:
                return "failed", failure
        conditions = {c.type: c for c in (job.status.conditions or []) if c.status == "True"} \
            if job.status else {}
        if "Complete" in conditions or (job.status and job.status.succeeded):
            return "succeeded", None
        if "Failed" in conditions:
            c = conditions["Failed"]
            return "failed", f"{c.reason or 'Failed'}: {c.message or 'the Job failed'}"
        if job.status and job.status.failed:
            return "failed", "the Job's pod failed"
        return None

    def _stream(self, pod, namespace: str) -> None:
        """Follow a started pod's log on a thread of its own, line by line to `on_log`."""
        started = pod.status and pod.status.phase in ("Running", "Succeeded", "Failed")
        if not self.on_log or not started or pod.metadata.name in self._streams:
            return

        def follow() -> None:
            try:
                reply = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, follow=True,
                                                          _preload_content=False)
                rest = ""
                for chunk in reply.stream(4096):
                    rest += chunk.decode(errors="replace")
                    *lines, rest = rest.split("\n")
                    for line in lines:
                        self.on_log(line)
                if rest:
                    self.on_log(rest)
            except Exception as exc:  # logs are a courtesy; the run's outcome does not depend on them
                self.on_log(f"(the log of pod {pod.metadata.name} stopped: {exc})")

        thread = threading.Thread(target=follow, name=f"mlops-log-{pod.metadata.name}", daemon=True)
        self._streams[pod.metadata.name] = thread
        thread.start()

    def _delete(self, name: str, namespace: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        except Exception:
            pass  # already gone, or unreachable: the run's state is what matters here

    def _save_logs(self, name: str, namespace: str, run_id: str) -> str:
        """The Job's pod logs, whole, kept as <run dir>/pod.log; returned."""
        try:
            pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        except Exception:
            return ""
        lines = []
        for pod in pods:
            if (pod.metadata.labels or {}).get("job-name") != name:
                continue
            try:
                reply = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, _preload_content=False)
                lines.append(reply.data.decode(errors="replace"))
            except Exception as exc:
                lines.append(f"(no logs from pod {pod.metadata.name}: {exc})")
        text = "\n".join(lines)
        run_dir = self.ws.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "pod.log").write_text(text)
        return text

    def _collect(self, run_id: str, pipeline) -> dict | None:
        """Copy what the pod published (statuses, metrics, step notebooks) into this store; None if nothing."""
        import fsspec

        source = f"{self.ws.artifacts(run_id)}/{PUBLISHED}"
        fs, base = fsspec.core.url_to_fs(source)
        try:
            with fs.open(f"{base}/run.json") as f:
                published = json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None
        steps_dir = self.ws.run_dir(run_id) / "steps"
        steps_dir.mkdir(parents=True, exist_ok=True)
        store = self.ws.store
        by_step = {s.name: s for s in pipeline.steps}
        for step in published["steps"]:
            local = None
            if step["output_notebook"]:
                remote = posixpath.join(base, "steps", Path(step["output_notebook"]).name)
                if fs.exists(remote):
                    local = steps_dir / Path(step["output_notebook"]).name
                    fs.get_file(remote, str(local))
            started = step["started"]
            store.update_step(run_id, step["name"], status=step["status"], duration=step["duration"],
                              output_notebook=str(local) if local else None, error=step["error"],
                              cell=step["cell"], attempts=step["attempts"],
                              started=_epoch(started) if started else None)
            declared = by_step[step["name"]].metrics if step["name"] in by_step else []
            store.record_metrics(run_id, step["name"], {k: v for k, v in published["metrics"].items()
                                                        if k in declared})
        unassigned = {k: v for k, v in published["metrics"].items()
                      if not any(k in s.metrics for s in pipeline.steps)}
        if unassigned and pipeline.steps:
            store.record_metrics(run_id, pipeline.steps[-1].name, unassigned)
        return published


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
