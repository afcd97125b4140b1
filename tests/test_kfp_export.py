"""Issue 21, item 1: `export kfp` writes a Kubeflow Pipelines v2 pipeline with the kfp SDK. The YAML is read back by
the kfp SDK and checked (a task per step, the edges, typed inputs, resources, no credentials); then every task's
container command, exactly as written, is run in order the way KFP's executor would run it (placeholders filled
from the pipeline's inputs), against the bundle `jupyter-mlops build` puts in the image, sharing an artifacts URL.

kfp pins kubernetes<31 and exact requests/urllib3 versions, so it gets a virtual environment of its own (with this
environment's packages visible), built once per test session from the package registry."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES
from kfp_standin import Executor


def _notebook(folder: Path) -> Path:
    """The digits example, its train step asking (in Kale's grammar) for 2 CPUs, 3Gi and a GPU."""
    nb = json.loads((EXAMPLES / "digits.ipynb").read_text())
    train = next(c for c in nb["cells"] if "train" in c["metadata"].get("tags", []))
    train["metadata"]["tags"] += ["limit:cpu:2", "limit:memory:3Gi", "limit:nvidia.com/gpu:1"]
    path = folder / "digits.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _export(python: str, notebook: Path, out: Path, *args: str,
            image: str = "registry.example.com/digits:1") -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "jupyter_mlops.cli", "export", "kfp", str(notebook), "-o", str(out),
                           "--image", image, *args], capture_output=True, text=True, timeout=300)


def test_the_pipeline_is_read_back_by_the_kfp_sdk(kfp_python, tmp_path):
    notebook = _notebook(tmp_path)
    done = _export(kfp_python, notebook, tmp_path / "pipeline.yaml", "--artifacts", "s3://team/mlops", "-p", "C", "2")
    assert done.returncode == 0, done.stderr
    read = subprocess.run([kfp_python, "-c", (
        "import json, sys\nfrom kfp import components\nfrom kfp.pipeline_spec import pipeline_spec_pb2 as pb\n"
        "c = components.load_component_from_file(sys.argv[1])\nspec = c.pipeline_spec\n"
        "kind = pb.ParameterType.ParameterTypeEnum.Name\n"
        "print(json.dumps({'inputs': {k: [kind(v.parameter_type), v.default_value] for k, v in "
        "spec.root.input_definitions.parameters.items()}, "
        "'tasks': {k: list(t.dependent_tasks) for k, t in spec.root.dag.tasks.items()}}, default=str))"),
        str(tmp_path / "pipeline.yaml")], capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    found = json.loads(read.stdout)
    assert found["tasks"] == {"data": [], "train": ["data"], "evaluate": ["data", "train"], "serve": ["data", "train"]}
    types = {name: kind for name, (kind, _) in found["inputs"].items()}
    assert types == {"C": "NUMBER_DOUBLE", "gamma": "NUMBER_DOUBLE", "test_size": "NUMBER_DOUBLE",
                     "seed": "NUMBER_INTEGER", "mlops_artifacts": "STRING", "mlops_run_id": "STRING"}
    spec = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults["C"] == 2.0 and defaults["mlops_artifacts"] == "s3://team/mlops"  # -p C 2 became the default
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["image"] == "registry.example.com/digits:1"
    assert train["command"] == ["python", "-m", "jupyter_mlops.kube.kfp_step"]  # the step runner, in the image
    assert train["args"][:2] == ["run", "/opt/mlops/bundle/steps/02-train.ipynb"]
    assert train["resources"]["resourceCpuLimit"] == "2" and train["resources"]["resourceMemoryLimit"] == "3Gi"
    assert train["resources"]["resourceCpuRequest"] == "2" and train["resources"]["resourceMemoryRequest"] == "3Gi"
    assert executors["exec-data"]["container"]["resources"]["resourceCpuRequest"] == "1"  # --cpu's default
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in executors["exec-data"]["container"]["resources"]
    inputs = spec["components"]["comp-data"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"artifacts", "job", "run_id", "seed", "test_size"}  # only what the data step reads
    metrics = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]["metrics"]
    assert metrics["artifactType"]["schemaTitle"] == "system.Metrics"  # log_metrics, as KFP shows metrics
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in spec["root"]["dag"]["tasks"].values())


