"""`run --backend kubernetes` against the kmock emulator with the unmodified official client. The test plays the
cluster's controllers: each Job's pod spec (image, command, env, Secrets) runs with podman in the image that
`jupyter-mlops build` made, and the Job's and pod's status are patched from what really happened."""
from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, free_port

kmock = pytest.importorskip("kmock")
NAMESPACE = "ml"


@pytest.fixture(scope="module")
def cluster():
    state: dict = {"logs": {}}
    ready, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with kmock.KubernetesEmulator() as emu, kmock.Server(emu) as srv:
                for resource in ("batch/v1/jobs", "v1/pods", "v1/secrets", "v1/configmaps", "apps/v1/deployments",
                                 "v1/services",
                                 "batch/v1/cronjobs", "gateway.networking.k8s.io/v1/httproutes",
                                 "discovery.k8s.io/v1/endpointslices", "v1/serviceaccounts",
                                 "rbac.authorization.k8s.io/v1/roles", "rbac.authorization.k8s.io/v1/rolebindings"):
                    emu.resources[resource] = {}  # listed before anything is created
                forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                             "code": 403, "message": 'jobs.batch is forbidden: User "bob" cannot create resource '
                                                     '"jobs" in API group "batch" in the namespace "locked"'}
                emu[kmock.method("POST"), kmock.resource("jobs"), kmock.namespace("locked")] << 403 << forbidden
                # text/plain-like bytes, as an API server sends logs (read raw by the engine)
                emu[kmock.subresource("log")] << (lambda request: state["logs"].get(request.name, "").encode())
                state["url"] = str(srv.url)
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(30)
    yield state
    stop.set()


