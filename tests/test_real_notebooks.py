"""Notebooks as people write them, run for real: the pipeline does what running the notebook top to bottom does,
or says why, and a kernel that cannot start says why."""
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

import jupyter_mlops
from jupyter_mlops.errors import ParameterError


def _stream(step: dict) -> str:
    executed = nbformat.read(step["output_notebook"], as_version=4)
    return "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_a_cell_after_a_skip_cell_runs_in_the_step_above_it(make_notebook, caplog):
    # the repro: top to bottom (and papermill) print 2 in train
    nb_path = make_notebook([("x = 1", "data"), ("print(x)", "skip"), "x = 2", ("print('x is', x)", "train")])
    run = jupyter_mlops.run(nb_path)
    # the grouping that could surprise is said when the run starts, as validate says it
    assert "cell 3 joins step `data` across the skipped cell(s) 2" in caplog.text
    assert run["status"] == "succeeded", run["error"]
    train = next(s for s in run["steps"] if s["name"] == "train")
    assert "x is 2" in _stream(train)


def _papermill_simple_execute(folder: Path) -> Path:
    """papermill's own test notebook `simple_execute.ipynb` (a parameters cell and `print(msg)`; it imports
    nothing), tagged with one step as a user would."""
    import papermill

    shipped = Path(papermill.__file__).parent / "tests" / "notebooks" / "simple_execute.ipynb"
    if shipped.exists():
        nb = nbformat.read(str(shipped), as_version=4)
    else:  # a papermill build without its tests: the same two cells
        import nbformat.v4 as v4

        nb = v4.new_notebook(cells=[v4.new_code_cell("msg = None"), v4.new_code_cell("print(msg)")])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells[1].metadata["tags"] = ["train"]
    path = folder / "simple_execute.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_a_notebook_that_imports_nothing_runs(tmp_path):
    run = jupyter_mlops.run(_papermill_simple_execute(tmp_path), {"msg": "hello"})
    assert run["status"] == "succeeded", run["error"]
    assert "hello" in _stream(run["steps"][0])


def test_bad_input_is_refused_without_waiting_for_kernels(tmp_path):
    import os

    from test_run import _kernels_started_by

    from jupyter_mlops.engines.steps import early_pool

    nb_path = _papermill_simple_execute(tmp_path)
    with pytest.raises(ParameterError, match="unknown parameter `msgg`"):
        jupyter_mlops.run(nb_path, {"msgg": "hello"})
    assert _kernels_started_by(os.getpid()) == []
    # the pool `run` starts before validating, closed after its kernel is up but before it learned what to import
    # (validation failed): the old warm-up waited 120 s for that, and closing joined it for 60 s
    pool = early_pool(str(nb_path))
    deadline = time.monotonic() + 60
    while not pool._warming and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool._warming, "the first kernel did not start"
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 20  # a bound that only catches the hang; benchmarks/refuse_fast.py times it
    assert _kernels_started_by(os.getpid()) == []


def _kernelspec(root: Path, name: str, argv: list[str]) -> None:
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


def test_a_kernel_that_cannot_start_reports_the_real_cause(make_notebook, tmp_path, monkeypatch):
    kernels = tmp_path / "jupyter-data"
    _kernelspec(kernels, "broken", [sys.executable, "-c",
                                    "import sys; sys.stderr.write('ImportError: libcuda.so.1 not found\\n'); "
                                    "sys.exit(3)", "-f", "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))
    nb_path = make_notebook([("x = 1", "train")])
    nb = nbformat.read(str(nb_path), as_version=4)
    nb.metadata["kernelspec"] = {"name": "broken", "display_name": "broken", "language": "python"}
    nbformat.write(nb, str(nb_path))
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "failed"
    assert "exited with code 3" in run["error"] and "libcuda.so.1 not found" in run["error"], run["error"]

    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    nbformat.write(nb, str(nb_path))
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "failed" and "no kernel named `no-such-kernel` is installed" in run["error"]


def test_xgboost_values_pass_between_steps_through_xgboost(make_notebook):
    pytest.importorskip("xgboost", reason="xgboost-cpu is in the test extras")
    nb_path = make_notebook([
        ("import numpy as np\nimport xgboost as xgb\nfrom sklearn.datasets import load_breast_cancer\n"
         "from jupyter_mlops import log_metrics", "setup"),
        ("X, y = load_breast_cancer(return_X_y=True)\ndtrain = xgb.DMatrix(X[:400], label=y[:400])\n"
         "dtest = xgb.DMatrix(X[400:], label=y[400:])", "data"),
        ("booster = xgb.train({'objective': 'binary:logistic', 'max_depth': 3}, dtrain, 20)", "train"),
        ("accuracy = float(np.mean((booster.predict(dtest) > 0.5) == dtest.get_label()))\n"
         "log_metrics(accuracy=accuracy)", "evaluate")])
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "succeeded", run["error"]
    assert run["metrics"]["accuracy"] > 0.9
    manifest = json.loads((Path(run["run_dir"]) / "artifacts" / "train" / "_outputs.json").read_text())
    assert manifest["booster"]["format"] == "xgboost-booster" and manifest["booster"]["file"] == "booster.ubj"


def test_step_kernels_keep_no_ipython_history(make_notebook):
    # kernels started together raced for one session row of ~/.ipython's history database, and IPython printed
    # "ERROR! Session/line number was not unique in database" into a step's output
    nb_path = make_notebook([("a = 1", "data"), ("b = get_ipython().history_manager.enabled\nprint('history', b)",
                                                 "step:left"),
                             ("c = get_ipython().history_manager.enabled\nprint('history', c)", "step:right")])
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "succeeded", run["error"]
    for step in run["steps"][1:]:
        text = _stream(step)
        assert "history False" in text and "not unique in database" not in text


def test_a_kale_metrics_cell_that_computes_its_metric_runs_and_logs_it(make_notebook):
    """A data scientist's `pipeline-metrics` cell computes the score, then prints it: the run logged every name the
    cell read and failed on the model ("metric `clf` must be a number"). It logs the printed name."""
    nb_path = make_notebook([
        ("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)", "data"),
        ("from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression(max_iter=500).fit(X, y)",
         "train"),
        ("accuracy = clf.score(X, y)\nprint(accuracy)", "pipeline-metrics")])
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "succeeded", run["error"]
    assert list(run["metrics"]) == ["accuracy"] and run["metrics"]["accuracy"] > 0.9
