"""Sweeps: search spaces (no kernels), and real sweeps on real kernels with shared steps."""
import signal
import subprocess
import sys
import time

import pytest

import jupyter_mlops
import jupyter_mlops.api
from jupyter_mlops.errors import MlopsError, ParameterError
from jupyter_mlops.parameters import read_parameters
from jupyter_mlops.search_space import expand, parse_dimension

DECLARED, _ = read_parameters("C = 1.0\nn = 3\nkernel = 'rbf'\n", 1)


def dim(name, spec):
    return parse_dimension(name, spec, DECLARED)


def test_lists_are_typed():
    assert dim("C", "0.01,0.1,1").values == (0.01, 0.1, 1.0)
    assert dim("n", "1,2").values == (1, 2)
    assert dim("kernel", "rbf,linear").values == ("rbf", "linear")
    assert dim("C", [1, 2]).values == (1.0, 2.0)


def test_linear_log_and_integer_ranges():
    assert dim("C", "0..1:5").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert dim("C", "0.001..10:5:log").values == (0.001, 0.01, 0.1, 1.0, 10.0)
    assert dim("n", "1..5").values == (1, 2, 3, 4, 5)
    assert dim("n", "1..100:4:log").values == (1, 5, 22, 100)


def test_single_value_is_fixed_not_swept():
    assert not dim("C", "3").swept and dim("C", "1,3").swept


def test_grid_is_every_combination():
    trials = expand([dim("C", "1,2"), dim("n", "1..3")])
    assert len(trials) == 6 and {"C": 2.0, "n": 3} in trials


def test_random_samples_follow_the_distributions_and_the_seed():
    dims = [dim("C", "0.001..10:log"), dim("n", "1..5"), dim("kernel", "rbf,linear")]
    trials = expand(dims, samples=50, seed=7)
    assert len(trials) == 50 and trials == expand(dims, samples=50, seed=7)
    assert all(0.001 <= t["C"] <= 10 and t["n"] in range(1, 6) and t["kernel"] in ("rbf", "linear") for t in trials)
    assert sum(t["C"] < 0.1 for t in trials) > 10  # log-uniform: small values are common


@pytest.mark.parametrize("name, spec, message", [
    ("C", "5..1", "is empty"),
    ("C", "1..2:0", "is empty"),
    ("C", "-1..1:3:log", "LOW > 0"),
    ("Cx", "1,2", "unknown parameter `Cx`"),
    ("n", "1.5,2", "`n` is int"),
    ("C", ",", "no values"),
])
def test_bad_spaces_are_clear_errors(name, spec, message):
    with pytest.raises(ParameterError, match=message):
        dim(name, spec)


def test_a_float_range_on_a_grid_needs_a_count():
    with pytest.raises(ParameterError, match=r"-p C 0.1..1:5"):
        expand([dim("C", "0.1..1")])
    with pytest.raises(ParameterError, match="--samples must be at least 1"):
        expand([dim("C", "0.1..1")], samples=0)


SWEPT = [
    ("import time\nfrom jupyter_mlops import log_metrics", "setup"),
    ("C = 1.0\nrows = 10", "parameters"),
    ("data = list(range(rows))", "data"),
    ("if C > 50:\n    raise ValueError(f'C={C} diverges')\nscore = C * sum(data)", "train"),
    ("log_metrics(score=score)", "evaluate"),
]


def test_eight_trials_share_the_data_step_and_find_the_best(make_notebook):
    nb = make_notebook(SWEPT)
    result = jupyter_mlops.sweep(nb, {"C": "1..8:8"}, parallel=2, maximize="score")
    assert result["status"] == "succeeded" and result["shared_steps"] == ["data"]
    trials = result["trials"]
    assert len(trials) == 8 and all(t["status"] == "succeeded" for t in trials)
    assert sorted(t["metrics"]["score"] for t in trials) == [45.0 * c for c in range(1, 9)]
    assert result["best"]["params"]["C"] == 8.0
    # from the store: the data step ran once; every other trial reused it
    stored = jupyter_mlops.list_runs(workspace=nb.parent / ".mlops", sweep_id=result["id"])
    data_steps = [next(s for s in r["steps"] if s["name"] == "data") for r in stored]
    assert len(stored) == 8
    assert sorted(s["status"] for s in data_steps) == ["reused"] * 7 + ["succeeded"]
    assert len({s["output_notebook"] for s in data_steps}) == 1


