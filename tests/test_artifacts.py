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
