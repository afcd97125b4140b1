"""`export kfp`: a tagged notebook as a Kubeflow Pipelines v2 pipeline, written by the kfp SDK's own DSL and compiler.

One task per step, each a container component that runs the step's compiled notebook with papermill in the image
`jupyter-mlops build` made (its bundle is at /opt/mlops/bundle), through the step runner (kube/kfp_step.py): it
brings the executed notebook home to the run's folder and declares the step's metrics as the task's KFP Metrics.
The tasks' order is the pipeline's edges. Steps exchange values through the artifacts URL (object storage every
task reaches): a folder per pipeline run, named by the input `mlops_run_id` (the kfp engine's run id) or else
KFP's job id, as `jupyter-mlops run` uses one per run. The parameters cell's parameters are the pipeline's typed
inputs, with the notebook's defaults (or the -p values); each task gets only the parameters its step reads. KFP's
cache is off for every task: a cached task would leave its outputs in an earlier run's folder, where the next
task does not look. Kale's `limit:` tags (cpu, memory, nvidia.com/gpu) become each task's limits, and --cpu/--memory
each task's requests.

Nothing secret is written: the artifacts URL is checked for credentials, and object-store credentials reach the
pods the way the cluster gives them (workload identity, a service account), never as values in the YAML.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import MlopsError

BUNDLE = "/opt/mlops/bundle"  # where `jupyter-mlops build` puts the compiled bundle in the image
_RUNNER = ["python", "-m", "jupyter_mlops.kube.kfp_step"]  # the step runner, in the image with the package
_FIXED = ["artifacts", "job", "run_id"]  # every task's first inputs: where the run's folder is
RUN_ID_INPUT = "mlops_run_id"  # the pipeline's input naming the run's folder; "" (a run started in KFP): the job id
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


def sdk():
    try:
        from kfp import compiler, dsl
    except ImportError:
        raise MlopsError("Kubeflow Pipelines (`export kfp`, --backend kfp) needs the kfp SDK: pip install "
                         "'jupyter-mlops[kfp]' (kfp pins kubernetes<31: a virtual environment of its own is "
                         "the safe place)") from None
    return dsl, compiler


def _inputs(pipeline, given: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """The pipeline's inputs: each parameter's type and default (a -p value, typed, wins), refused with its name
    when KFP cannot declare it."""
    from ..parameters import coerce_parameters

    values = coerce_parameters(pipeline.parameters, dict(given))
    found = {}
    for name, parameter in pipeline.parameters.items():
        value = values.get(name, parameter.default)
        kind = parameter.type if parameter.type in _TYPES else type(value).__name__
        if kind not in _TYPES or value is None:
            raise MlopsError(f"parameter `{name}` = {parameter.source} has no literal value whose type KFP can "
                             f"declare: give one with -p {name} VALUE")
        found[name] = (_TYPES[kind], value)
    return found


def _component(dsl, image: str, notebook: str, step, inputs: dict[str, tuple[type, Any]], trial: bool = False,
               as_json: set[str] = frozenset()):
    """The container component of one step: the step runner (kube/kfp_step.py) executes its compiled notebook with
    papermill in the run's artifacts folder (and trial's, in a sweep's loop), given the parameters the step reads
    (strings raw, the others as one JSON document), and declares the step's metrics as the task's Metrics output.
    `as_json`: parameters given as their JSON text (a sweep's values, from the loop's items, whose fields KFP types
    as strings)."""
    names = [n for n in inputs if n in step.parameters]
    fixed = _FIXED + (["trial"] if trial else [])
    typed_as = {n: str if n in as_json else inputs[n][0] for n in names}

    def body(*values):
        given = list(values[len(fixed):len(fixed) + len(names)])
        args = ["run", f"{BUNDLE}/steps/{notebook}", *_where(dict(zip(fixed, values))),
                "--executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
        typed = [(n, v) for n, v in zip(names, given) if inputs[n][0] is not str or n in as_json]
        for name, value in zip(names, given):
            if inputs[name][0] is str and name not in as_json:
                args += ["-r", name, value]
        if typed:
            pieces: list[Any] = ["{"]
            for i, (name, value) in enumerate(typed):
                pieces += [("" if i == 0 else ", ") + json.dumps(name) + ": ", value]
            args += ["-y", dsl.ConcatPlaceholder(pieces + ["}"])]
        return dsl.ContainerSpec(image=image, command=_RUNNER, args=args)

    return dsl.container_component(_interface(body, step.name, [(n, str) for n in fixed] +
                                              [(n, typed_as[n]) for n in names] +
                                              [("metrics", dsl.Output[dsl.Metrics])]))


def _where(values: dict) -> list:
    """The step runner's arguments that name the run's folder: <artifacts>/<run id or KFP job id>[/trial-i]."""
    args = ["--artifacts", values["artifacts"], "--job", values["job"], "--run-id", values["run_id"]]
    return args + (["--trial", values["trial"]] if "trial" in values else [])


def _interface(body, name: str, parameters: list[tuple[str, type]], defaults: dict | None = None):
    """`body` given the name and typed signature kfp reads a component's (or pipeline's) interface from."""
    made = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t,
                              **({"default": defaults[n]} if defaults and n in defaults else {}))
            for n, t in parameters]
    body.__name__ = name
    body.__signature__ = inspect.Signature(made)
    body.__annotations__ = {p.name: p.annotation for p in made}
    return body


def _share(dsl, image: str, steps: list[str]):
    """A trial's first task in a sweep: the outputs of the steps no swept parameter reaches, run once for all the
    trials, made readable in the trial's folder (artifacts.share_step)."""
    def body(*values):
        return dsl.ContainerSpec(image=image, command=_RUNNER,
                                 args=["share", *steps, *_where(dict(zip(_FIXED + ["trial"], values)))])

    return dsl.container_component(_interface(body, "share-steps", [(n, str) for n in _FIXED + ["trial"]]))


