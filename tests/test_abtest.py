"""Issue 20, part 2: the A-B test on joined outcomes. Statistics against hand-computed values, then a real
deployment with a canary, real traffic and feedback, compared by `jupyter-mlops abtest`."""
import json
import math
import subprocess
import sys

import pytest
import requests
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.serving import abtest
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import deployment, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import register_digits

DIGITS = load_digits()


def test_the_statistics_match_hand_computed_values():
    a = [1.0] * 45 + [0.0] * 55  # 45 of 100
    b = [1.0] * 60 + [0.0] * 40  # 60 of 100
    # pooled p = 0.525, se = sqrt(0.525 * 0.475 * 2 / 100) = 0.070622, z = 0.15 / se = 2.1240
    assert abtest.two_proportions(a, b) == pytest.approx(0.03367, abs=2e-5)
    low, high = abtest._interval(a, binary=True)  # Wilson, 45/100
    assert (low, high) == (pytest.approx(0.35615, abs=1e-4), pytest.approx(0.54756, abs=1e-4))
    # (1.95996 * sqrt(2 * .525 * .475) + 0.84162 * sqrt(.45 * .55 + .6 * .4)) ** 2 / .15 ** 2 = 172.6
    assert abtest.needed(a, b, binary=True) == 173
    # Welch against its formula: t over the unpooled standard error, Welch-Satterthwaite degrees of freedom
    from scipy import stats

    x = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    y = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    vx, vy = abtest._var(x) / len(x), abtest._var(y) / len(y)
    t = (sum(y) / len(y) - sum(x) / len(x)) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    assert abtest.welch(x, y) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert t == pytest.approx(2.4554, abs=1e-3) and df == pytest.approx(24.9885, abs=1e-3)


def _outcomes(variant, version, values, kind="label"):
    key = "correct" if kind == "label" else "reward"
    return [{"variant": variant, "version": version, "kind": kind, "correct": None, "reward": None, key: v,
             "rows": 1, "at": 0.0} for v in values]


def test_verdicts_and_the_declared_horizon():
    outcomes = _outcomes("primary", 1, [1.0] * 45 + [0.0] * 55) + _outcomes("canary", 2, [1.0] * 60 + [0.0] * 40)
    found = abtest.compare(outcomes)
    base, canary = found["variants"]
    assert found["metric"] == "accuracy" and base["variant"] == "primary" and "verdict" not in base
    assert canary["verdict"] == "better" and canary["test"] == "two-proportion z" and canary["more_needed"] == 73
    assert found["note"].startswith("the p-values assume a sample size fixed in advance")
    early = abtest.compare(outcomes, horizon=500)
    assert early["variants"][1]["verdict"] == "interim: better" and early["note"] is None
    revenue = _outcomes("primary", 1, [10.0, 12.0, 9.0, 11.0], "reward") + \
        _outcomes("canary", 2, [10.5, 11.0, 9.5, 12.0], "reward")
    money = abtest.compare(revenue)
    assert money["metric"] == "reward" and money["variants"][1]["test"] == "Welch t"
    assert money["variants"][1]["verdict"] == "no significant difference yet"
    with pytest.raises(MlopsError, match="no labelled outcomes yet"):
        abtest.compare(revenue, metric="accuracy")
    with pytest.raises(MlopsError, match="--horizon 1"):
        abtest.compare(outcomes, horizon=1)
    # a request of 20 rows judged by labels is 20 observations, and its interval stays within 0..1
    rows = [{"variant": "primary", "version": 1, "kind": "label", "correct": 0.95, "reward": None, "rows": 20,
             "at": 0.0}] * 10
    [alone] = abtest.compare(rows)["variants"]
    assert alone["n"] == 200 and alone["value"] == 0.95 and 0 < alone["low"] < alone["high"] < 1


def test_a_canary_that_is_worse_is_found_worse_on_real_traffic(tmp_path):
    register_digits(tmp_path, c_values=("5", "0.00001"))  # version 2 barely learnt anything
    ws = Workspace(tmp_path / ".mlops")
    app = create_app(deployment(ws, "digits", canary=2, weight=50), log_folder=ws.root / "logs" / "digits")
    server = serve_in_background(app)
    ids = []
    try:
        with requests.Session() as session:
            for row in range(300):
                answer = session.post(f"{server.url}/invocations", json={"instances": [DIGITS.data[row].tolist()]})
                ids.append((answer.headers["x-request-id"], int(DIGITS.target[row])))
            half = len(ids) // 2
            sent = session.post(f"{server.url}/feedback", json={"feedback": [
                {"request_id": rid, "outcome": label} for rid, label in ids[:half]]})
            assert sent.json() == {"joined": half}
    finally:
        server.stop()
    import pandas as pd

    bulk = pd.DataFrame({"request_id": [r for r, _ in ids[half:]], "label": [label for _, label in ids[half:]]})
    assert jupyter_mlops.feedback("digits", bulk, workspace=ws.root) == {"joined": 300 - half}

    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "abtest", "digits", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    found = json.loads(done.stdout)
    primary, canary = found["variants"]
    assert (primary["variant"], primary["version"], canary["variant"], canary["version"]) == \
        ("primary", 1, "canary", 2)
    assert primary["n"] + canary["n"] == 300 and primary["value"] > 0.95 and canary["value"] < 0.5
    assert canary["verdict"] == "worse" and canary["p_value"] < 1e-6
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "abtest", "digits"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert "worse" in shown.stdout and "95% interval" in shown.stdout, shown
    monitored = jupyter_mlops.monitor("digits", workspace=ws.root)["outcomes"]
    assert {(o["variant"], o["version"]) for o in monitored} == {("primary", 1), ("canary", 2)}
    with pytest.raises(MlopsError, match="no prediction with request id `nope`"):
        jupyter_mlops.feedback("digits", [{"request_id": "nope", "outcome": 1}], workspace=ws.root)
    with pytest.raises(MlopsError, match="no outcomes for `wine` yet"):
        jupyter_mlops.abtest("wine", workspace=ws.root)
