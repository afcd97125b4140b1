"""The model registry on real runs: gates, versions with lineage, packages that predict, aliases and history."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.registry import GateFailed, load_predict, resolve
from jupyter_mlops.workspace import Workspace

from conftest import EXAMPLES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One sweep of the digits example (two trials), shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("registry")
    nb = folder / "digits.ipynb"
    shutil.copy(EXAMPLES / "digits.ipynb", nb)
    result = jupyter_mlops.sweep(nb, {"C": "0.05,5"}, parallel=2, maximize="accuracy")
    assert result["status"] == "succeeded"
    return folder / ".mlops", result


def test_register_passes_the_gate_and_packages_predict(trained):
    ws, sweep = trained
    best = sweep["best"]
    version = jupyter_mlops.register(best["id"], "digits-a", require=["accuracy>=0.9", "f1_macro>0.9"],
                                     workspace=ws)
    assert version["version"] == 1 and version["run_id"] == best["id"]
    package = Path(version["package"])
    assert sorted(p.name for p in package.iterdir()) == ["model.json", "predict.pkl", "reference.json",
                                                          "schema.json"]
    lineage = json.loads((package / "model.json").read_text())
    assert lineage["notebook_hash"] == best["notebook_hash"] and lineage["params"]["C"] == 5.0
    assert lineage["metrics"]["accuracy"] == best["metrics"]["accuracy"] and len(lineage["data_fingerprint"]) == 64
    schema = json.loads((package / "schema.json").read_text())
    assert [c["name"] for c in schema][:2] == ["pixel_0", "pixel_1"] and len(schema) == 64
    reference = json.loads((package / "reference.json").read_text())
    assert reference["rows"] == 1347 and reference["columns"]["pixel_10"]["kind"] == "numeric"
    digits = load_digits()
    predicted = load_predict(package)(digits.data[:20])
    assert np.mean(np.array(predicted) == digits.target[:20]) >= 0.9


def test_registering_a_run_again_says_so(trained):
    """A second registration of the same run is a new version of the same model: allowed, never silent."""
    ws, sweep = trained
    run_id = sweep["trials"][0]["id"]
    first = jupyter_mlops.register(run_id, "digits-twice", workspace=ws)
    assert first["warning"] is None
    cli = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "register", run_id, "--name", "digits-twice",
                          "--workspace", str(ws)], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "registered digits-twice version 2" in cli.stdout
    assert f"warning: run {run_id} was already digits-twice version 1; version 2 is the same model again" \
        in cli.stderr


def test_a_failed_gate_registers_nothing_and_says_why(trained):
    ws, sweep = trained
    with pytest.raises(GateFailed) as info:
        jupyter_mlops.register(sweep["best"]["id"], "digits-b", require=["accuracy>=0.9999", "loss<1"],
                               workspace=ws)
    text = str(info.value)
    assert "required >= 0.9999" in text and "accuracy = 0.99" in text and "loss was not logged" in text
    # what to do about it: the metrics it did log, and how to log one
    assert "it logged: accuracy" in text and "log_metrics(loss=loss)" in text and "pipeline-metrics" in text
    from jupyter_mlops.registry import check_gates

    dotted = check_gates({"id": "r1", "metrics": {}}, ["val.loss<1"])[0]
    assert "it logged: none" in dotted and 'log_metrics(**{"val.loss": value})' in dotted
    assert not [m for m in jupyter_mlops.models(workspace=ws) if m["name"] == "digits-b"]
    assert not (ws / "models" / "digits-b" / "v1").exists()


def test_best_picks_the_best_trial_of_a_sweep(trained):
    ws, sweep = trained
    version = jupyter_mlops.register("best", "digits-c", metric="accuracy", sweep_id=sweep["id"], workspace=ws)
    assert version["run_id"] == sweep["best"]["id"]
    worst = jupyter_mlops.register("best", "digits-c", metric="accuracy", maximize=False, sweep_id=sweep["id"],
                                   workspace=ws)
    assert worst["version"] == 2 and worst["run_id"] != sweep["best"]["id"]
    with pytest.raises(MlopsError, match="--metric"):
        jupyter_mlops.register("best", "digits-c", workspace=ws)


def test_versions_aliases_promote_rollback_history(trained):
    ws, sweep = trained
    for _ in range(3):
        jupyter_mlops.register(sweep["best"]["id"], "digits-d", workspace=ws)
    store = Workspace(ws).store
    assert resolve(store, "digits-d")["version"] == 3
    assert resolve(store, "digits-d:2")["version"] == 2
    jupyter_mlops.promote("digits-d", 1, workspace=ws)
    jupyter_mlops.promote("digits-d", 3, workspace=ws)
    jupyter_mlops.promote("digits-d", 2, alias="staging", workspace=ws)
    assert resolve(store, "digits-d@production")["version"] == 3
    back = jupyter_mlops.rollback("digits-d", workspace=ws)
    assert back == {"name": "digits-d", "alias": "production", "version": 1, "previous": 3}
    [model] = [m for m in jupyter_mlops.models(workspace=ws) if m["name"] == "digits-d"]
    assert model["aliases"] == {"production": 1, "staging": 2} and len(model["versions"]) == 3
    history = jupyter_mlops.alias_history("digits-d", workspace=ws)
    assert [(h["alias"], h["version"], h["action"]) for h in history] == [
        ("production", 1, "promote"), ("production", 3, "promote"), ("staging", 2, "promote"),
        ("production", 1, "rollback")]
    with pytest.raises(MlopsError, match="has no version 9"):
        jupyter_mlops.promote("digits-d", 9, workspace=ws)
    with pytest.raises(MlopsError, match="no alias `canary`"):
        resolve(store, "digits-d@canary")
    with pytest.raises(MlopsError, match="no model `nope`"):
        resolve(store, "nope")


def test_cli_register_gate_failure_exits_1_with_measured_value(trained):
    ws, sweep = trained
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    done = subprocess.run(cli + ["register", sweep["best"]["id"], "--name", "digits-e", "--require",
                                 "accuracy>=0.9999", "--workspace", str(ws)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "required >= 0.9999" in done.stderr
    done = subprocess.run(cli + ["register", sweep["best"]["id"], "--name", "digits-e", "--require",
                                 "accuracy>=0.9", "--workspace", str(ws)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "registered digits-e version 1" in done.stdout
    shown = subprocess.run(cli + ["models", "--workspace", str(ws)], capture_output=True, text=True, timeout=60)
    assert "digits-e" in shown.stdout


def test_a_run_without_serve_step_cannot_be_registered(make_notebook):
    nb = make_notebook([("x = 1", "data"), ("from jupyter_mlops import log_metrics\nlog_metrics(a=1)", "train")])
    run = jupyter_mlops.run(nb)
    with pytest.raises(MlopsError, match="no `serve` step"):
        jupyter_mlops.register(run["id"], "m", workspace=nb.parent / ".mlops")
    with pytest.raises(MlopsError, match="model name"):
        jupyter_mlops.register(run["id"], "bad name!", workspace=nb.parent / ".mlops")