def swept_names(trials: list[dict]) -> set[str]:
    """The parameters whose values differ between a sweep's points: the loop's items; the steps none of them
    reaches run once for every trial."""
    return {n for n in trials[0] if len({json.dumps(t[n], default=str) for t in trials}) > 1} if trials else set()


def _trials(notebook, parameters: dict, sweep: dict | None, samples: int | None, parallel: int,
            trials: list[dict] | None) -> tuple[list[dict], set[str], dict]:
    """The sweep's points, the parameters whose values differ between them (the loop's items) and the parameters
    with the values every trial shares."""
    if sweep:
        from ..trials import plan_sweep

        plan = plan_sweep(notebook, {**parameters, **sweep}, samples=samples, search="random" if samples else "grid",
                          parallel=parallel)
        trials = plan.points.points
    if not trials:
        return [], set(), parameters
    swept = swept_names(trials)
    if not swept:
        raise MlopsError("nothing to sweep: every trial has the same values; give a parameter several values, "
                         "e.g. -p C 0.1,1,10")
    return trials, swept, {**parameters, **{n: v for n, v in trials[0].items() if n not in swept}}


def _resources(task, step, cpu: str, memory: str) -> None:
    """--cpu/--memory as the task's requests; a step's `limit:` tags as its limits, a cpu or memory limit also as
    its request (as on the Kubernetes engine: a limit below the default request would be refused, one above it
    would not be scheduled for what it asks)."""
    limits = step.pod.get("limits", {})
    task.set_cpu_request(limits.get("cpu", cpu)).set_memory_request(limits.get("memory", memory))
    for key, value in limits.items():
        if key == "cpu":
            task.set_cpu_limit(value)
        elif key == "memory":
            task.set_memory_limit(value)
        elif key.endswith("/gpu"):  # nvidia.com/gpu, amd.com/gpu
            task.set_accelerator_type(key).set_accelerator_limit(value)