def test_bad_exports_are_refused_naming_the_problem(kfp_python, tmp_path):
    notebook = _notebook(tmp_path)
    out = tmp_path / "p.yaml"
    secret = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops?X-Amz-Signature=abc")
    assert secret.returncode == 1 and "--artifacts holds credentials" in secret.stderr and "abc" not in secret.stderr
    missing = _export(kfp_python, notebook, out)
    assert missing.returncode == 1 and "give --artifacts s3://bucket/prefix" in missing.stderr
    cron = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops", "--schedule", "0 3 * * *")
    assert cron.returncode == 1 and "--schedule is not part of `export kfp`" in cron.stderr
    flat = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops", "--sweep", "-p", "C", "1")
    assert flat.returncode == 1 and "nothing to sweep" in flat.stderr
    typed = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops", "-p", "seed", "zero")
    assert typed.returncode == 1 and "seed" in typed.stderr
    assert not out.exists()


def _executor(kfp_python: str, tmp_path: Path, *args: str) -> Executor:
    notebook = _notebook(tmp_path)
    done = _export(kfp_python, notebook, tmp_path / "pipeline.yaml", "--artifacts",
                   f"file://{tmp_path / 'artifacts'}", *args)
    assert done.returncode == 0, done.stderr
    context = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "build", str(notebook), "--context-only",
                              "-o", str(tmp_path / "context")], capture_output=True, text=True, timeout=300)
    assert context.returncode == 0, context.stderr
    return Executor(yaml.safe_load((tmp_path / "pipeline.yaml").read_text()), tmp_path / "context" / "bundle",
                    tmp_path / "out")


def test_every_task_runs_as_written_and_the_steps_share_their_values(kfp_python, tmp_path):
    """What ran for real: each task's command from the YAML (the step runner, papermill inside it), in the DAG's
    order, on the image's bundle (`build --context-only`), values passed through a file:// artifacts URL. The
    executed notebooks come home to the run's folder, and the metrics the code logged are the evaluate task's KFP
    Metrics. Not run: the KFP backend itself (no cluster here): its driver and launcher are played (kfp_standin)."""
    import jupyter_mlops
    from jupyter_mlops.metrics import read_metrics

    executor = _executor(kfp_python, tmp_path, "-p", "C", "2")
    executor.run()
    assert executor.ran[:2] == ["data", "train"] and len(executor.ran) == 4
    run_folder = tmp_path / "artifacts" / executor.job  # no mlops_run_id given: KFP's job id names the folder
    assert (run_folder / "train").is_dir()  # the model, where evaluate found it
    assert sorted(p.name for p in (run_folder / "_notebooks").iterdir()) == [
        "01-data.ipynb", "02-train.ipynb", "03-evaluate.ipynb", "04-serve.ipynb"]
    accuracy = read_metrics(str(run_folder / "_notebooks" / "03-evaluate.ipynb"))["accuracy"]
    local = jupyter_mlops.run(_notebook(tmp_path), {"C": 2}, workspace=tmp_path / ".mlops")
    assert accuracy == pytest.approx(local["metrics"]["accuracy"])  # the same result as `jupyter-mlops run`
    metrics = executor.outputs["evaluate"]["artifacts"]["metrics"]["artifacts"][0]
    assert metrics["name"] == "evaluate-metrics" and metrics["metadata"]["accuracy"] == pytest.approx(accuracy)
    assert executor.outputs["data"]["artifacts"]["metrics"]["artifacts"][0]["metadata"] == {}  # it logs none


