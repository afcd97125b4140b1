"""Whole runs with real kernels, real papermill and the real SQLite store."""
import json
import subprocess
import sys
import time

import nbformat
import pytest
import scrapbook

import jupyter_mlops
from jupyter_mlops.errors import NotebookError, ParameterError


def test_example_runs_end_to_end(example):
    nb_path = example("digits.ipynb")
    before = nb_path.read_bytes()
    run = jupyter_mlops.run(nb_path, {"C": "2"})
    assert run["status"] == "succeeded", run["error"]
    assert run["params"]["C"] == 2.0 and run["params"]["seed"] == 0
    assert run["metrics"]["accuracy"] > 0.9
    assert [s["name"] for s in run["steps"]] == ["data", "train", "evaluate", "serve"]
    for step in run["steps"]:
        assert step["status"] == "succeeded"
        executed = nbformat.read(step["output_notebook"], as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    # metrics are scrapbook scraps in the output notebook: the record of truth
    evaluate = next(s for s in run["steps"] if s["name"] == "evaluate")
    scraps = scrapbook.read_notebook(evaluate["output_notebook"]).scraps
    assert scraps["mlops.metric.accuracy"].data == run["metrics"]["accuracy"]
    assert nb_path.read_bytes() == before  # the source notebook is never modified
    assert (nb_path.parent / ".mlops" / "mlops.db").exists()
    frame = jupyter_mlops.runs(workspace=nb_path.parent / ".mlops")
    assert list(frame["run"]) == [run["id"]]
    assert {"params.C", "metrics.accuracy", "status", "duration"} <= set(frame.columns)


def test_kale_notebook_runs_unchanged(example):
    run = jupyter_mlops.run(example("kale_breast_cancer.ipynb"))
    assert run["status"] == "succeeded", run["error"]
    assert set(run["metrics"]) == {"test_accuracy", "train_accuracy"}
    assert run["metrics"]["test_accuracy"] > 0.9


def test_every_compiled_step_runs_under_plain_papermill(example, tmp_path):
    bundle = tmp_path / "bundle"
    jupyter_mlops.compile_notebook(example("digits.ipynb"), bundle)
    import yaml

    spec = yaml.safe_load((bundle / "pipeline.yaml").read_text())
    assert spec["notebook_hash"] and spec["parameters"]["C"] == {
        "name": "C", "type": "float", "default": 5.0, "source": "5.0",
        "help": "SVM regularization: smaller is smoother"}
    artifacts = tmp_path / "exchange"
    for step in spec["steps"]:
        out = tmp_path / "out" / step["notebook"]
        out.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "papermill", str(bundle / step["notebook"]), str(out),
                               "-p", "mlops_artifacts", str(artifacts), "-p", "C", "3", "--cwd", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    scraps = scrapbook.read_notebook(str(tmp_path / "out" / "steps" / "03-evaluate.ipynb")).scraps
    assert scraps["mlops.metric.accuracy"].data > 0.9


FAILING = [
    ("import time", "setup"),
    ("limit = 10", "parameters"),
    ("values = list(range(5))", "data"),
    ("if sum(values) > limit:\n    raise ValueError(f'sum {sum(values)} is over the limit {limit}')\n"
     "total = sum(values)",
     "train"),
    ("from jupyter_mlops import log_metrics\nlog_metrics(total=total)", "evaluate"),
]


def test_failure_keeps_partial_notebook_and_resume_reuses_upstream(make_notebook):
    nb_path = make_notebook(FAILING)
    run = jupyter_mlops.run(nb_path, {"limit": "3"})
    assert run["status"] == "failed"
    assert "step `train` failed (cell 4" in run["error"] and "over the limit 3" in run["error"]
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["data"]["status"] == "succeeded" and steps["evaluate"]["status"] == "skipped"
    assert steps["train"]["status"] == "failed" and steps["train"]["cell"] == 4
    partial = nbformat.read(steps["train"]["output_notebook"], as_version=4)
    errors = [o for c in partial.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors and errors[0].ename == "ValueError"
    data_notebook_mtime = (steps["data"]["output_notebook"], _mtime(steps["data"]["output_notebook"]))

    # fix the notebook, resume: data is reused, train and evaluate run
    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells[3].source = "total = sum(values)"
    nbformat.write(nb, str(nb_path))
    resumed = jupyter_mlops.resume(run["id"], workspace=nb_path.parent / ".mlops")
    assert resumed["id"] == run["id"] and resumed["status"] == "succeeded", resumed["error"]
    steps = {s["name"]: s for s in resumed["steps"]}
    assert steps["data"]["status"] == "reused" and steps["train"]["status"] == "succeeded"
    assert steps["train"]["attempts"] == 2
    assert resumed["metrics"] == {"total": 10.0}
    assert _mtime(data_notebook_mtime[0]) == data_notebook_mtime[1]  # not rerun
    kept = list((nb_path.parent / ".mlops" / "runs" / run["id"] / "steps").glob("*.attempt1.ipynb"))
    assert [p.name for p in kept] == ["02-train.attempt1.ipynb"]


def _mtime(path):
    import os

    return os.stat(path).st_mtime_ns


def test_a_killed_kernel_fails_its_step_at_once_with_the_reason(make_notebook):
    nb_path = make_notebook([("x = 1", "data"),
                             ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\ny = x", "train"),
                             ("z = y", "evaluate")])
    started = time.monotonic()
    run = jupyter_mlops.run(nb_path)
    assert time.monotonic() - started < 120  # a generous bound that only catches a hang, not slowness
    assert run["status"] == "failed"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["train"]["status"] == "failed" and "SIGKILL" in steps["train"]["error"]
    assert steps["evaluate"]["status"] == "skipped"
    partial = nbformat.read(steps["train"]["output_notebook"], as_version=4)
    assert "SIGKILL" in partial.cells[0].source


def test_value_that_cannot_be_marshalled_fails_naming_it(make_notebook):
    nb_path = make_notebook([("rows = (i for i in range(3))", "data"), ("total = sum(rows)", "train")])
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "failed"
    assert "`rows`" in run["error"] and "generator" in run["error"] and "step `data`" in run["error"]


def test_bad_parameters_fail_before_anything_runs(make_notebook):
    nb_path = make_notebook(FAILING)
    with pytest.raises(ParameterError, match="unknown parameter `limt`"):
        jupyter_mlops.run(nb_path, {"limt": "3"})
    with pytest.raises(ParameterError, match="`limit` is int"):
        jupyter_mlops.run(nb_path, {"limit": "0.5"})
    assert not (nb_path.parent / ".mlops" / "runs").exists() or not any(
        (nb_path.parent / ".mlops" / "runs").iterdir())


def test_bad_tags_fail_before_anything_runs(make_notebook):
    nb_path = make_notebook([("x = 1", "data"), ("y = undefined_name", "train")])
    with pytest.raises(NotebookError, match="undefined_name"):
        jupyter_mlops.run(nb_path)
    assert not (nb_path.parent / ".mlops").exists()


def test_independent_steps_run_in_parallel(make_notebook):
    nb_path = make_notebook([("import time", "setup"),
                             ("time.sleep(2)\na = 1", "step:left"),
                             ("time.sleep(2)\nb = 2", "step:right"),
                             ("c = a + b", "train")])
    run = jupyter_mlops.run(nb_path, max_parallel=2)
    assert run["status"] == "succeeded", run["error"]
    store = jupyter_mlops.api.Workspace.locate(None, nb_path).store
    rows = {s["name"]: s for s in store.get_run(run["id"])["steps"]}
    left, right = rows["left"], rows["right"]
    # each started before the other finished: they overlapped
    assert left["started"] < right["finished"] and right["started"] < left["finished"]
    assert rows["train"]["started"] >= max(left["finished"], right["finished"])


def test_cli_run_runs_show_json(make_notebook):
    nb_path = make_notebook(FAILING)
    ws = nb_path.parent / "ws"
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    done = subprocess.run(cli + ["run", str(nb_path), "-p", "limit", "100", "--workspace", str(ws)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    listed = json.loads(subprocess.run(cli + ["runs", "--json", "--workspace", str(ws)], capture_output=True,
                                       text=True, timeout=60).stdout)
    assert listed[0]["id"] == run_id
    assert {"id", "status", "params", "metrics", "started", "duration", "steps"} <= set(listed[0])
    assert listed[0]["params"] == {"limit": 100} and listed[0]["metrics"] == {"total": 10.0}
    shown = subprocess.run(cli + ["show", run_id[:15], "--workspace", str(ws)], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and "succeeded" in shown.stdout and "02-train.ipynb" in shown.stdout

    failed = subprocess.run(cli + ["run", str(nb_path), "-p", "limit", "1", "--workspace", str(ws)],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "step `train` failed (cell 4" in failed.stderr


def _kernels_started_by(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"MLOPS_PARENT_PID={pid}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_no_kernel_outlives_a_cli_run(example):
    nb_path = example("digits.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "run", str(nb_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert _kernels_started_by(proc.pid) == []


def test_steps_start_with_a_clean_namespace_with_warm_or_fresh_kernels(make_notebook):
    # `leak` is never marshalled to train: if a kernel kept its namespace, train would find it anyway
    nb_path = make_notebook([("x = 1\nleak = 'from data'", "data"),
                             ("seen = sorted(k for k in globals() if not k.startswith('_'))\n"
                              "assert 'leak' not in seen, seen\ny = x + 1", "train"),
                             ("from jupyter_mlops import log_metrics\nlog_metrics(y=y)", "evaluate")])
    for fresh in (False, True):
        run = jupyter_mlops.run(nb_path, max_parallel=1, fresh_kernels=fresh)
        assert run["status"] == "succeeded", (fresh, run["error"])
        assert run["metrics"] == {"y": 2.0}


def test_a_run_leaves_no_threads_or_sockets_behind(make_notebook):
    """Given a kernel manager, nbclient left each step's kernel client open for good: ten sockets and a heartbeat
    thread per step, thousands over a sweep or a long-lived scheduler. A second run must end where the first did."""
    nb_path = make_notebook([("x = 0", "parameters"), *[(f"x = x + 1\nv{i} = x", f"step:s{i}") for i in range(6)]])
    code = (
        "import os, threading, jupyter_mlops\n"
        "def count():\n    return threading.active_count(), len(os.listdir('/proc/self/fd'))\n"
        f"for _ in range(2):\n    run = jupyter_mlops.run({str(nb_path)!r}, max_parallel=1)\n"
        "    assert run['status'] == 'succeeded', run['error']\n    print(*count())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (threads_1, fds_1), (threads_2, fds_2) = [map(int, line.split()) for line in done.stdout.split("\n")[:2]]
    assert threads_2 <= threads_1 and fds_2 <= fds_1 + 2, done.stdout


def test_warm_kernels_keep_their_imported_modules_out_of_the_collectors_way(make_notebook):
    """IPython's reset() between steps runs a full garbage collection; over a warm kernel's imported modules it
    cost ~50 ms a step. The warm-up freezes them (gc.freeze), so later collections skip them."""
    nb_path = make_notebook([("import json\nfrom jupyter_mlops import log_metrics", "setup"),
                             ("import gc\nlog_metrics(frozen=gc.get_freeze_count())", "train"),
                             ("import gc\nlog_metrics(frozen_later=gc.get_freeze_count())", "evaluate")])
    run = jupyter_mlops.run(nb_path, max_parallel=1)
    assert run["status"] == "succeeded", run["error"]
    assert run["metrics"]["frozen"] > 10_000 and run["metrics"]["frozen_later"] > 10_000


def test_a_steps_notebook_is_saved_a_few_times_not_twice_per_cell(make_notebook, monkeypatch):
    """papermill saved the whole output notebook at the start and end of every cell (a third of a short step's
    time); while a step runs it is now saved at most once a second, and always at its end, once (papermill's
    engine saved the finished notebook and papermill then wrote the same bytes again)."""
    from jupyter_mlops import files

    saves: list[str] = []
    written: dict[str, list] = {}
    real = files.write_atomic

    def write(path, data):
        saves.append(str(path))
        written.setdefault(str(path), []).append(data)
        real(path, data)

    monkeypatch.setattr(files, "write_atomic", write)
    nb_path = make_notebook([("n = 1", "parameters"), ("x = n", "train"), *[f"x = x + {i}" for i in range(20)],
                             ("from jupyter_mlops import log_metrics\nlog_metrics(x=x)", "evaluate")])
    run = jupyter_mlops.run(nb_path, max_parallel=1)
    assert run["status"] == "succeeded" and run["metrics"] == {"x": 191.0}
    train = run["steps"][0]["output_notebook"]
    assert 2 <= saves.count(train) <= 8, saves.count(train)  # 53 before: twice per cell, and more
    assert "x = x + 19" in open(train).read()  # the last save holds every cell
    for path, versions in written.items():
        assert all(a != b for a, b in zip(versions, versions[1:])), f"{path} saved twice unchanged"


def test_ctrl_c_cancels_the_run_and_leaves_no_kernel(make_notebook):
    import signal

    nb_path = make_notebook([("import time", "setup"), ("x = 1", "data"),
                             ("time.sleep(60)\ny = x", "train"), ("z = y", "evaluate")])
    ws = nb_path.parent / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "run", str(nb_path), "--workspace", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from jupyter_mlops.workspace import Workspace

    store = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until train is running
        if (ws / "mlops.db").exists():
            store = store or Workspace(ws).store
            runs = store.list_runs()
            if runs and any(s["name"] == "train" and s["status"] == "running" for s in runs[0]["steps"]):
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("train never started")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run = store.list_runs()[0]
    assert run["status"] == "cancelled"
    steps = {s["name"]: s["status"] for s in run["steps"]}
    assert steps == {"data": "succeeded", "train": "cancelled", "evaluate": "cancelled"}
    assert _kernels_started_by(proc.pid) == []


def test_a_run_whose_process_died_is_marked_failed_and_can_resume(make_notebook):
    import signal

    nb_path = make_notebook([("import time", "setup"), ("limit = 60", "parameters"), ("x = 1", "data"),
                             ("time.sleep(limit)\ny = x", "train")])
    ws = nb_path.parent / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "run", str(nb_path), "--workspace", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from jupyter_mlops.workspace import Workspace

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = Workspace(ws).store.list_runs() if (ws / "mlops.db").exists() else []
        if runs and any(s["name"] == "train" and s["status"] == "running" for s in runs[0]["steps"]):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait(30)
    run = jupyter_mlops.list_runs(workspace=ws)[0]  # opening the store notices the dead owner
    assert run["status"] == "failed" and "process running it died" in run["error"]
    assert {s["name"]: s["status"] for s in run["steps"]}["train"] == "failed"
    deadline = time.monotonic() + 30  # kernels notice their parent is gone (ipykernel's parent poller)
    while _kernels_started_by(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _kernels_started_by(proc.pid) == []

    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells[1].source = "limit = 0"
    nbformat.write(nb, str(nb_path))
    resumed = jupyter_mlops.resume(run["id"], workspace=ws)
    assert resumed["status"] == "succeeded", resumed["error"]
    assert {s["name"]: s["status"] for s in resumed["steps"]}["data"] == "reused"