def test_a_failing_trial_does_not_stop_the_others(make_notebook):
    nb = make_notebook(SWEPT)
    result = jupyter_mlops.sweep(nb, {"C": "10,100"}, parallel=2, minimize="score")
    by_c = {t["params"]["C"]: t for t in result["trials"]}
    assert by_c[100.0]["status"] == "failed" and "diverges" in by_c[100.0]["error"]
    assert by_c[10.0]["status"] == "succeeded" and result["best"]["id"] == by_c[10.0]["id"]


def test_a_parameter_that_reaches_every_step_shares_nothing(make_notebook):
    nb = make_notebook(SWEPT)
    result = jupyter_mlops.sweep(nb, {"rows": "2,3"}, parallel=2)
    assert result["shared_steps"] == [] and result["best"] is None
    assert sorted(t["metrics"]["score"] for t in result["trials"]) == [1.0, 3.0]


def test_bad_sweeps_fail_before_anything_runs(make_notebook):
    nb = make_notebook(SWEPT)
    with pytest.raises(MlopsError, match="no step logs the metric `accuracy`"):
        jupyter_mlops.sweep(nb, {"C": "1,2"}, maximize="accuracy")
    with pytest.raises(MlopsError, match="--parallel must be at least 1"):
        jupyter_mlops.sweep(nb, {"C": "1,2"}, parallel=0)
    with pytest.raises(MlopsError, match="nothing to sweep"):
        jupyter_mlops.sweep(nb, {"C": "1"})
    with pytest.raises(ParameterError, match="unknown parameter"):
        jupyter_mlops.sweep(nb, {"c": "1,2"})
    assert not (nb.parent / ".mlops" / "runs").exists()


