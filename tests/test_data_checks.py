"""Continuous training, part 2: each step's output tables are profiled in its kernel and compared with the notebook's
baseline run; findings name the step, the variable and the column; strict mode fails the step with the finding."""
import json
import subprocess
import sys

import nbformat
import pytest

import jupyter_mlops
from jupyter_mlops import data_checks
from jupyter_mlops.errors import MlopsError

# a data scientist's notebook: a CSV read and cleaned in one step, a model trained in the next
SHOP = [
    ("data_path = 'orders.csv'", "parameters"),
    ("import pandas as pd", "imports"),
    ("orders = pd.read_csv(data_path)\nfeatures = orders.drop(columns=['returned'])\nlabels = orders['returned']",
     "data"),
    ("from jupyter_mlops import log_metrics\nlog_metrics(rows=len(features), returned=labels.mean())",
     "train"),
]


def _orders(folder, rows=200, amount=lambda i: 10.0 + i % 50, country=lambda i: ["DE", "FR", "NL"][i % 3],
            extra=None):
    header = ["amount", "country", "returned"] + ([extra[0]] if extra else [])
    lines = [",".join(header)]
    for i in range(rows):
        value = amount(i)
        cells = ["" if value is None else str(value), country(i), str(i % 2)] + ([str(extra[1](i))] if extra else [])
        lines.append(",".join(cells))
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def shop(make_notebook):
    nb = make_notebook(SHOP)
    _orders(nb.parent)
    return nb


def _checks(run):
    return {(f["variable"], f["column"], f["check"]): f["message"] for f in run["data_checks"]["findings"]}


def test_later_runs_are_checked_against_the_first_and_findings_name_step_variable_and_column(shop):
    baseline = jupyter_mlops.run(shop, check=True)
    assert baseline["data_checks"] == {"baseline": None, "findings": []}  # the first run is the baseline
    same = jupyter_mlops.run(shop, check=True)
    assert same["data_checks"] == {"baseline": baseline["id"], "findings": []}

    # a new export: nulls and huge amounts, a new country, an extra column, half the rows
    _orders(shop.parent, rows=80, amount=lambda i: None if i % 4 == 0 else (5000.0 if i % 10 == 1 else 20.0),
            country=lambda i: ["DE", "FR", "NL", "XX"][i % 4], extra=("channel", lambda i: "web"))
    changed = jupyter_mlops.run(shop, check=True)  # warn: the run goes on
    found = _checks(changed)
    assert changed["data_checks"]["baseline"] == baseline["id"]
    assert found[("features", "amount", "nulls")] == "step `data`: `features` column `amount` is 25.0% null, " \
                                                     "the baseline 0.0%"
    assert "10.0% of values outside the baseline's range [10, 59]" in found[("features", "amount", "out_of_range")]
    assert found[("features", "country", "new_categories")].endswith("categories the baseline never had: 'XX'")
    assert found[("features", "channel", "new_column")].startswith("step `data`: `features` column `channel` is new")
    assert found[("features", None, "row_count")] == "step `data`: `features` has 80 rows, the baseline had 200 " \
                                                     "(more than 50% change)"
    assert ("labels", None, "row_count") in found  # a Series output is checked too
    # the CLI says it, and `show --json` carries it under data_checks
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "show", changed["id"], "--json"],
                           cwd=shop.parent, capture_output=True, text=True, timeout=120)
    assert json.loads(shown.stdout)["data_checks"]["findings"] == changed["data_checks"]["findings"]

    # a looser threshold, set for one run
    loose = jupyter_mlops.run(shop, data_thresholds={"null_increase": 0.5, "row_change": 0.9}, check=True)
    assert ("features", "amount", "nulls") not in _checks(loose)
    assert ("features", None, "row_count") not in _checks(loose)

    # another baseline: the changed data is the norm from now on
    subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "baseline", str(shop), changed["id"]],
                   cwd=shop.parent, check=True, capture_output=True, timeout=120)
    assert jupyter_mlops.run(shop, check=True)["data_checks"] == {"baseline": changed["id"], "findings": []}


