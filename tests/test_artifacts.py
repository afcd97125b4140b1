import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from jupyter_mlops.artifacts import MarshalError, load_inputs, read_manifest, save_outputs


def test_each_type_takes_its_format_and_round_trips(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    series = pd.Series([1.5, 2.5], name="s")
    array = np.arange(6).reshape(2, 3)
    model = LogisticRegression().fit([[0], [1]], [0, 1])
    other = {"k": [1, 2]}
    manifest = save_outputs(str(tmp_path), "data", {"frame": frame, "series": series, "array": array,
                                                    "model": model, "other": other})
    assert {n: e["format"] for n, e in manifest.items()} == {
        "frame": "parquet", "series": "parquet-series", "array": "npy", "model": "joblib", "other": "cloudpickle"}
    assert read_manifest(str(tmp_path), "data") == manifest
    f, s, a, m, o = load_inputs(str(tmp_path), {n: "data" for n in ["frame", "series", "array", "model", "other"]})
    pd.testing.assert_frame_equal(f, frame)
    pd.testing.assert_series_equal(s, series)
    np.testing.assert_array_equal(a, array)
    assert m.predict([[1]]).tolist() == [1] and o == other


def test_frames_parquet_cannot_keep_exactly_still_round_trip(tmp_path):
    numbered = pd.DataFrame(np.eye(2))  # integer column names would come back as strings from parquet
    mixed = pd.DataFrame({"v": [1, "a", 2.5]})  # a mixed-type object column: parquet refuses it
    manifest = save_outputs(str(tmp_path), "data", {"numbered": numbered, "mixed": mixed})
    assert manifest["numbered"]["format"] == "cloudpickle"
    assert manifest["mixed"]["format"] == "cloudpickle" and "parquet_refused" in manifest["mixed"]
    a, b = load_inputs(str(tmp_path), {"numbered": "data", "mixed": "data"})
    pd.testing.assert_frame_equal(a, numbered)
    pd.testing.assert_frame_equal(b, mixed)


def test_through_an_fsspec_url():
    pytest.importorskip("fsspec.implementations.memory")
    save_outputs("memory://mlops-test", "train", {"x": np.ones(3)})
    assert load_inputs("memory://mlops-test", {"x": "train"})[0].tolist() == [1, 1, 1]


def test_unmarshallable_value_names_variable_type_and_step(tmp_path):
    with pytest.raises(MarshalError) as info:
        save_outputs(str(tmp_path), "features", {"rows": (i for i in range(3))})
    text = str(info.value)
    assert "`features`" in text and "`rows`" in text and "generator" in text


def test_missing_manifest_says_run_the_step_first(tmp_path):
    with pytest.raises(MarshalError) as info:
        load_inputs(str(tmp_path), {"x": "data"})
    assert "step `data` has no saved outputs" in str(info.value)


def test_xgboost_values_go_through_xgboosts_own_save_and_load(tmp_path):
    xgb = pytest.importorskip("xgboost", reason="xgboost-cpu is in the test extras")
    X = np.random.default_rng(0).random((40, 3))
    y = (X[:, 0] > 0.5).astype(int)
    dtrain = xgb.DMatrix(X, label=y, feature_names=["a", "b", "c"])
    booster = xgb.train({"objective": "binary:logistic"}, dtrain, 3)
    manifest = save_outputs(str(tmp_path), "train", {"dtrain": dtrain, "booster": booster})
    assert manifest["dtrain"]["format"] == "xgboost-dmatrix" and manifest["booster"]["format"] == "xgboost-booster"
    d, b = load_inputs(str(tmp_path), {"dtrain": "train", "booster": "train"})
    assert d.num_row() == 40 and d.feature_names == ["a", "b", "c"] and d.get_label().tolist() == y.tolist()
    np.testing.assert_allclose(b.predict(d), booster.predict(dtrain))


def test_lightgbm_values_go_through_lightgbms_own_save_and_load(tmp_path):
    lgb = pytest.importorskip("lightgbm", reason="lightgbm is in the test extras")
    X = np.random.default_rng(0).random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    dataset = lgb.Dataset(X, label=y, params={"verbose": -1})
    booster = lgb.train({"objective": "binary", "verbose": -1}, dataset, 3)
    manifest = save_outputs(str(tmp_path), "train", {"dataset": dataset, "booster": booster})
    assert manifest["dataset"]["format"] == "lightgbm-dataset"
    assert manifest["booster"]["format"] == "lightgbm-booster"
    d, b = load_inputs(str(tmp_path), {"dataset": "train", "booster": "train"})
    assert d.construct().num_data() == 60
    np.testing.assert_allclose(b.predict(X), booster.predict(X))


def test_torch_tensors_and_modules_of_the_notebooks_own_class(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed here (.ci/run installs its CPU wheel)")
    import cloudpickle

    # a module class defined in the notebook lives in __main__ there: saved by value, it loads where it was never
    # defined (here, a class made on the fly stands in for it)
    namespace: dict = {"__name__": "__main__", "torch": torch}
    exec("class Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
         "        self.lin = torch.nn.Linear(3, 1)\n    def forward(self, x):\n        return self.lin(x)\n",
         namespace)
    net = namespace["Net"]()
    tensor = torch.arange(6.0).reshape(2, 3)
    manifest = save_outputs(str(tmp_path), "train", {"net": net, "tensor": tensor})
    assert manifest["net"]["format"] == "torch" and manifest["tensor"]["format"] == "torch"
    n, t = load_inputs(str(tmp_path), {"net": "train", "tensor": "train"})
    assert torch.equal(t, tensor) and torch.allclose(n(tensor), net(tensor))
    assert cloudpickle  # cloudpickle is what makes the class travel


def test_a_plugin_serializer_is_tried_first_and_its_format_read_back(tmp_path, monkeypatch):
    from jupyter_mlops import serializers

    class Celsius(float):
        pass

    def write(value, path):
        with open(path, "w") as f:
            f.write(repr(float(value)))

    def read(path):
        with open(path) as f:
            return Celsius(float(f.read()))

    monkeypatch.setattr(serializers, "_registered", [])
    serializers.register(serializers.Serializer("celsius", "celsius.txt", lambda v: isinstance(v, Celsius), write,
                                                read))
    manifest = save_outputs(str(tmp_path), "data", {"t": Celsius(21.5)})
    assert manifest["t"]["format"] == "celsius" and (tmp_path / "data" / "t.celsius.txt").read_text() == "21.5"
    assert load_inputs(str(tmp_path), {"t": "data"}) == (Celsius(21.5),)
    monkeypatch.setattr(serializers, "_registered", [])
    with pytest.raises(MarshalError, match="saved `t` as `celsius`, which no installed serializer reads"):
        load_inputs(str(tmp_path), {"t": "data"})


def test_keras_models_go_through_keras_save_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # Keras 3 on the CPU wheel of PyTorch: no TensorFlow needed
    pytest.importorskip("torch", reason="Keras is tested on PyTorch's backend, and PyTorch is not installed here")
    keras = pytest.importorskip("keras", reason="Keras is not installed here (.ci/run installs it)")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    manifest = save_outputs(str(tmp_path), "train", {"model": model})
    assert manifest["model"]["format"] == "keras" and manifest["model"]["file"] == "model.keras"
    loaded = load_inputs(str(tmp_path), {"model": "train"})[0]
    x = np.ones((2, 3))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
