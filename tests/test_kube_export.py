"""`jupyter-mlops export k8s`: every manifest valid against the official Kubernetes schemas of two versions,
secure by default, and the sweep's Indexed Job picking its trial as a real run would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.kube.export import export
from jupyter_mlops.kube.manifests import Target

from conftest import register_digits

KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kube")
    register_digits(folder, ("5", "1", "0.5"))
    return folder


def load(folder: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


@pytest.fixture(scope="module")
def exported(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    target = Target("registry.example.com/team/digits:1.0", "ml-team", artifacts_url="s3://bucket/mlops",
                    artifacts_secret="mlops-s3", store_secret="mlops-store")
    notebook = project / "digits.ipynb"
    export(notebook, out / "run", target, parameters={"C": "2"}, schedule="0 3 * * *", timezone="Europe/Paris",
           model="digits", canary=2, weight=20, shadow=3)
    export(notebook, out / "sweep", target, sweep={"C": "0.1,1,10", "gamma": "0.001,0.01"}, parallel=3)
    return {**load(out / "run"), **{f"sweep/{k}": v for k, v in load(out / "sweep").items()}}


def test_every_manifest_validates_against_the_official_schemas(exported):
    import kubernetes_validate

    kinds = sorted({m["kind"] for m in exported.values()})
    assert kinds == ["ConfigMap", "CronJob", "Deployment", "HTTPRoute", "Job", "Service"]
    for version in KUBERNETES_VERSIONS:
        for name, manifest in exported.items():
            if manifest["kind"] == "HTTPRoute":
                continue  # a Gateway API CRD: not in Kubernetes' own schemas (checked below field by field)
            kubernetes_validate.validate(manifest, version, strict=True)  # raises naming the field


def test_pods_run_unprivileged_and_get_secrets_only_by_reference(exported, monkeypatch):
    pods = []
    for manifest in exported.values():
        spec = manifest.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            pods.append(template["spec"])
    assert len(pods) == 6  # run, cronjob, sweep, primary, canary, shadow
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]
            store = next(e for e in container["env"] if e["name"] == "MLOPS_STORE_URL")
            assert store["valueFrom"]["secretKeyRef"] == {"name": "mlops-store", "key": "url"}
            assert container["envFrom"] == [{"secretRef": {"name": "mlops-s3"}}]


def test_no_secret_value_is_written(project, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_STORE_URL", f"sqlite:///{project / '.mlops' / 'mlops.db'}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    export(project / "digits.ipynb", tmp_path / "out", Target("img:1", store_secret="store"), model="digits")
    text = "".join(p.read_text() for p in (tmp_path / "out").glob("*.yaml"))
    assert "s3cr3t-value" not in text and "sqlite" not in text
    # issue 14, item 13: a token without a colon, and credentials in the query, were copied into run-job.yaml
    for url in ("s3://key:secret@bucket/x", "s3://TOKEN@bucket/p", "s3://bucket/p?secret_access_key=s3cr3t-value",
                "gs://bucket/p?X-Goog-Signature=abc", "az://container/p?sv=2024&sig=abc"):
        with pytest.raises(MlopsError, match="--artifacts-secret") as refused:
            export(project / "digits.ipynb", tmp_path / "bad", Target("img:1", artifacts_url=url))
        assert "s3cr3t" not in str(refused.value) and "TOKEN" not in str(refused.value)
    assert not (tmp_path / "bad").exists()


def test_serving_splits_and_mirrors_traffic_by_httproute(exported):
    route = exported["serve-httproute-digits.yaml"]
    rule = route["spec"]["rules"][0]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["spec"]["parentRefs"] == [
        {"name": "mlops-gateway"}]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("digits-primary", 80), ("digits-canary", 20)]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "digits-shadow",
                                                                                          "port": 80}}}]
    services = {m["metadata"]["name"]: m for m in exported.values() if m["kind"] == "Service"}
    deployments = {m["metadata"]["name"]: m for m in exported.values() if m["kind"] == "Deployment"}
    assert set(services) == set(deployments) == {"digits-primary", "digits-canary", "digits-shadow"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in services[name]["spec"]["selector"].items())
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    versions = {n: d["spec"]["template"]["spec"]["containers"][0]["command"][2] for n, d in deployments.items()}
    assert versions == {"digits-primary": "digits:1", "digits-canary": "digits:2", "digits-shadow": "digits:3"}


def test_schedule_becomes_a_cronjob(exported):
    cron = exported["schedule-cronjob.yaml"]["spec"]
    assert cron["schedule"] == "0 3 * * *" and cron["timeZone"] == "Europe/Paris"
    assert cron["concurrencyPolicy"] == "Forbid"  # overlap: skip a tick while the last run still runs
    command = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["jupyter-mlops", "run", "/opt/mlops/notebook/digits.ipynb", "-p", "C", "2.0"]


def test_sweep_is_an_indexed_job_whose_pods_run_their_trial(exported, project, tmp_path):
    job = exported["sweep/sweep-job.yaml"]["spec"]
    trials = json.loads(exported["sweep/sweep-configmap.yaml"]["data"]["trials.json"])
    assert job["completionMode"] == "Indexed" and job["completions"] == len(trials) == 6 and job["parallelism"] == 3
    command = job["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--trial-of", "/etc/mlops-sweep/trials.json"]
    # what pod 4 does: the real CLI, the index from the environment, the trial's parameters in the run
    trials_file = tmp_path / "trials.json"
    trials_file.write_text(exported["sweep/sweep-configmap.yaml"]["data"]["trials.json"])
    env = {**os.environ, "JOB_COMPLETION_INDEX": "4"}
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "run", str(project / "digits.ipynb"),
                           "--trial-of", str(trials_file), "--json"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] | trials[4] == json.loads(done.stdout)["params"]
    env.pop("JOB_COMPLETION_INDEX")
    missing = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "run", str(project / "digits.ipynb"),
                              "--trial-of", str(trials_file)], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "JOB_COMPLETION_INDEX" in missing.stderr


@pytest.mark.parametrize("change,message", [
    (dict(target=Target("img with space")), "--image"),
    (dict(target=Target("img:1", namespace="Team_A")), "--namespace"),
    (dict(schedule="0 3 * *"), "cron"),
    (dict(schedule="0 3 * * *", timezone="Mars/Base"), "Mars/Base"),
    (dict(parameters={"Cee": "1"}), "Cee"),
    (dict(model="digits", canary=2, weight=120), "--weight"),
    (dict(model="digits", canary=9), "9"),
])
def test_bad_input_names_the_flag_and_writes_nothing(project, tmp_path, change, message):
    options = {"target": Target("img:1"), **change}
    with pytest.raises(MlopsError, match=message):
        export(project / "digits.ipynb", tmp_path / "out", options.pop("target"), **options)
    assert not (tmp_path / "out").exists()


def test_cli_export(project, tmp_path):
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "export", "k8s", str(project / "digits.ipynb"),
                           "-o", str(tmp_path / "k8s"), "--image", "img:1", "--namespace", "ml"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [Path(line).name for line in done.stdout.split()] == ["run-job.yaml"]


def test_kale_pod_hints_shape_the_pods_of_the_run_schedule_and_sweep(tmp_path):
    import kubernetes_validate

    from conftest import write_notebook

    notebook = write_notebook(tmp_path / "kale.ipynb", [
        ("C = 1.0", "pipeline-parameters"),
        ("x = [1, 2, 3]", "block:load", "label:team:vision", "limit:memory:3Gi"),
        ("y = sum(x) * C", "block:train", "prev:load", "limit:nvidia.com/gpu:1", "limit:memory:6Gi",
         "annotation:sidecar.istio.io/inject:false")])
    target = Target("registry.example.com/team/kale:1", "ml-team", artifacts_url="s3://bucket/mlops")
    export(notebook, tmp_path / "run", target, schedule="0 3 * * *")
    export(notebook, tmp_path / "sweep", target, sweep={"C": "0.5,1"})
    manifests = {**load(tmp_path / "run"), **load(tmp_path / "sweep")}
    templates = [manifests["run-job.yaml"]["spec"]["template"],
                 manifests["schedule-cronjob.yaml"]["spec"]["jobTemplate"]["spec"]["template"],
                 manifests["sweep-job.yaml"]["spec"]["template"]]
    for template in templates:
        resources = template["spec"]["containers"][0]["resources"]
        assert resources["limits"] == {"memory": "6Gi", "nvidia.com/gpu": "1"}  # the largest memory of the steps
        assert resources["requests"]["memory"] == "6Gi"
        assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
        assert template["metadata"]["labels"]["team"] == "vision"
        assert template["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jupyter-mlops"
    for version in KUBERNETES_VERSIONS:
        for manifest in manifests.values():
            kubernetes_validate.validate(manifest, version, strict=True)


def test_a_malformed_pod_hint_is_refused_before_anything_is_written(tmp_path):
    from conftest import write_notebook

    from jupyter_mlops.errors import NotebookError

    notebook = write_notebook(tmp_path / "bad.ipynb", [("x = 1", "block:train", "limit:memory:lots"),
                                                        ("y = x", "block:eval", "label:team:not ok!")])
    with pytest.raises(NotebookError) as info:
        export(notebook, tmp_path / "out", Target("registry.example.com/a:1"))
    text = str(info.value)
    assert "`lots` is not a Kubernetes quantity" in text and "cell 1" in text
    assert "`not ok!` is not a Kubernetes label value" in text and "cell 2" in text
    assert not (tmp_path / "out").exists()


def test_a_triggered_schedules_check_cronjob_validates_and_checks_at_its_interval():
    import kubernetes_validate

    from jupyter_mlops.kube.manifests import Target, check_every, trigger_cron_job

    job = trigger_cron_job(Target(image="registry.example.com/orders:1", store_secret="team-store"), "retrain",
                           "retrain", 300.0, {"limits": {"memory": "2Gi"}})
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert job["spec"]["schedule"] == "*/5 * * * *"
    assert [check_every(s) for s in (10, 60, 1800, 3600, 6 * 3600, 86400 * 3)] == [
        "* * * * *", "* * * * *", "*/30 * * * *", "0 * * * *", "0 */6 * * *", "0 */23 * * *"]