def export(notebook: str | Path, output: str | Path, image: str, parameters: dict[str, Any] | None = None,
           artifacts: str | None = None, cpu: str = "1", memory: str = "2Gi", sweep: dict[str, Any] | None = None,
           samples: int | None = None, parallel: int = 2, trials: list[dict] | None = None,
           trial_folder: str = "/trial-{i}") -> Path:
    """Write the pipeline's YAML to `output`; returns its path. Every argument is checked before kfp is asked.
    `sweep` (-p NAME 0.1,1,10 with --sweep): the trials in a KFP ParallelFor (`parallel` at once), each in a
    folder of its own under the run's; the steps no swept parameter reaches run once, before the loop, and each
    trial reads their outputs. `trials`: the sweep's points planned already (`sweep --backend kfp`), instead of
    `sweep`; `trial_folder`: what trial i's folder adds to the run's."""
    import os

    from ..compile import step_filename
    from ..pipeline import build_pipeline
    from .manifests import Target

    artifacts = artifacts or os.environ.get("MLOPS_ARTIFACTS_URL")
    if not artifacts or "://" not in artifacts:
        raise MlopsError("the tasks exchange values through object storage every pod reaches: give --artifacts "
                         "s3://bucket/prefix (or set MLOPS_ARTIFACTS_URL)")
    from .manifests import credentials_in_url

    found = credentials_in_url(artifacts)
    if found:
        raise MlopsError(f"--artifacts holds credentials ({found}): give the bare URL; the pods get their "
                         "object-store credentials from the cluster (workload identity, a service account)")
    Target(image, artifacts_url=artifacts, cpu=cpu, memory=memory).check()  # the image's reference, the sizes
    pipeline = build_pipeline(Path(notebook))
    trials, swept, parameters = _trials(notebook, parameters or {}, sweep, samples, parallel, trials)
    inputs = _inputs(pipeline, {**(parameters or {}), **(trials[0] if trials else {})})
    looped = pipeline.reached_by(swept) if swept else set()
    dsl, compiler = sdk()
    components = {step.name: _component(dsl, image, step_filename(i, step), step, inputs, step.name in looped,
                                        swept if step.name in looped else set())
                  for i, step in enumerate(pipeline.steps)}
    fixed = {n: v for n, v in inputs.items() if not trials or n not in swept}

    def where(given: dict) -> dict:
        return {"artifacts": given["mlops_artifacts"], "job": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                "run_id": given[RUN_ID_INPUT]}

    def task_of(step, given: dict, tasks: dict, **trial: Any):
        task = components[step.name](**where(given), **trial, **{n: given[n] for n in inputs if n in step.parameters})
        task.set_display_name(step.name).set_caching_options(False)
        for upstream in step.depends_on:
            task.after(tasks[upstream])
        _resources(task, step, cpu, memory)
        tasks[step.name] = task

    def run(*values):
        given = dict(zip([*fixed, "mlops_artifacts", RUN_ID_INPUT], values))
        tasks: dict[str, Any] = {}
        for step in pipeline.steps:  # in DAG order: a step's upstream tasks exist before it
            if step.name not in looped:
                task_of(step, given, tasks)
        if not trials:
            return
        items = [{"trial": trial_folder.format(i=i), **{n: json.dumps(t[n]) for n in swept}}
                 for i, t in enumerate(trials)]
        with dsl.ParallelFor(items=items, parallelism=parallel) as item:
            shared = [s.name for s in pipeline.steps if s.name not in looped]
            first = None
            if shared:
                first = _share(dsl, image, shared)(**where(given), trial=item.trial)
                first.set_caching_options(False).after(*(tasks[n] for n in shared))
            inner = dict(tasks)
            for step in pipeline.steps:
                if step.name in looped:
                    task_of(step, {**given, **{n: getattr(item, n) for n in swept}}, inner, trial=item.trial)
                    if first is not None:
                        inner[step.name].after(first)

    _interface(run, Path(notebook).stem, [(n, t) for n, (t, _) in fixed.items()] + [("mlops_artifacts", str),
                                                                                     (RUN_ID_INPUT, str)],
               {**{n: v for n, (_, v) in fixed.items()}, "mlops_artifacts": artifacts, RUN_ID_INPUT: ""})
    name = "".join(c if c.isalnum() else "-" for c in Path(notebook).stem.lower()).strip("-") or "notebook"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(dsl.pipeline(name=name, description=f"{Path(notebook).name}, compiled by "
                                                                   "jupyter-mlops")(run), str(output))
    return output