@pytest.fixture
def kubeconfig(cluster, tmp_path, monkeypatch):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{cluster['url']}"}}}}]
users: [{{name: bob, user: {{token: not-a-secret}}}}]
contexts: [{{name: test, context: {{cluster: test, user: bob, namespace: {NAMESPACE}}}}}]
current-context: test
""")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


class Controller:
    """Plays the Job controller and kubelet: a pod per new Job, run by podman (or failed as the image tag says:
    `oom`, `evicted`, `nope` = cannot be pulled, `hang` = runs until deleted)."""

    def __init__(self, cluster, podman_run=None):
        from kubernetes import client

        from jupyter_mlops.engines.kubernetes import load_client

        api = load_client()
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.cluster, self.podman_run = cluster, podman_run
        # Jobs of earlier tests are not this controller's to play again
        self.seen: set[str] = {j.metadata.name for j in self.batch.list_namespaced_job(NAMESPACE).items}
        self.pod_specs: list[dict] = []
        self.pod_metadata: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            for job in self.batch.list_namespaced_job(NAMESPACE).items:
                if job.metadata.name not in self.seen:
                    self.seen.add(job.metadata.name)
                    threading.Thread(target=self.play, args=(job,), daemon=True).start()
            time.sleep(0.2)

    def secret(self, name: str) -> dict:
        found = self.core.read_namespaced_secret(name, NAMESPACE)
        values = dict(found.string_data or {})
        values.update({k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()})
        return values

    def play(self, job) -> None:
        name = job.metadata.name
        spec = self.batch.api_client.sanitize_for_serialization(job.spec.template.spec)
        self.pod_specs.append(spec)
        self.pod_metadata.append(self.batch.api_client.sanitize_for_serialization(job.spec.template.metadata))
        if job.spec.completion_mode == "Indexed":
            codes = [self.pod(name, spec, index) for index in range(job.spec.completions)]
            code = max(codes)
        else:
            code = self.pod(name, spec)
        if code is None:
            return  # a pod that never ends (or never starts): the Job stays active
        condition = ({"type": "Complete", "status": "True"} if code == 0 else
                     {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                      "message": "Job has reached the specified backoff limit"})
        self.batch.patch_namespaced_job_status(name, NAMESPACE, {"status": {
            "succeeded": int(code == 0), "failed": int(code != 0), "conditions": [condition]}})

    def pod(self, job: str, spec: dict, index: int | None = None) -> int | None:
        """One pod of the Job: made, run (or failed as its image says), its status patched; its exit code."""
        container = spec["containers"][0]
        pod = f"{job}-{index}-x7k2p" if index is not None else f"{job}-x7k2p"
        labels = {"job-name": job}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
        self.core.create_namespaced_pod(NAMESPACE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NAMESPACE, "labels": labels},
            "spec": spec, "status": {"phase": "Pending"}})
        image = container["image"]

        def terminated(code: int, reason: str | None = None) -> dict:
            return {"name": container["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, **({"reason": reason} if reason else {})}}}

        if image.startswith("nope"):
            self.core.patch_namespaced_pod_status(pod, NAMESPACE, {"status": {"phase": "Pending", "containerStatuses": [
                {"name": container["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ImagePullBackOff",
                                       "message": f'Back-off pulling image "{image}"'}}}]}})
            return None
        if image.startswith("hang"):
            self.core.patch_namespaced_pod_status(pod, NAMESPACE, {"status": {"phase": "Running"}})
            return None
        if image.startswith("oom"):
            status = {"phase": "Failed", "containerStatuses": [terminated(137, "OOMKilled")]}
            code = 137
        elif image.startswith("evicted"):
            status = {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}
            code = 1
        else:
            code = self.run_container(pod, spec, index)
            status = {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [terminated(code)]}
        self.core.patch_namespaced_pod_status(pod, NAMESPACE, {"status": status})
        return code

    def run_container(self, pod: str, spec: dict, index: int | None) -> int:
        """What the kubelet does, with podman: env (Secrets resolved), ConfigMap volumes, the pod's user."""
        import tempfile

        container = spec["containers"][0]
        env = {e["name"]: e["value"] if "value" in e else
               self.secret(e["valueFrom"]["secretKeyRef"]["name"])[e["valueFrom"]["secretKeyRef"]["key"]]
               for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            env.update(self.secret(source["secretRef"]["name"]))
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = str(index)
        args = ["run", "--rm", "--network", "host", "--user", str(spec["securityContext"]["runAsUser"]),
                "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--tmpfs", "/mlops:rw,mode=1777"]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                folder = Path(tempfile.mkdtemp(prefix="configmap-"))
                data = self.core.read_namespaced_config_map(volume["configMap"]["name"], NAMESPACE).data
                for key, value in data.items():
                    (folder / key).write_text(value)
                folder.chmod(0o755)
                args += ["-v", f"{folder}:{mounts[volume['name']]}:ro"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        done = self.podman_run(*args, container["image"], *container["command"], timeout=600)
        self.cluster["logs"][pod] = done.stdout + done.stderr
        return done.returncode

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def artifacts(s3, monkeypatch):
    env, fs = s3
    for key, value in {**env, "MLOPS_ARTIFACTS_URL": "s3://team-bucket/cluster"}.items():
        monkeypatch.setenv(key, value)
    return env


def digits(folder: Path) -> Path:
    notebook = folder / "digits.ipynb"
    notebook.write_text((EXAMPLES / "digits.ipynb").read_text())
    return notebook


@pytest.fixture
def real_image(digits_image, artifacts):
    """The digits image and the Secret its pods read the object store's credentials from."""
    _secret(artifacts)
    return digits_image


def _secret(env: dict) -> None:
    from kubernetes import client

    from jupyter_mlops.engines.kubernetes import load_client

    core = client.CoreV1Api(load_client())
    try:
        core.create_namespaced_secret(NAMESPACE, {"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "s3-creds", "namespace": NAMESPACE}, "stringData": env})
    except Exception:
        pass  # made by an earlier test


def test_a_run_on_kubernetes_runs_the_real_image_and_comes_home(kubeconfig, cluster, real_image, tmp_path):
    import jupyter_mlops

    tag, podman_run, _ = real_image
    notebook = digits(tmp_path)
    controller = Controller(cluster, podman_run)
    streamed: list[str] = []
    try:
        run = jupyter_mlops.run(notebook, {"C": 3}, backend="kubernetes", image=tag, namespace=NAMESPACE,
                                artifacts_secret="s3-creds", on_log=streamed.append)
    finally:
        controller.close()
    assert run["status"] == "succeeded", run["error"]
    assert run["params"]["C"] == 3.0 and run["metrics"]["accuracy"] > 0.9
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 4
    assert all(s["output_notebook"] and s["output_notebook"].startswith(str(tmp_path)) for s in run["steps"])
    assert "accuracy" in (tmp_path / ".mlops" / "runs" / run["id"] / "pod.log").read_text()
    assert any("accuracy" in line for line in streamed)  # the pod's log followed line by line
    spec = controller.pod_specs[-1]
    assert spec["securityContext"]["runAsNonRoot"] and spec["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "s3-creds"}}]
    # beside local runs in the same table
    local = jupyter_mlops.run(notebook, {"C": 4})
    assert {r["id"] for r in jupyter_mlops.list_runs(workspace=tmp_path / ".mlops")} >= {run["id"], local["id"]}


@pytest.mark.parametrize("image,reason", [
    ("oom:1", "OOM-killed"),
    ("evicted:1", "evicted"),
    ("nope:1", "could not be pulled"),
])
def test_a_pod_that_cannot_finish_fails_the_run_with_its_reason(kubeconfig, cluster, artifacts, tmp_path, image,
                                                                 reason):
    import jupyter_mlops
    from kubernetes import client

    from jupyter_mlops.engines.kubernetes import load_client

    notebook = digits(tmp_path)
    controller = Controller(cluster)
    try:
        run = jupyter_mlops.run(notebook, backend="kubernetes", image=image, namespace=NAMESPACE)
    finally:
        controller.close()
    assert run["status"] == "failed" and reason in run["error"], run["error"]
    jobs = client.BatchV1Api(load_client()).list_namespaced_job(NAMESPACE).items
    assert not [j for j in jobs if j.metadata.labels.get("mlops.jupyter.org/run") == run["id"]]  # deleted


def test_kale_pod_hints_reach_the_submitted_pod(kubeconfig, cluster, artifacts, tmp_path):
    import jupyter_mlops

    from conftest import write_notebook

    notebook = write_notebook(tmp_path / "kale.ipynb", [
        ("x = [1, 2]", "block:load"),
        ("y = sum(x)", "block:train", "prev:load", "limit:nvidia.com/gpu:1", "limit:memory:5Gi",
         "annotation:sidecar.istio.io/inject:false", "label:team:vision")])
    controller = Controller(cluster)
    try:
        run = jupyter_mlops.run(notebook, backend="kubernetes", image="oom:1", namespace=NAMESPACE)
    finally:
        controller.close()
    assert run["status"] == "failed"  # the stand-in kubelet OOM-kills it: only the submitted pod matters here
    resources = controller.pod_specs[-1]["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "5Gi", "nvidia.com/gpu": "1"} and resources["requests"]["memory"] == "5Gi"
    assert controller.pod_metadata[-1]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert controller.pod_metadata[-1]["labels"]["team"] == "vision"


def test_cancel_deletes_the_job_and_cancels_the_run(kubeconfig, cluster, artifacts, tmp_path):
    import jupyter_mlops

    notebook = digits(tmp_path)
    controller = Controller(cluster)
    engines = []
    threading.Timer(2.0, lambda: engines[0].cancel()).start()
    try:
        run = jupyter_mlops.run(notebook, backend="kubernetes", image="hang:1", namespace=NAMESPACE,
                                engine_hook=engines.append)
    finally:
        controller.close()
    assert run["status"] == "cancelled" and "deleted" in run["error"]


def test_rbac_refusal_is_named_and_nothing_is_recorded(kubeconfig, artifacts, tmp_path):
    import jupyter_mlops
    from jupyter_mlops.errors import MlopsError

    notebook = digits(tmp_path)
    with pytest.raises(MlopsError, match=r"forbidden by RBAC.*create jobs.*locked"):
        jupyter_mlops.run(notebook, backend="kubernetes", image="img:1", namespace="locked")
    assert jupyter_mlops.list_runs(workspace=tmp_path / ".mlops") == []


def test_no_kubeconfig_or_no_cluster_is_a_clear_error(artifacts, tmp_path, monkeypatch):
    import jupyter_mlops
    from jupyter_mlops.errors import MlopsError

    notebook = digits(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(MlopsError, match="no Kubernetes configuration"):
        jupyter_mlops.run(notebook, backend="kubernetes", image="img:1")
    closed = tmp_path / "closed"
    closed.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    monkeypatch.setenv("KUBECONFIG", str(closed))
    with pytest.raises(MlopsError, match="unreachable"):
        jupyter_mlops.run(notebook, backend="kubernetes", image="img:1")


def test_local_artifacts_are_refused_for_the_cluster(kubeconfig, tmp_path, monkeypatch):
    import jupyter_mlops
    from jupyter_mlops.errors import MlopsError

    monkeypatch.delenv("MLOPS_ARTIFACTS_URL", raising=False)
    notebook = digits(tmp_path)
    with pytest.raises(MlopsError, match="MLOPS_ARTIFACTS_URL"):
        jupyter_mlops.run(notebook, backend="kubernetes", image="img:1")


def test_deploy_and_schedule_on_kubernetes_create_then_update_their_objects(kubeconfig, cluster, artifacts,
                                                                           tmp_path):
    import jupyter_mlops
    from kubernetes import client

    from jupyter_mlops.engines.kubernetes import load_client
    from jupyter_mlops.errors import MlopsError

    notebook = digits(tmp_path)
    workspace = tmp_path / ".mlops"
    for c in (5, 1):
        run = jupyter_mlops.run(notebook, {"C": c})
        jupyter_mlops.register(run["id"], "digits", workspace=workspace)  # packaged on the object store
    options = dict(image="registry.example.com/digits:1", namespace=NAMESPACE, store_secret="team-store",
                   workspace=workspace)
    created = jupyter_mlops.deploy("digits", canary=2, weight=10, backend="kubernetes", **options)["lines"]
    assert created == ["created Deployment/digits-primary", "created Service/digits-primary",
                       "created Deployment/digits-canary", "created Service/digits-canary", "created HTTPRoute/digits"]
    updated = jupyter_mlops.deploy("digits", canary=2, weight=50, backend="kubernetes", **options)["lines"]
    assert updated[-1] == "updated HTTPRoute/digits"
    api = load_client()
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", "digits")
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [50, 50]
    served = client.AppsV1Api(api).read_namespaced_deployment("digits-canary", NAMESPACE)
    assert served.spec.template.spec.containers[0].command[2] == "digits:2"
    with pytest.raises(MlopsError, match="--store-secret"):
        jupyter_mlops.deploy("digits", backend="kubernetes", **{**options, "store_secret": None})
    gone = jupyter_mlops.undeploy("digits", backend="kubernetes", namespace=NAMESPACE, workspace=workspace)
    assert gone["lines"] == ["deleted HTTPRoute/digits", "deleted Deployment/digits-primary",
                             "deleted Service/digits-primary", "deleted Deployment/digits-canary",
                             "deleted Service/digits-canary"]
    with pytest.raises(MlopsError, match="nothing of a deployment `digits`"):
        jupyter_mlops.undeploy("digits", backend="kubernetes", namespace=NAMESPACE, workspace=workspace)
    again = jupyter_mlops.deploy("digits", canary=2, weight=10, backend="kubernetes", **options)["lines"]
    assert again == created  # created anew: the objects were gone

    lines = jupyter_mlops.add_schedule(notebook, "nightly", "0 3 * * *", {"C": 2}, timezone="Europe/Paris",
                                       backend="kubernetes", **options)["lines"]
    assert lines == ["created CronJob/nightly-schedule"]
    cron = client.BatchV1Api(api).read_namespaced_cron_job("nightly-schedule", NAMESPACE)
    assert cron.spec.schedule == "0 3 * * *" and cron.spec.time_zone == "Europe/Paris"
    with pytest.raises(MlopsError, match="cron"):
        jupyter_mlops.add_schedule(notebook, "bad", "0 3 * *", backend="kubernetes", **options)

    # a triggered schedule: kept in the team store, checked by a CronJob's pod running the scheduler on it alone
    added = jupyter_mlops.add_schedule(notebook, "retrain", on_data_change=True, every="5m", register="digits",
                                       require=["accuracy>=0.9"], backend="kubernetes", **options)
    assert added["lines"] == ["schedule retrain: on data change (checked every 300 s), then register digits if "
                              "accuracy>=0.9", "created CronJob/retrain-trigger"]
    check = client.BatchV1Api(api).read_namespaced_cron_job("retrain-trigger", NAMESPACE)
    assert check.spec.schedule == "*/5 * * * *" and check.spec.concurrency_policy == "Forbid"
    pod = check.spec.job_template.spec.template.spec
    assert pod.containers[0].command == ["jupyter-mlops", "scheduler", "--once", "--only", "retrain"]
    assert any(e.name == "MLOPS_STORE_URL" and e.value_from.secret_key_ref.name == "team-store"
               for e in pod.containers[0].env)
    [row] = [s for s in jupyter_mlops.schedules(workspace=workspace) if s["name"] == "retrain"]
    assert row["notebook"] == "/opt/mlops/notebook/digits.ipynb"  # where the image has it, for the pod
    with pytest.raises(MlopsError, match="--store-secret"):
        jupyter_mlops.add_schedule(notebook, "drifting", on_drift="digits", backend="kubernetes",
                                   **{**options, "store_secret": None})


def test_a_sweep_on_kubernetes_is_one_indexed_job_with_a_run_per_trial(kubeconfig, cluster, real_image, tmp_path):
    import jupyter_mlops

    tag, podman_run, _ = real_image
    notebook = digits(tmp_path)
    controller = Controller(cluster, podman_run)
    try:
        sweep = jupyter_mlops.sweep(notebook, {"C": "1,10"}, backend="kubernetes", image=tag, namespace=NAMESPACE,
                                    artifacts_secret="s3-creds", parallel=2, maximize="accuracy")
    finally:
        controller.close()
    assert sweep["status"] == "succeeded", [t["error"] for t in sweep["trials"]]
    assert [t["params"]["C"] for t in sweep["trials"]] == [1.0, 10.0]
    assert all(t["status"] == "succeeded" and t["metrics"]["accuracy"] > 0.9 for t in sweep["trials"])
    assert sweep["best"]["id"] in {t["id"] for t in sweep["trials"]}
    table = jupyter_mlops.list_runs(workspace=tmp_path / ".mlops", sweep_id=sweep["id"])
    assert len(table) == 2


def test_a_progressive_rollout_on_kubernetes_patches_the_route_and_promotes(kubeconfig, cluster, artifacts,
                                                                            tmp_path):
    """Issue 20, part 3 on Kubernetes: the same controller reads every pod's /metrics (found through the variants'
    EndpointSlices), patches the HTTPRoute's weights step by step, and at the end makes the primary Deployment
    serve the canary's version and deletes the canary's objects. Two real model servers on 127.0.0.1 stand in
    for the pods, and the test plays the gateway, sending traffic by the HTTPRoute's weights as it finds them."""
    import random

    import requests
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from sklearn.datasets import load_digits

    import jupyter_mlops
    from jupyter_mlops import rollout
    from jupyter_mlops.engines.kubernetes import load_client
    from jupyter_mlops.serving.app import create_app
    from jupyter_mlops.serving.server import load, serve_in_background
    from jupyter_mlops.workspace import Workspace

    notebook = digits(tmp_path)
    workspace = tmp_path / ".mlops"
    for c in (5, 5):
        jupyter_mlops.register(jupyter_mlops.run(notebook, {"C": c})["id"], "digits", workspace=workspace)
    jupyter_mlops.promote("digits", 1, workspace=workspace)
    options = dict(image="registry.example.com/digits:1", namespace=NAMESPACE, store_secret="team-store",
                   workspace=workspace)
    lines = jupyter_mlops.deploy("digits", canary=2, progressive=True, steps="20,60,100", interval="1s",
                                 min_requests=20, max_p99_ratio=1000.0,  # the mechanics, not the latency rule
                                 backend="kubernetes", **options)["lines"]
    assert lines[5:9] == ["created ServiceAccount/digits-rollout", "created Role/digits-rollout",
                          "created RoleBinding/digits-rollout", "created CronJob/digits-rollout"]
    assert lines[-1].startswith("rolling out canary version 2 progressively: 20%, then 60%, production")
    api = load_client()
    cron = client.BatchV1Api(api).read_namespaced_cron_job("digits-rollout", NAMESPACE)
    pod = cron.spec.job_template.spec.template.spec
    assert pod.containers[0].command == ["jupyter-mlops", "scheduler", "--once", "--rollout", "digits"]
    assert pod.service_account_name == "digits-rollout" and pod.automount_service_account_token is True
    role = client.RbacAuthorizationV1Api(api).read_namespaced_role("digits-rollout", NAMESPACE)
    assert {r.resources[0]: r.verbs for r in role.rules}["httproutes"] == ["get", "create", "patch"]
    [recorded] = Workspace(workspace).store.rollouts(name="digits")
    assert recorded["settings"]["kubernetes"]["store_secret"] == "team-store"  # a Secret's name, never its value

    ws = Workspace(workspace)
    pods = {v: serve_in_background(create_app(load(ws, f"digits:{v}"))) for v in (1, 2)}  # each serves its own
    discovery = client.DiscoveryV1Api(api)
    for variant, version in (("primary", 1), ("canary", 2)):
        port = int(pods[version].url.rsplit(":", 1)[1])
        discovery.create_namespaced_endpoint_slice(NAMESPACE, {
            "metadata": {"name": f"digits-{variant}-x1", "labels": {"kubernetes.io/service-name": f"digits-{variant}"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
    routes = client.CustomObjectsApi(api)
    seen_weights: list[list[int]] = []
    stop = threading.Event()

    def gateway():
        rows = load_digits().data[:20].tolist()
        with requests.Session() as session:
            while not stop.is_set():
                route = routes.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE,
                                                            "httproutes", "digits")
                backends = route["spec"]["rules"][0]["backendRefs"]
                weights = [b["weight"] for b in backends]
                if not seen_weights or seen_weights[-1] != weights:
                    seen_weights.append(weights)
                for _ in range(20):
                    chosen = random.choices(backends, weights=[b["weight"] for b in backends])[0]
                    url = pods[2 if chosen["name"] == "digits-canary" else 1].url
                    session.post(f"{url}/invocations", json={"instances": rows[:1]})

    sender = threading.Thread(target=gateway, daemon=True)
    sender.start()
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            rollout.advance(ws)  # what the CronJob's pod runs each minute (here, as fast as the test wants)
            found = jupyter_mlops.deploy_history("digits", workspace=workspace)[0]
            if found["status"] != "running":
                break
            time.sleep(0.3)
    finally:
        stop.set()
        sender.join(10)
        for server in pods.values():
            server.stop()
    assert found["status"] == "promoted", found
    assert [d["action"] for d in found["decisions"]] == ["started", "advanced", "promoted"]
    assert found["decisions"][1]["evidence"]["requests"]["canary"] >= 20
    assert seen_weights[:2] == [[80, 20], [40, 60]], seen_weights
    route = routes.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", "digits")
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [("digits-primary", 100)]
    primary = client.AppsV1Api(api).read_namespaced_deployment("digits-primary", NAMESPACE)
    assert primary.spec.template.spec.containers[0].command[2] == "digits:2"  # the pods roll to the new version
    with pytest.raises(ApiException) as gone:
        client.AppsV1Api(api).read_namespaced_deployment("digits-canary", NAMESPACE)
    assert gone.value.status == 404
    assert next(a["version"] for a in ws.store.aliases("digits") if a["alias"] == "production") == 2
    assert ws.store.rollouts(name="digits")[0]["applied"] == "promoted:2"
    removed = jupyter_mlops.undeploy("digits", backend="kubernetes", namespace=NAMESPACE, workspace=workspace)
    assert "deleted CronJob/digits-rollout" in removed["lines"] and "deleted Role/digits-rollout" in removed["lines"]
