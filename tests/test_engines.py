"""The engine registry (issue 15): engines come from the `jupyter_mlops.engines` entry points; a third engine is one
module plus an entry point, and the API, the CLI's --backend and its flags find it without other changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jupyter_mlops.errors import MlopsError

# A third engine, written as a plugin author would: the whole notebook through papermill in one go (no steps in
# parallel, no warm kernels), recorded in the store like any run. It lives in its own distribution; only the
# entry point tells jupyter-mlops about it.
PLUGIN = '''
import papermill

from jupyter_mlops.engines import Engine, Option
from jupyter_mlops.orchestration import describe_run, record_run, validate
from jupyter_mlops.parameters import coerce_parameters
from jupyter_mlops.workspace import Workspace, new_run_id


class WholeNotebookEngine(Engine):
    summary = "the whole notebook in one papermill call"
    verbs = ("run",)
    options = (Option("kernel", "the kernel that runs the notebook", "python3"),)

    def run(self, notebook, parameters=None, *, run_id=None, on_update=None, on_log=None):
        pipeline = validate(notebook)
        values = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        ws = Workspace.locate(self.workspace, notebook)
        run_id = run_id or new_run_id()
        record_run(ws, run_id, notebook, pipeline, values, owner="whole-notebook")
        output = ws.run_dir(run_id) / "whole.ipynb"
        try:
            papermill.execute_notebook(str(notebook), str(output), parameters=values,
                                       kernel_name=self.settings["kernel"], progress_bar=False)
            status, error = "succeeded", None
        except papermill.PapermillExecutionError as exc:
            status, error = "failed", f"{exc.ename}: {exc.evalue}"
        for step in pipeline.steps:
            ws.store.update_step(run_id, step.name, status=status, output_notebook=str(output))
        ws.store.finish_run(run_id, status, error)
        return describe_run(ws.store.get_run(run_id))
'''


@pytest.fixture
def plugin(tmp_path):
    """A folder with the plugin's module and its distribution's metadata: on PYTHONPATH, it is installed."""
    site = tmp_path / "site"
    dist = site / "whole_notebook_engine-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "whole_notebook_engine.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: whole-notebook-engine\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[jupyter_mlops.engines]\nwhole = whole_notebook_engine:WholeNotebookEngine\n"
        "broken = no_such_module:Engine\nlocal = whole_notebook_engine:WholeNotebookEngine\n"
        "[jupyter_mlops.serializers]\nbroken = no_such_serializer:SERIALIZER\n")
    return site


def cli(*args: str, cwd: Path, site: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site or ""), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def small_notebook(make_notebook, body: str = "y = x * 2\nprint(y)"):
    return make_notebook([("x = 3", "parameters"), (body, "train")])


def test_the_built_in_engines_are_registered_and_listed():
    import jupyter_mlops
    from jupyter_mlops import engines

    assert engines.names() == ["local", "kubernetes", "kfp"]
    assert engines.names("deploy") == ["local", "kubernetes"]  # kfp runs and sweeps; KFP does not serve
    listed = {e["name"]: e for e in jupyter_mlops.list_engines()}
    assert set(listed["local"]["verbs"]) == set(listed["kubernetes"]["verbs"]) == {"run", "sweep", "deploy", "undeploy",
                                                                                  "schedule"}
    assert "image" in [o["name"] for o in listed["kubernetes"]["options"]]
    assert "api_client" not in [o["name"] for o in listed["kubernetes"]["options"]]  # the API's only


def test_a_third_engine_is_one_module_and_an_entry_point(plugin, make_notebook, tmp_path):
    notebook = small_notebook(make_notebook)
    helped = cli("run", "--help", cwd=tmp_path, site=plugin).stdout
    assert "{local,kubernetes,kfp,whole}" in helped and "--kernel KERNEL" in helped
    assert "--backend whole: the kernel that runs the notebook" in helped
    done = cli("run", str(notebook), "-p", "x", "5", "--backend", "whole", "--kernel", "python3", "--json",
               cwd=tmp_path, site=plugin)
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["params"]["x"] == 5 and run["steps"][0]["status"] == "succeeded"
    assert "y = x * 2" in Path(run["steps"][0]["output_notebook"]).read_text()
    # recorded like any run: the other verbs see it
    listed = json.loads(cli("runs", "--json", "--workspace", str(tmp_path / ".mlops"), cwd=tmp_path).stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    # the broken plugin is left out with a warning, and one posing as `local` does not replace it
    assert "plugin `broken` (no_such_module:Engine) could not be loaded" in done.stderr
    assert "`local` is a built-in engine's name" in done.stderr
    # an engine that only runs is not offered where it cannot work
    refused = cli("deploy", "digits", "--backend", "whole", cwd=tmp_path, site=plugin, check=False)
    assert refused.returncode == 2 and "invalid choice: 'whole'" in refused.stderr


def test_an_unknown_engine_or_a_setting_of_another_engine_is_named(make_notebook, tmp_path):
    import jupyter_mlops

    notebook = small_notebook(make_notebook)
    with pytest.raises(MlopsError, match=r"no engine `argo`; the engines here are local, kubernetes, kfp"):
        jupyter_mlops.run(notebook, backend="argo")
    with pytest.raises(MlopsError, match="--backend kfp needs --host"):
        jupyter_mlops.run(notebook, backend="kfp")
    with pytest.raises(MlopsError, match=r"the local engine's run takes no `image`.*`image` is for --backend "
                                         r"kubernetes or kfp"):
        jupyter_mlops.run(notebook, image="registry.example.com/nb:1")
    with pytest.raises(MlopsError, match=r"takes no `port`.*`port` is for --backend local"):
        jupyter_mlops.deploy("digits", backend="kubernetes", image="registry.example.com/nb:1", port=9000)
    with pytest.raises(MlopsError, match="needs --image"):
        jupyter_mlops.sweep(notebook, {"x": "1,2"}, backend="kubernetes")
    done = cli("run", str(notebook), "--namespace", "ml", cwd=tmp_path, check=False)
    assert done.returncode == 1 and "--namespace is a setting of --backend kubernetes" in done.stderr, done.stderr
    assert not (tmp_path / ".mlops" / "runs").exists()  # nothing started


def test_a_local_run_is_cancelled_through_its_engine(make_notebook):
    """The contract's cancel(): another thread stops a local run; its steps are shut down, the run says so."""
    import jupyter_mlops

    notebook = small_notebook(make_notebook, "import time\ntime.sleep(60)\ny = x")
    hooked: list = []
    timer = threading.Timer(1.0, lambda: hooked[0].cancel())
    timer.start()
    run = jupyter_mlops.run(notebook, engine_hook=hooked.append)
    assert run["status"] == "cancelled" and run["steps"][0]["status"] == "cancelled"  # not run out its 60 s