def test_strict_checks_fail_the_step_with_the_finding_and_keep_its_notebook(shop):
    jupyter_mlops.run(shop, check=True)
    _orders(shop.parent, country=lambda i: "DE" if i % 2 else "ZZ")
    run = jupyter_mlops.run(shop, data_checks="strict")
    assert run["status"] == "failed"
    data, train = run["steps"]
    assert data["status"] == "failed" and train["status"] == "skipped"
    assert data["error"] == "data check failed: step `data`: `features` column `country` has categories the " \
                            "baseline never had: 'ZZ'"
    assert run["error"].startswith("step `data` failed: data check failed: step `data`: `features` column `country`")
    kept = nbformat.read(data["output_notebook"], as_version=4)
    assert "this step failed: data check failed" in kept.cells[0].source

    # the notebook can ask for strict checks itself (its `mlops` metadata), and `off` turns them off
    nb = nbformat.read(shop, as_version=4)
    nb.metadata["mlops"] = {"data_checks": "strict"}
    nbformat.write(nb, shop)
    assert jupyter_mlops.run(shop)["status"] == "failed"
    assert jupyter_mlops.run(shop, data_checks="off", check=True)["data_checks"]["findings"] == []


def test_bad_data_check_settings_are_refused_naming_the_setting(shop):
    with pytest.raises(MlopsError, match="--data-checks must be one of warn, strict, off, got `loud`"):
        jupyter_mlops.run(shop, data_checks="loud")
    with pytest.raises(MlopsError, match="unknown data check threshold `nulls`; the thresholds are null_increase"):
        jupyter_mlops.run(shop, data_thresholds={"nulls": 0.1})
    with pytest.raises(MlopsError, match="null_increase=2 must be a share between 0 and 1"):
        jupyter_mlops.run(shop, data_thresholds={"null_increase": "2"})
    assert jupyter_mlops.list_runs(workspace=shop.parent / ".mlops") == []
    bad = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "run", str(shop), "--data-threshold", "x"],
                         cwd=shop.parent, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--data-threshold `x`: write NAME=SHARE" in bad.stderr
    first = jupyter_mlops.run(shop, check=True)
    other = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "baseline", str(shop), "nosuchrun"],
                           cwd=shop.parent, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "no run `nosuchrun`" in other.stderr
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "baseline", str(shop)],
                           cwd=shop.parent, capture_output=True, text=True, timeout=120)
    assert f"compare with run {first['id']}" in shown.stdout


def test_profiles_of_arrays_and_large_frames():
    import numpy as np
    import pandas as pd

    array = np.arange(12, dtype=float).reshape(6, 2)
    found = data_checks.profile(array, {"0": [0.0, 4.0]})
    assert found["rows"] == 6 and found["columns"]["0"]["min"] == 0.0 and found["columns"]["1"]["max"] == 11.0
    assert found["columns"]["0"]["outside_baseline"] == 0.5  # column 0 is 0, 2, ... 10: 6, 8 and 10 are above 4
    assert data_checks.profile({"a": 1}) is None and data_checks.profile(np.array(["x"])) is None
    big = pd.DataFrame({"v": np.arange(data_checks.SAMPLE_ROWS + 10)})
    found = data_checks.profile(big)
    assert found["sampled"] and found["rows"] == data_checks.SAMPLE_ROWS + 10
    assert found["columns"]["v"]["max"] == data_checks.SAMPLE_ROWS + 9  # the range covers every row


def test_the_worked_example_retrains_on_a_new_export_and_tells_the_webhook(tmp_path):
    """README, "Continuous training": example_notebooks/retrain_on_data_change.py as a user runs it."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "example_notebooks" / "retrain_on_data_change.py"
    done = subprocess.run([sys.executable, str(script), "--dir", str(tmp_path / "ct")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "first run: it sets the data baseline" in lines[1] and "succeeded" in lines[1] and "orders.csv" in lines[1]
    assert lines[2].endswith("the data unchanged: 0 runs fired")
    assert "data changed since run" in lines[3] and "failed: step `data` failed: data check failed" in lines[3]
    assert "`raw` column `country` has categories the baseline never had: 'PL'" in done.stdout
    assert "column `country_PL` is new" in done.stdout
    heard = next(line for line in lines if line.startswith("5. the webhook heard"))
    assert "run.failed" in heard and "data_check.failed" in heard and "schedule.failed" in heard
    assert lines[-1].startswith("6. 10 s later: 0 runs fired")
