"""Issue 14, item 3: property-based fuzzing of both protocols against a real server, 1,000 examples each per run.
Whatever the body, the answer is never a 5xx and the server still answers afterwards. Bodies are built near the
protocols' shapes (right keys, plausible shapes and column names, hostile values) so they reach deep into decoding,
not only the first check."""
import json

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jupyter_mlops.serving.app import ServedModel, create_app
from jupyter_mlops.serving.limits import ServerLimits
from jupyter_mlops.serving.server import serve_in_background

NUMERIC = ["a", "b"]
SCHEMAS = {
    "numbers": [{"name": c, "type": "float64", "kind": "numeric"} for c in NUMERIC],
    "mixed": [{"name": "a", "type": "float64", "kind": "numeric"},
              {"name": "colour", "type": "object", "kind": "categorical"}],
}


@pytest.fixture(scope="module")
def servers():
    running = {name: serve_in_background(create_app(ServedModel(name, 1, lambda frame: [1] * len(frame), schema),
                                                    limits=ServerLimits(max_body=256 * 1024)))
               for name, schema in SCHEMAS.items()}
    yield {name: server.url for name, server in running.items()}
    for server in running.values():
        server.stop()


SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
           | st.sampled_from(["1.5", "nan", "inf", "", "red"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4),
                                                                                           inner, max_size=3),
                      max_leaves=30)
NAMES = st.sampled_from(["a", "b", "colour", "x", ""]) | VALUES
SIZES = st.lists(st.integers(min_value=-3, max_value=4) | st.sampled_from([10 ** 12, 2 ** 63, 0]) | VALUES,
                 max_size=4)
DATATYPES = st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "UINT8", "fp64", "STRING"]) | VALUES
TENSOR = st.fixed_dictionaries({"name": NAMES, "shape": SIZES | VALUES, "datatype": DATATYPES,
                                "data": st.lists(VALUES, max_size=8) | VALUES},
                               optional={"parameters": VALUES})
OIP = st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=3) | VALUES},
                            optional={"id": VALUES, "outputs": VALUES, "parameters": VALUES}) | VALUES
ROWS = st.lists(st.lists(SCALARS, min_size=0, max_size=3) | SCALARS | st.dictionaries(NAMES.filter(
    lambda n: isinstance(n, str)), SCALARS, max_size=3), max_size=5)
MLFLOW = (st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries(
              {"data": ROWS | VALUES}, optional={"columns": st.lists(NAMES, max_size=3) | VALUES,
                                                 "index": VALUES})})
          | st.fixed_dictionaries({"dataframe_records": ROWS | VALUES})
          | st.fixed_dictionaries({"instances": ROWS | VALUES})
          | st.fixed_dictionaries({"inputs": ROWS | st.dictionaries(NAMES.filter(lambda n: isinstance(n, str)),
                                                                   st.lists(SCALARS, max_size=4) | VALUES,
                                                                   max_size=3) | VALUES})
          | st.dictionaries(st.sampled_from(["dataframe_split", "instances", "inputs", "params"]), VALUES,
                            max_size=3)
          | VALUES)
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)


SESSION = requests.Session()  # kept-alive connections: the fuzzing's time goes to the server, not to handshakes


def post(url: str, body) -> requests.Response:
    return SESSION.post(url, data=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"},
                        timeout=30)


def never_5xx(url: str, body, answer: str) -> None:
    reply = post(url, body)
    assert reply.status_code < 500, (body, reply.text)
    assert "error" in reply.json() if reply.status_code >= 400 else answer in reply.json()


@FUZZ
@given(body=OIP, schema=st.sampled_from(sorted(SCHEMAS)))
def test_open_inference_protocol_never_5xx(servers, body, schema):
    never_5xx(f"{servers[schema]}/v2/models/{schema}/infer", body, "outputs")


@FUZZ
@given(body=MLFLOW, schema=st.sampled_from(sorted(SCHEMAS)))
def test_mlflow_scoring_protocol_never_5xx(servers, body, schema):
    never_5xx(f"{servers[schema]}/invocations", body, "predictions")


def test_the_servers_still_answer_after_the_fuzzing(servers):
    for schema, url in servers.items():
        assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        row = [1.0, 2.0] if schema == "numbers" else [1.0, "red"]
        assert post(f"{url}/invocations", {"instances": [row]}).json() == {"predictions": [1]}


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.lists(SCALARS, max_size=4) | st.text(alphabet="0123456789", min_size=2, max_size=2), max_size=4)
       | st.lists(SCALARS, max_size=6) | VALUES)
@example([[1, 2], "34"])  # a row that is a string of digits is not two numbers
@example([[1, 2], [3]])  # ragged rows
@example([[[1, 2]], [[3, 4]]])  # deeper nesting, which numpy reads
def test_the_quick_number_reader_reads_what_numpy_reads(values):
    """frames.float_array reads rows value by value in C (issue 17's 1,000-row requests): on anything a body can
    hold it gives numpy's answer, or refuses where numpy refuses."""
    from unittest import mock

    import numpy as np

    from jupyter_mlops.serving import frames

    try:
        expected = np.array(values, dtype=float)
    except (TypeError, ValueError):
        expected = None
    with mock.patch.object(frames, "QUICK_READ_FROM", 0):  # the quick reader even for a few values
        got = frames.float_array(values)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=True)