def test_huge_sweeps_and_parallelism_are_refused_from_their_size_alone(make_notebook):
    """Issue 14, item 11: a grid of 20,000,000 points cost 760 MB before it was refused; `parallel` was unbounded."""
    import tracemalloc

    nb = make_notebook(SWEPT)
    tracemalloc.start()
    with pytest.raises(ParameterError, match=r"the grid has 20,000,000 points \(5000 x 4000 values\); a sweep runs "
                                             r"at most 10,000 trials \(--max-trials raises it\)"):
        jupyter_mlops.sweep(nb, {"C": "1..2:5000", "rows": "1..4000"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6, f"refusing the grid allocated {peak / 1e6:.0f} MB"
    with pytest.raises(ParameterError, match="a range of 20,000,000 points"):
        jupyter_mlops.api.planned_trials(nb, {"C": "0..1:20000000"})
    with pytest.raises(ParameterError, match="--samples 50,000"):
        jupyter_mlops.sweep(nb, {"C": "0..1"}, samples=50_000)
    assert jupyter_mlops.api.planned_trials(nb, {"C": "0..1"}, samples=50_000, max_trials=50_000) == 50_000
    with pytest.raises(MlopsError, match="--parallel 1000: at most"):
        jupyter_mlops.sweep(nb, {"C": "1,2"}, parallel=1000)
    assert not (nb.parent / ".mlops" / "runs").exists()


def test_kernels_are_started_for_the_work_that_exists(make_notebook, monkeypatch):
    """`--parallel 12` on 2 trials of a one-step notebook started 12 kernels."""
    from jupyter_mlops.engines import steps as local

    sizes = []
    real = local.kernel_pool
    monkeypatch.setattr(local, "kernel_pool", lambda pipeline, size, fresh: sizes.append(size) or
                        real(pipeline, size, fresh))
    nb = make_notebook([("C = 1.0", "parameters"), ("from jupyter_mlops import log_metrics\nlog_metrics(c=C)",
                                                    "train")])
    result = jupyter_mlops.sweep(nb, {"C": "1,2"}, parallel=8)
    assert result["status"] == "succeeded" and sizes == [2]


def test_ctrl_c_cancels_every_trial(make_notebook):
    from test_run import _kernels_started_by

    nb = make_notebook([("import time", "setup"), ("C = 1.0", "parameters"), ("x = 1", "data"),
                        ("time.sleep(60)\ny = x * C", "train")])
    ws = nb.parent / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "sweep", str(nb), "-p", "C", "1,2,3,4",
                             "--parallel", "2", "--workspace", str(ws)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = jupyter_mlops.list_runs(workspace=ws) if (ws / "mlops.db").exists() else []
        # every trial recorded (they are created one after the other) and two of them training
        if len(runs) == 4 and sum(s["name"] == "train" and s["status"] == "running"
                                  for r in runs for s in r["steps"]) == 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    runs = jupyter_mlops.list_runs(workspace=ws)
    assert len(runs) == 4 and all(r["status"] == "cancelled" for r in runs)
    assert _kernels_started_by(proc.pid) == []


def test_bayes_search_through_optuna(make_notebook):
    nb = make_notebook(SWEPT)
    result = jupyter_mlops.sweep(nb, {"C": "1..40:log"}, search="bayes", trials=6, parallel=2, maximize="score",
                                 seed=3)
    assert len(result["trials"]) == 6 and result["status"] == "succeeded"
    scores = [t["metrics"]["score"] for t in result["trials"]]
    assert result["best"]["metrics"]["score"] == max(scores)
    assert all(1 <= t["params"]["C"] <= 40 for t in result["trials"])
    assert len({t["params"]["C"] for t in result["trials"]}) == 6


def test_bayes_needs_a_metric_a_trial_count_and_optuna(make_notebook, monkeypatch):
    nb = make_notebook(SWEPT)
    with pytest.raises(MlopsError, match="--maximize METRIC or --minimize METRIC"):
        jupyter_mlops.sweep(nb, {"C": "1..4"}, search="bayes", trials=3)
    with pytest.raises(MlopsError, match="--trials N"):
        jupyter_mlops.sweep(nb, {"C": "1..4"}, search="bayes", maximize="score")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(MlopsError, match=r"pip install 'jupyter-mlops\[bayes\]'"):
        jupyter_mlops.sweep(nb, {"C": "1..4"}, search="bayes", trials=3, maximize="score")


def test_trials_start_as_room_frees_not_all_at_once(make_notebook):
    """A sweep made every trial up front (an executor, a bundle, a `running` row and threads each: 1,552 threads
    at 256 trials), so each trial's recorded duration included its wait. Now a few run ahead of the kernels."""
    from jupyter_mlops.workspace import Workspace

    nb = make_notebook([("C = 1.0", "parameters"),
                        ("import time\ntime.sleep(0.2)\nfrom jupyter_mlops import log_metrics\nlog_metrics(c=C)",
                         "train")])
    store = Workspace.locate(None, nb).store
    recorded_at_each_end: list[int] = []

    def on_trial(run: dict) -> None:
        recorded_at_each_end.append(len(store.list_runs(sweep_id=run["sweep_id"], steps=False)))

    result = jupyter_mlops.sweep(nb, {"C": "1,2,3,4,5,6,7,8"}, parallel=1, on_trial=on_trial)
    assert result["status"] == "succeeded" and len(result["trials"]) == 8
    assert recorded_at_each_end[0] <= 3, recorded_at_each_end  # was 8: every trial recorded before the first ran
    assert all(t["status"] == "succeeded" for t in result["trials"])
