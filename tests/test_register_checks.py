"""Register serves what it registers: `predict` is tried on training rows first, the schema asks for the columns
the model reads, and columns whose training data had nulls take nulls, in both protocols. Real runs, a real
server on 127.0.0.1."""
import pytest
import requests

import jupyter_mlops
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

SETUP = ("import numpy as np\nimport pandas as pd\nfrom sklearn.datasets import load_wine\n"
         "from jupyter_mlops import log_metrics", "setup")
DATA = ("wine = load_wine(as_frame=True)\nX = wine.data.rename(columns=lambda c: c.replace('/', '_'))\n"
        "X.insert(0, 'sample_id', range(len(X)))\ny = wine.target", "data")


def _run(make_notebook, cells) -> tuple[dict, str]:
    nb_path = make_notebook(cells)
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "succeeded", run["error"]
    return run, str(nb_path.parent / ".mlops")


def test_a_predict_written_for_one_row_is_refused_naming_the_error(make_notebook):
    run, ws = _run(make_notebook, [
        SETUP, DATA,
        ("from sklearn.linear_model import LogisticRegression\nfeatures = [c for c in X if c != 'sample_id']\n"
         "model = LogisticRegression(max_iter=5000).fit(X[features].to_numpy(), y)", "train"),
        ("def predict(row):\n    return int(model.predict(np.asarray(row, dtype=float).reshape(1, -1))[0])",
         "serve")])
    with pytest.raises(MlopsError) as info:
        jupyter_mlops.register(run["id"], "wine", workspace=ws)
    text = str(info.value)
    assert "fails on 5 rows of its training data" in text and "ValueError" in text
    assert "write it for a batch" in text and "nothing was registered" in text
    assert jupyter_mlops.models(workspace=ws) == []


def test_a_predict_returning_one_value_for_many_rows_is_refused(make_notebook):
    run, ws = _run(make_notebook, [
        SETUP, DATA,
        ("from sklearn.linear_model import LogisticRegression\n"
         "model = LogisticRegression(max_iter=5000).fit(X, y)", "train"),
        ("def predict(X):\n    return model.predict(X)[0]", "serve")])
    # a numpy scalar (what `model.predict(X)[0]` gives): its tolist() is a number, not one value per row
    with pytest.raises(MlopsError, match="returned an int64 for 5 rows, not one value per row"):
        jupyter_mlops.register(run["id"], "wine", workspace=ws)


def test_a_predict_returning_a_list_of_numpy_values_registers_and_is_served(make_notebook):
    """One answer per row built in a loop (`[model.predict(...)[0] ...]`) is a list of numpy values: register
    refused it ("cannot send as JSON") while the server can send it as it sends an array."""
    run, ws = _run(make_notebook, [
        SETUP, DATA,
        ("from sklearn.linear_model import LogisticRegression\n"
         "model = LogisticRegression(max_iter=5000).fit(X, y)", "train"),
        ("def predict(X):\n    return [model.predict(X.iloc[[i]])[0] for i in range(len(X))]", "serve")])
    jupyter_mlops.register(run["id"], "wine", workspace=ws)
    server = serve_in_background(create_app(load(Workspace(ws), "wine")))
    try:
        from sklearn.datasets import load_wine

        wine = load_wine(as_frame=True)
        row = {"sample_id": 0, **{c.replace("/", "_"): v for c, v in wine.data.iloc[0].items()}}
        reply = requests.post(f"{server.url}/invocations", json={"dataframe_records": [row, row]})
        assert reply.status_code == 200 and reply.json()["predictions"] == [int(wine.target[0])] * 2, reply.text
    finally:
        server.stop()


def test_schema_asks_only_for_the_columns_the_model_reads(make_notebook):
    run, ws = _run(make_notebook, [
        SETUP, DATA,
        ("from sklearn.ensemble import RandomForestClassifier\nfeatures = ['alcohol', 'malic_acid', 'proline']\n"
         "model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X[features], y)", "train"),
        ("def predict(X):\n    return model.predict(X)", "serve")])
    version = jupyter_mlops.register(run["id"], "wine", workspace=ws)
    assert [c["name"] for c in version["schema"]] == ["alcohol", "malic_acid", "proline"]
    server = serve_in_background(create_app(load(Workspace(ws), "wine")))
    try:
        reply = requests.post(f"{server.url}/invocations", json={"dataframe_records": [
            {"alcohol": 13.2, "malic_acid": 1.8, "proline": 1050.0}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] in ([0], [1], [2])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served_with_nulls(tmp_path_factory):
    """A model fitted on data with missing values in `magnesium` (HistGradientBoosting takes NaN as it is)."""
    from conftest import write_notebook

    folder = tmp_path_factory.mktemp("nulls")
    nb_path = write_notebook(folder / "nulls.ipynb", [
        SETUP, DATA,
        ("X = X.drop(columns='sample_id')\nX.loc[X.index % 7 == 0, 'magnesium'] = np.nan", "step:clean"),
        ("from sklearn.ensemble import HistGradientBoostingClassifier\n"
         "model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)", "train"),
        ("def predict(X):\n    return model.predict(X)", "serve")])
    run = jupyter_mlops.run(nb_path)
    assert run["status"] == "succeeded", run["error"]
    ws = folder / ".mlops"
    version = jupyter_mlops.register(run["id"], "wine-nulls", workspace=ws)
    nullable = {c["name"] for c in version["schema"] if c["nullable"]}
    assert nullable == {"magnesium"}
    model = load(Workspace(ws), "wine-nulls")
    server = serve_in_background(create_app(model))
    yield server.url, model
    server.stop()


def test_a_null_where_training_data_had_nulls_is_predicted_in_both_protocols(served_with_nulls):
    url, model = served_with_nulls
    row = {c: 1.0 for c in model.columns} | {"alcohol": 13.0, "proline": 1000.0, "magnesium": None}
    reply = requests.post(f"{url}/invocations", json={"dataframe_records": [row]})
    assert reply.status_code == 200, reply.text
    values = [row[c] for c in model.columns]
    reply = requests.post(f"{url}/v2/models/wine-nulls/infer", json={"inputs": [
        {"name": "x", "shape": [1, len(values)], "datatype": "FP64", "data": values}]})
    assert reply.status_code == 200, reply.text


def test_a_null_where_training_data_had_none_is_still_a_4xx_naming_the_column(served_with_nulls):
    url, model = served_with_nulls
    row = {c: 1.0 for c in model.columns} | {"alcohol": None}
    reply = requests.post(f"{url}/invocations", json={"dataframe_records": [row]})
    assert reply.status_code == 400 and "`alcohol`" in reply.json()["error"]
    values = [row[c] for c in model.columns]
    reply = requests.post(f"{url}/v2/models/wine-nulls/infer", json={"inputs": [
        {"name": "x", "shape": [1, len(values)], "datatype": "FP64", "data": values}]})
    assert reply.status_code == 400 and "`alcohol`" in reply.json()["error"]