def test_a_broken_serializer_plugin_leaves_the_built_in_formats_working(plugin, make_notebook, tmp_path):
    """A package whose serializer entry point cannot be imported used to fail every step that passed a value."""
    notebook = make_notebook([("n = 3", "parameters"), ("import numpy as np\nvalues = np.arange(n)", "data"),
                              ("total = int(values.sum())\nprint(total)", "train")])
    done = cli("run", str(notebook), "--json", cwd=tmp_path, site=plugin)
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and [s["status"] for s in run["steps"]] == ["succeeded", "succeeded"]


def test_a_dead_kernel_whose_zeromq_context_never_closes_does_not_hang_the_run(monkeypatch):
    """Once in a full test run, zmq's context.term() waited forever while a timed-out run's killed kernel was
    cleaned up, and the scheduler's run hung with it. The clean-up now has CLEANUP_WAIT seconds. The stand-in is a
    kernel manager whose clean-up blocks, as term() did (the real hang cannot be provoked on purpose)."""
    from jupyter_mlops.engines import kernels

    release = threading.Event()

    class StuckManager:
        async def is_alive(self):
            return False

        async def cleanup_resources(self):
            release.wait()  # blocks its thread, as zmq's term() does

    monkeypatch.setattr(kernels, "CLEANUP_WAIT", 0.5, raising=False)
    caller = threading.Thread(target=kernels.shutdown_kernel, args=(StuckManager(),), daemon=True)
    caller.start()
    caller.join(60)
    try:
        assert not caller.is_alive(), "shutdown_kernel hung on a context that never closes"
    finally:
        release.set()
