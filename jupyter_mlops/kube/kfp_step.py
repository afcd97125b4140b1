"""What a Kubeflow Pipelines task runs in the image: one step's compiled notebook, executed with papermill, with its
results brought where the caller finds them.

KFP's launcher only keeps what a task declares, so the step runner does what `jupyter-mlops run` does on one
machine and a pod cannot: the executed notebook (also a failed step's partial one) goes to the run's artifacts
folder, `<artifacts>/<run>/_notebooks/NN-step.ipynb`, through fsspec like every other value, and the metrics the
step's code logged (`log_metrics`) become the task's KFP Metrics output (its metadata, written to the executor
output file KFP reads after the container ends: what the KFP UI shows beside the task).

The run's folder is `<artifacts>/<run id>`: the id jupyter-mlops gave the run when its kfp engine submitted it (so
its store finds the outputs where it finds any run's), or else KFP's job id (a pipeline started from the KFP UI).

    python -m jupyter_mlops.kube.kfp_step run NOTEBOOK --artifacts URL --job JOB [--run-id ID] [--trial /trial-i]
        [--executor-input JSON] [-r NAME TEXT ...] [-y JSON]
    python -m jupyter_mlops.kube.kfp_step share STEP ... --artifacts URL --job JOB [--run-id ID] --trial /trial-i
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

NOTEBOOKS = "_notebooks"  # <run folder>/_notebooks/NN-step.ipynb: the executed step notebooks
# where KFP's launcher mounts an artifact's remote URI in the task's container (kfp.dsl.types.artifact_types)
_MOUNTS = {"gs://": "/gcs/", "s3://": "/s3/", "minio://": "/minio/"}


def folder(artifacts: str, job: str, run_id: str = "", trial: str = "") -> str:
    """The run's (and trial's) artifacts folder."""
    return f"{artifacts.rstrip('/')}/{run_id or job}{trial}"


def _local_path(uri: str) -> str | None:
    for prefix, mount in _MOUNTS.items():
        if uri.startswith(prefix):
            return mount + uri[len(prefix):]
    return None


def write_kfp_metrics(executor_input: dict, metrics: dict[str, float]) -> None:
    """The task's Metrics output, with the step's metrics as its metadata, in the executor output file."""
    outputs = executor_input.get("outputs") or {}
    output_file = outputs.get("outputFile")
    found = ((outputs.get("artifacts") or {}).get("metrics") or {}).get("artifacts") or []
    if not output_file or not found:
        return
    artifact = {"name": found[0].get("name", ""), "uri": found[0].get("uri", ""), "metadata": metrics}
    local = _local_path(artifact["uri"])
    if local:  # the launcher uploads the artifact's file: the same figures, as JSON
        os.makedirs(os.path.dirname(local), exist_ok=True)
        Path(local).write_text(json.dumps(metrics))
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    Path(output_file).write_text(json.dumps({"artifacts": {"metrics": {"artifacts": [artifact]}}}))


def bring_home(notebook: Path, run_folder: str) -> None:
    """The executed notebook into the run's folder, where the engine that submitted the run collects it."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(f"{run_folder}/{NOTEBOOKS}")
    fs.makedirs(base, exist_ok=True)
    fs.put_file(str(notebook), f"{base}/{notebook.name}")


def run_step(notebook: str, run_folder: str, parameters: dict[str, Any], executor_input: dict | None) -> int:
    """Execute the step; its notebook and metrics go home whether it succeeded or not. The exit code is KFP's
    verdict on the task."""
    import papermill

    from ..compile import ARTIFACTS_PARAMETER
    from ..metrics import read_metrics

    output = Path(tempfile.mkdtemp(prefix="mlops-step-")) / Path(notebook).name
    error = None
    try:
        papermill.execute_notebook(notebook, str(output), parameters={**parameters, ARTIFACTS_PARAMETER: run_folder},
                                   log_output=True, progress_bar=False)
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # a kernel that died, a notebook that cannot be read: still a named failure
        error = f"{type(exc).__name__}: {exc}"
    metrics: dict[str, float] = {}
    if output.exists():
        metrics = read_metrics(str(output))
        bring_home(output, run_folder)
    if executor_input:
        write_kfp_metrics(executor_input, metrics)
    if error:
        print(f"jupyter-mlops: step {Path(notebook).stem} failed: {error}", file=sys.stderr)
        return 1
    return 0


class _Parameters(argparse.Action):
    """papermill's -r NAME TEXT (raw) and -y DOCUMENT (typed), gathered in order."""

    def __call__(self, parser, namespace, values, option_string=None):
        import yaml

        given = getattr(namespace, self.dest) or {}
        if option_string == "-r":
            given[values[0]] = values[1]
        else:
            given.update(yaml.safe_load(values[0]) or {})
        setattr(namespace, self.dest, given)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.kube.kfp_step")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="execute one step's notebook")
    share = verbs.add_parser("share", help="a sweep trial's view of the steps run once for all trials")
    for p in (run, share):
        p.add_argument("--artifacts", required=True)
        p.add_argument("--job", required=True, help="KFP's job id")
        p.add_argument("--run-id", default="", help="jupyter-mlops's run id, when it submitted the run")
        p.add_argument("--trial", default="")
    run.add_argument("notebook")
    run.add_argument("--executor-input", default=None, help="KFP's executor input (JSON)")
    run.add_argument("-r", nargs=2, dest="parameters", action=_Parameters, default={})
    run.add_argument("-y", nargs=1, dest="parameters", action=_Parameters)
    share.add_argument("steps", nargs="+")
    args = parser.parse_args(argv)
    if args.verb == "share":
        from ..artifacts import share_step

        for step in args.steps:
            share_step(folder(args.artifacts, args.job, args.run_id), folder(args.artifacts, args.job, args.run_id,
                                                                            args.trial), step)
        return 0
    executor_input = json.loads(args.executor_input) if args.executor_input else None
    return run_step(args.notebook, folder(args.artifacts, args.job, args.run_id, args.trial), args.parameters,
                    executor_input)


if __name__ == "__main__":
    sys.exit(main())
