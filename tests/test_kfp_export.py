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
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES


@pytest.fixture(scope="session")
def kfp_python(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("kfp-venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "kfp>=2.7"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"pip could not install kfp: {done.stderr[-2000:]}"
    return python


def _notebook(folder: Path) -> Path:
    """The digits example, its train step asking (in Kale's grammar) for 2 CPUs, 3Gi and a GPU."""
    nb = json.loads((EXAMPLES / "digits.ipynb").read_text())
    train = next(c for c in nb["cells"] if "train" in c["metadata"].get("tags", []))
    train["metadata"]["tags"] += ["limit:cpu:2", "limit:memory:3Gi", "limit:nvidia.com/gpu:1"]
    path = folder / "digits.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _export(python: str, notebook: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "jupyter_mlops.cli", "export", "kfp", str(notebook), "-o", str(out),
                           "--image", "registry.example.com/digits:1", *args], capture_output=True, text=True,
                          timeout=300)


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
                     "seed": "NUMBER_INTEGER", "mlops_artifacts": "STRING"}
    spec = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults["C"] == 2.0 and defaults["mlops_artifacts"] == "s3://team/mlops"  # -p C 2 became the default
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["image"] == "registry.example.com/digits:1" and train["command"] == ["papermill"]
    assert train["args"][0] == "/opt/mlops/bundle/steps/02-train.ipynb"
    assert train["resources"]["resourceCpuLimit"] == "2" and train["resources"]["resourceMemoryLimit"] == "3Gi"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "accelerator" not in executors["exec-data"]["container"]["resources"]
    inputs = spec["components"]["comp-data"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"artifacts", "run_id", "seed", "test_size"}  # only what the data step reads
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in spec["root"]["dag"]["tasks"].values())


def test_bad_exports_are_refused_naming_the_problem(kfp_python, tmp_path):
    notebook = _notebook(tmp_path)
    out = tmp_path / "p.yaml"
    secret = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops?X-Amz-Signature=abc")
    assert secret.returncode == 1 and "--artifacts holds credentials" in secret.stderr and "abc" not in secret.stderr
    missing = _export(kfp_python, notebook, out)
    assert missing.returncode == 1 and "give --artifacts s3://bucket/prefix" in missing.stderr
    swept = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops", "--sweep", "-p", "C", "1,2")
    assert swept.returncode == 1 and "--sweep is not part of `export kfp`" in swept.stderr
    typed = _export(kfp_python, notebook, out, "--artifacts", "s3://team/mlops", "-p", "seed", "zero")
    assert typed.returncode == 1 and "seed" in typed.stderr
    assert not out.exists()


def _filled(arg: str, values: dict) -> str:
    """A container argument as KFP's executor hands it over: Concat joined, each input parameter as its text."""
    if arg.startswith('{"Concat"'):
        return "".join(_filled(piece, values) for piece in json.loads(arg)["Concat"])

    def text(match):
        value = values[match[1]]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return re.sub(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", text, arg)


def test_every_task_runs_as_written_and_the_steps_share_their_values(kfp_python, tmp_path):
    """What ran for real: each task's papermill command from the YAML, in the DAG's order, on the image's bundle
    (`build --context-only`), values passed through a file:// artifacts URL. Not run: the KFP backend itself (no
    cluster here), so KFP's own driver and launcher are played by this test."""
    import jupyter_mlops
    from jupyter_mlops.metrics import read_metrics

    notebook = _notebook(tmp_path)
    artifacts = f"file://{tmp_path / 'artifacts'}"
    done = _export(kfp_python, notebook, tmp_path / "pipeline.yaml", "--artifacts", artifacts, "-p", "C", "2")
    assert done.returncode == 0, done.stderr
    context = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "build", str(notebook), "--context-only",
                              "-o", str(tmp_path / "context")], capture_output=True, text=True, timeout=300)
    assert context.returncode == 0, context.stderr
    spec = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    pipeline_inputs = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    job = uuid.uuid4().hex
    tasks, ran = spec["root"]["dag"]["tasks"], []
    while len(ran) < len(tasks):
        name = next(n for n, t in tasks.items() if n not in ran and set(t.get("dependentTasks", [])) <= set(ran))
        values = {}
        for key, given in tasks[name]["inputs"]["parameters"].items():
            if "componentInputParameter" in given:
                values[key] = pipeline_inputs[given["componentInputParameter"]]
            else:
                assert given["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
                values[key] = job
        container = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]
        args = [_filled(a, values).replace("/opt/mlops/bundle", str(tmp_path / "context" / "bundle"))
                for a in container["args"]]
        args[1] = str(tmp_path / "out" / Path(args[1]).name)
        (tmp_path / "out").mkdir(exist_ok=True)
        step = subprocess.run([sys.executable, "-m", *container["command"], *args], capture_output=True, text=True,
                              timeout=600)
        assert step.returncode == 0, (name, step.stderr[-3000:])
        ran.append(name)
    assert ran[:2] == ["data", "train"]
    assert (tmp_path / "artifacts" / job / "train").is_dir()  # the train step's model, where evaluate found it
    accuracy = read_metrics(str(tmp_path / "out" / "03-evaluate.ipynb"))["accuracy"]
    local = jupyter_mlops.run(notebook, {"C": 2}, workspace=tmp_path / ".mlops")
    assert accuracy == pytest.approx(local["metrics"]["accuracy"])  # the same result as `jupyter-mlops run`
