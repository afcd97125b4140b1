"""Issue 14, items 6 and 7: a registration that fails at any stage, or is killed, leaves the name usable and no
half package; a package changed after registration is refused before any of it is loaded."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import jupyter_mlops
from jupyter_mlops import registry
from jupyter_mlops.serving.server import load
from jupyter_mlops.workspace import Workspace

from conftest import EXAMPLES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("register")
    notebook = folder / "digits.ipynb"
    shutil.copy(EXAMPLES / "digits.ipynb", notebook)
    run = jupyter_mlops.run(notebook, {"C": "5"})
    return folder / ".mlops", run["id"]


def registered_cleanly(workspace, run_id: str, name: str) -> None:
    """Nothing of the failed attempt is left, and the name registers (as version 1) and serves."""
    root = workspace / "models" / name
    assert Workspace(workspace).store.model_versions(name) == []
    assert not root.exists() or [p.name for p in root.iterdir()] == []
    version = jupyter_mlops.register(run_id, name, workspace=workspace)
    assert version["version"] == 1
    assert load(Workspace(workspace), f"{name}:1").predict(_rows(version)) == [0, 1, 2]


def _rows(version: dict):
    import pandas as pd
    from sklearn.datasets import load_digits

    return pd.DataFrame(load_digits().data[:3], columns=[c["name"] for c in version["schema"]])


class Boom(OSError):
    pass


def _fail(*args, **kwargs):
    raise Boom("No space left on device")


@pytest.mark.parametrize("stage", ["copying predict.pkl", "hashing the package", "after publishing",
                                   "committing the row"])
def test_a_failure_at_any_stage_registers_nothing_and_blocks_nothing(trained, monkeypatch, stage):
    workspace, run_id = trained
    name = "m-" + stage.split()[0]
    if stage == "copying predict.pkl":
        monkeypatch.setattr(registry.shutil, "copyfileobj", _fail)
    elif stage == "hashing the package":
        monkeypatch.setattr(registry, "package_digests", _fail)
    elif stage == "after publishing":
        publish = registry._publish
        monkeypatch.setattr(registry, "_publish", lambda *a: (publish(*a), _fail())[1])
    else:
        from jupyter_mlops import store

        monkeypatch.setattr(store.model_versions_table, "insert", _fail)
    with pytest.raises(Boom):
        jupyter_mlops.register(run_id, name, workspace=workspace)
    monkeypatch.undo()
    registered_cleanly(workspace, run_id, name)


KILLED = textwrap.dedent("""
    import sys, time
    import jupyter_mlops
    from jupyter_mlops import registry

    stage, run_id, name, workspace = sys.argv[1:]
    original = getattr(registry, stage)

    def pause(*args):
        result = original(*args)
        print("reached", flush=True)
        time.sleep(120)  # killed here
        return result

    setattr(registry, stage, pause)
    jupyter_mlops.register(run_id, name, workspace=workspace)
""")


@pytest.mark.parametrize("stage", ["package_digests", "_publish"])
def test_a_registration_killed_mid_way_blocks_nothing(trained, tmp_path, stage):
    """kill -9 while the package is staged, and after it was published but before the row was committed (the
    process holds the store's write lock then): the next registration of the name succeeds."""
    workspace, run_id = trained
    name = "killed-" + stage.strip("_").split("_")[0]
    script = tmp_path / "register.py"
    script.write_text(KILLED)
    child = subprocess.Popen([sys.executable, str(script), stage, run_id, name, str(workspace)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "reached"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    left = sorted(p.name for p in (workspace / "models" / name).iterdir())
    assert left == (["v1"] if stage == "_publish" else [next(n for n in left if n.startswith(".staging-v1-"))])
    version = jupyter_mlops.register(run_id, name, workspace=workspace)
    assert version["version"] == 1 and sorted(p.name for p in (workspace / "models" / name).iterdir()) == ["v1"]
    assert load(Workspace(workspace), f"{name}:1").predict(_rows(version)) == [0, 1, 2]


class Payload:
    """Unpickling this runs code: what an attacker who can write the package folder would put there."""

    def __reduce__(self):
        return (open, (os.environ["MLOPS_TAMPER_MARKER"], "w"))


def test_a_package_changed_after_registration_is_refused_before_loading(trained, tmp_path, monkeypatch):
    workspace, run_id = trained
    jupyter_mlops.register(run_id, "guarded", workspace=workspace)
    package = workspace / "models" / "guarded" / "v1"
    assert load(Workspace(workspace), "guarded:1").version == 1
    marker = tmp_path / "the payload ran"
    monkeypatch.setenv("MLOPS_TAMPER_MARKER", str(marker))
    original = (package / "predict.pkl").read_bytes()
    (package / "predict.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(registry.PackageChanged, match="predict.pkl .* is not the file registered"):
        load(Workspace(workspace), "guarded:1")
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "serve", "guarded:1", "--port", "0",
                           "--workspace", str(workspace)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "predict.pkl" in done.stderr and "changed after registration" in done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()
    # the digest is checked on the bytes that are unpickled, not on a file that could be swapped in between
    with pytest.raises(registry.PackageChanged):
        registry.load_predict(package, version_digest(workspace, "guarded"))
    assert not marker.exists()
    (package / "predict.pkl").write_bytes(original)
    (package / "schema.json").write_text("[]")  # what the server checks requests against, changed too
    with pytest.raises(registry.PackageChanged, match="schema.json"):
        load(Workspace(workspace), "guarded:1")


def version_digest(workspace, name: str) -> str:
    import json

    return json.loads(Workspace(workspace).store.model_versions(name)[0]["files"])["predict.pkl"]
