"""Issue 21, item 3: `jupyter-mlops run --backend kfp --host URL` submits the notebook's pipeline through the kfp SDK's
own client and follows it to its end, recording the run, its steps, their notebooks and metrics in our store.

No KFP backend can run here, so the API the client talks to is a stand-in (tests/kfp_standin.py): KFP's v2beta1
REST routes, answered in the API's field names and enums (the SDK's generated models parse and validate every
answer), and a submitted run really executed: every task's container command as compiled, on the image's bundle."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES
from kfp_standin import KfpStandIn

IMAGE = "registry.example.com/digits:1"


def _notebook(folder: Path, name: str, fail_above: float | None = None) -> Path:
    """The digits example; with `fail_above`, its train step refuses a C above it (a data scientist's guard)."""
    nb = json.loads((EXAMPLES / "digits.ipynb").read_text())
    if fail_above is not None:
        train = next(c for c in nb["cells"] if "train" in c["metadata"].get("tags", []))
        train["source"] = "".join(train["source"]) + (
            f"\nif C > {fail_above}:\n    raise ValueError(f'C={{C}} overfits this data')\n")
    path = folder / name
    path.write_text(json.dumps(nb))
    return path


def _bundle(notebook: Path, folder: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "build", str(notebook), "--context-only", "-o",
                           str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder / "bundle"


def _run(kfp_python: str, notebook: Path, tmp_path: Path, *args: str, wait: bool = True, verb: str = "run"):
    env = {**os.environ, "MLOPS_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}"}
    command = [kfp_python, "-m", "jupyter_mlops.cli", verb, str(notebook), "--backend", "kfp", "--image", IMAGE,
               "--workspace", str(tmp_path / "ws"), *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _store(tmp_path: Path):
    from jupyter_mlops.workspace import Workspace

    return Workspace(tmp_path / "ws", artifacts_url=f"file://{tmp_path / 'artifacts'}").store


def test_a_run_is_submitted_followed_and_recorded_like_any_other(kfp_python, tmp_path, monkeypatch):
    import jupyter_mlops
    from jupyter_mlops.metrics import read_metrics

    notebook = _notebook(tmp_path, "digits.ipynb")
    with KfpStandIn(_bundle(notebook, tmp_path / "context"), tmp_path / "kfp") as kfp:
        done = _run(kfp_python, notebook, tmp_path, "--host", kfp.url, "-p", "C", "2")
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip()
        (kfp_run,) = kfp.runs.values()
    assert "kfp| Run details: " in done.stderr and "evaluate             ok" in done.stderr
    # what KFP was given: the run's id names its folder, the parameters as the run's arguments, no cache
    assert kfp_run["runtime_config"]["parameters"] == {"C": 2.0, "mlops_run_id": run_id}
    assert kfp_run["state"] == "SUCCEEDED" and kfp_run["display_name"] == f"digits {run_id}"
    assert [e["display_name"] for e in kfp.experiments.values()] == ["jupyter-mlops"]
    run = _store(tmp_path).get_run(run_id)
    assert run["status"] == "succeeded" and run["owner"] == f"kfp/{kfp_run['run_id']}"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("data", "succeeded"), ("train", "succeeded"), ("evaluate", "succeeded"), ("serve", "succeeded")]
    evaluate = next(s for s in run["steps"] if s["name"] == "evaluate")
    assert Path(evaluate["output_notebook"]).is_file() and evaluate["duration"] > 0
    accuracy = read_metrics(evaluate["output_notebook"])["accuracy"]
    assert run["metrics"]["accuracy"] == pytest.approx(accuracy) and accuracy > 0.9
    # the same figure KFP shows: the evaluate task's Metrics output
    outputs = kfp.executors[kfp_run["run_id"]].outputs["evaluate"]["artifacts"]["metrics"]["artifacts"][0]
    assert outputs["metadata"]["accuracy"] == pytest.approx(accuracy)
    assert (tmp_path / "ws" / "runs" / run_id / "pipeline.yaml").is_file()
    # the run's outputs are where any run's are: it registers as a local run does
    monkeypatch.setenv("MLOPS_ARTIFACTS_URL", f"file://{tmp_path / 'artifacts'}")
    version = jupyter_mlops.register(run_id, "digits", workspace=tmp_path / "ws")
    assert version["version"] == 1


def test_a_failed_step_is_named_with_its_cell_and_its_partial_notebook_comes_home(kfp_python, tmp_path):
    notebook = _notebook(tmp_path, "guarded.ipynb", fail_above=1)
    with KfpStandIn(_bundle(notebook, tmp_path / "context"), tmp_path / "kfp") as kfp:
        done = _run(kfp_python, notebook, tmp_path, "--host", kfp.url, "-p", "C", "2")
    assert done.returncode == 1
    run = _store(tmp_path).get_run(done.stdout.strip())
    assert run["status"] == "failed"
    assert run["error"].startswith("step `train` failed (cell ") and "of guarded.ipynb, KFP run " in run["error"]
    assert run["error"].endswith("ValueError: C=2 overfits this data")
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("data", "succeeded"), ("train", "failed"), ("evaluate", "skipped"), ("serve", "skipped")]
    train = next(s for s in run["steps"] if s["name"] == "train")
    outputs = [o for c in json.loads(Path(train["output_notebook"]).read_text())["cells"] for o in c.get("outputs", [])]
    assert any(o.get("ename") == "ValueError" for o in outputs)  # the partial notebook, with the error in it


@pytest.mark.parametrize("verb, args", [("run", []), ("sweep", ["-p", "C", "0.05,5"])])
def test_ctrl_c_terminates_the_kfp_run(kfp_python, tmp_path, verb, args):
    notebook = _notebook(tmp_path, "digits.ipynb")
    with KfpStandIn(_bundle(notebook, tmp_path / "context"), tmp_path / "kfp") as kfp:
        process = _run(kfp_python, notebook, tmp_path, "--host", kfp.url, *args, wait=False, verb=verb)
        _first_task_running(kfp)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
        (kfp_run,) = kfp.runs.values()
        assert ("POST", f"/apis/v2beta1/runs/{kfp_run['run_id']}:terminate") in kfp.requests
    runs = _store(tmp_path).list_runs()
    assert len(runs) == (2 if verb == "sweep" else 1)  # a sweep's trials each
    assert all(r["status"] == "cancelled" and "terminated" in r["error"] for r in runs), runs


def test_a_sweep_is_one_kfp_run_and_each_trial_a_run_here(kfp_python, tmp_path, monkeypatch):
    """sweep --backend kfp: the trials are a ParallelFor in one KFP run; the data step, which C does not reach,
    runs once; each trial is a run in the store (its steps, notebooks, metrics), the best one picked and
    registrable like any run."""
    import jupyter_mlops

    notebook = _notebook(tmp_path, "digits.ipynb")
    with KfpStandIn(_bundle(notebook, tmp_path / "context"), tmp_path / "kfp") as kfp:
        done = _run(kfp_python, notebook, tmp_path, "--host", kfp.url, "-p", "C", "0.05,5", "--maximize",
                    "accuracy", "--json", verb="sweep")
        assert done.returncode == 0, done.stderr
        (kfp_run,) = kfp.runs.values()
        ran = kfp.executors[kfp_run["run_id"]].ran
    sweep = json.loads(done.stdout)
    assert ran.count("data") == 1 and len([n for n in ran if n.endswith("/train")]) == 2
    assert sweep["status"] == "succeeded" and sweep["shared_steps"] == ["data"]
    trials = sorted(sweep["trials"], key=lambda t: t["params"]["C"])
    assert [t["params"]["C"] for t in trials] == [0.05, 5.0]
    for trial in trials:
        assert [(s["name"], s["status"]) for s in trial["steps"]] == [
            ("data", "reused"), ("train", "succeeded"), ("evaluate", "succeeded"), ("serve", "succeeded")]
        assert all(Path(s["output_notebook"]).is_file() for s in trial["steps"])
    assert trials[0]["metrics"]["accuracy"] < trials[1]["metrics"]["accuracy"]  # each trial ran with its own C
    assert sweep["best"]["id"] == trials[1]["id"]
    monkeypatch.setenv("MLOPS_ARTIFACTS_URL", f"file://{tmp_path / 'artifacts'}")
    assert jupyter_mlops.register(sweep["best"]["id"], "digits", workspace=tmp_path / "ws")["version"] == 1


def _first_task_running(kfp: KfpStandIn) -> None:
    deadline = time.time() + 120
    while not any(t.get("display_name") == "data" for r in kfp.runs.values()
                  for t in r["run_details"]["task_details"]) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the client has seen it running


def test_losing_kfp_while_following_fails_the_run_and_says_so(kfp_python, tmp_path):
    notebook = _notebook(tmp_path, "digits.ipynb")
    with KfpStandIn(_bundle(notebook, tmp_path / "context"), tmp_path / "kfp") as kfp:
        process = _run(kfp_python, notebook, tmp_path, "--host", kfp.url, wait=False)
        _first_task_running(kfp)
        kfp.server.shutdown()
        kfp.server.server_close()  # the API is gone; the run, as far as this side knows, is not over
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and f"lost Kubeflow Pipelines at --host {kfp.url}" in stderr, stderr
    assert "Traceback" not in stderr
    (run,) = _store(tmp_path).list_runs()
    assert run["status"] == "failed" and "see the run in KFP's UI" in run["error"]  # never left `running`


def test_mistakes_are_refused_before_anything_is_recorded(kfp_python, tmp_path):
    notebook = _notebook(tmp_path, "digits.ipynb")
    closed = _run(kfp_python, notebook, tmp_path, "--host", "http://127.0.0.1:9")
    assert closed.returncode == 1 and "the Kubeflow Pipelines API at --host http://127.0.0.1:9 did not answer" \
        in closed.stderr and "Traceback" not in closed.stderr
    no_host = _run(kfp_python, notebook, tmp_path)
    assert no_host.returncode == 1 and "--backend kfp needs --host" in no_host.stderr
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())