def test_a_sweep_is_a_parallel_for_that_shares_the_steps_no_swept_parameter_reaches(kfp_python, tmp_path):
    """--sweep -p C 0.05,5: the data step (which C does not reach) runs once, before the loop; each trial first
    links its outputs into the trial's folder, then runs train, evaluate and serve with its own C."""
    from jupyter_mlops.metrics import read_metrics

    executor = _executor(kfp_python, tmp_path, "--sweep", "-p", "C", "0.05,5", "--parallel", "2")
    loop = next(t for t in executor.spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    assert "C" not in executor.spec["root"]["inputDefinitions"]["parameters"]  # swept: the loop's items give it
    executor.run()
    assert executor.ran.count("data") == 1 and executor.ran[0] == "data"
    trials = sorted({name.split("/")[0] for name in executor.ran if "/" in name})
    assert len(trials) == 2
    for trial in trials:
        assert [n.split("/")[1] for n in executor.ran if n.startswith(trial + "/")] == \
            ["share-steps", "train", "evaluate", "serve"]
    run_folder = tmp_path / "artifacts" / executor.job
    accuracies = [read_metrics(str(run_folder / f"trial-{i}" / "_notebooks" / "03-evaluate.ipynb"))["accuracy"]
                  for i in range(2)]
    assert accuracies[0] < accuracies[1]  # C=0.05 against C=5: each trial ran with its own value
    assert sorted(p.name for p in run_folder.iterdir()) == ["_notebooks", "data", "trial-0", "trial-1"]
    assert (tmp_path / "artifacts" / executor.job / "trial-0" / "data").is_symlink()  # shared, not recomputed


def test_kfps_own_local_runner_runs_the_pipeline_in_the_image(kfp_python, digits_image, podman, tmp_path):
    """Item 4, run by KFP's own code: kfp.local's DockerRunner (its SubprocessRunner takes lightweight Python
    components only) executes the compiled YAML, each task a container of the image `jupyter-mlops build` made,
    through podman's Docker-compatible API, offline. kfp.local resolves the placeholders, hands over the executor
    input and reads the executor output back: the evaluate task's Metrics carry the accuracy the notebook logged."""
    from jupyter_mlops.metrics import read_metrics

    tag, _, _ = digits_image
    env, _ = podman
    socket = tmp_path / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.1)
        root = tmp_path / "root"
        root.mkdir()
        root.chmod(0o777)  # the image runs as a user of its own; kfp.local mounts the root at the same path
        done = _export(kfp_python, _notebook(tmp_path), tmp_path / "pipeline.yaml", "--artifacts",
                       f"file://{root / 'artifacts'}", "-p", "C", "2", image=tag)
        assert done.returncode == 0, done.stderr
        done = subprocess.run([kfp_python, "-c", (
            "import sys\nfrom kfp import components, local\n"
            "local.init(runner=local.DockerRunner(network_mode='none'), pipeline_root=sys.argv[2])\n"
            "components.load_component_from_file(sys.argv[1])()"),
            str(tmp_path / "pipeline.yaml"), str(root)], capture_output=True, text=True, timeout=900,
            env={**env, "DOCKER_HOST": f"unix://{socket}"})
    finally:
        service.terminate()
        service.wait(30)
    said = done.stdout + done.stderr
    assert done.returncode == 0 and "Pipeline \x1b[95m'digits'\x1b[0m finished with status \x1b[92mSUCCESS" in said, \
        said[-4000:]
    (job,) = (root / "artifacts").iterdir()  # kfp.local's job id names the run's folder
    accuracy = read_metrics(str(job / "_notebooks" / "03-evaluate.ipynb"))["accuracy"]
    assert accuracy > 0.9
    logged = re.search(r"uri='[^']*/evaluate/metrics',\s*metadata=\{[^}]*'accuracy': ([0-9.]+)", said)
    assert logged and float(logged[1]) == pytest.approx(accuracy), said[-4000:]  # as kfp.local read it back
