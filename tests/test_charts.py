"""Issue 18, items 6-9: the charts. Each spec is built from a real workspace (a sweep, runs, a served model with
logged traffic), checked against Vega-Lite 5's own JSON schema, and drawn to SVG by Vega itself (node, the same
versions JupyterLab ships), so a spec that JupyterLab or the panel could not draw fails here."""
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops import charts
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.monitor import traffic
from jupyter_mlops.serving.server import load, serve_in_background

from conftest import EXAMPLES, register_digits

LABEXTENSION = Path(__file__).resolve().parent.parent / "labextension"
DIGITS = load_digits()


def draw(*specs: dict) -> list[str]:
    """Each spec validated against Vega-Lite's schema, compiled by vega-lite and drawn to SVG by vega."""
    import jsonschema

    node_modules = LABEXTENSION / "node_modules"
    if not (node_modules / "vega").exists() or not shutil.which("node"):
        pytest.fail("the charts' tests draw with vega from labextension/node_modules: "
                    "`cd labextension && jlpm install`")
    schema = json.loads((node_modules / "vega-lite" / "build" / "vega-lite-schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)  # not check_schema: its refs ("Def<Type>") fail the URI format
    for spec in specs:
        errors = sorted(validator.iter_errors(spec), key=lambda e: len(e.path))
        assert not errors, [f"{list(e.path)}: {e.message[:300]}" for e in errors[:3]]
    script = """
        const vl = require('vega-lite'), vega = require('vega');
        let input = '';
        process.stdin.on('data', d => input += d).on('end', async () => {
          const out = [];
          for (const spec of JSON.parse(input)) {
            const warnings = [];
            const logger = {level() { return this; }, warn(...a) { warnings.push(a.join(' ')); return this; },
                            info() { return this; }, debug() { return this; },
                            error(...a) { throw new Error(a.join(' ')); }};
            const compiled = vl.compile(spec, {logger}).spec;
            const svg = await new vega.View(vega.parse(compiled), {renderer: 'none'}).toSVG();
            out.push({svg, warnings});
          }
          console.log(JSON.stringify(out));
        });"""
    done = subprocess.run(["node", "-e", script], input=json.dumps(specs), capture_output=True, text=True,
                          cwd=LABEXTENSION, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    drawn = json.loads(done.stdout)
    for result in drawn:
        assert not result["warnings"], result["warnings"]
    return [result["svg"] for result in drawn]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two registered digits runs (C=1, C=5), a sweep over C and gamma, and shifted traffic logged for `digits`."""
    folder = tmp_path_factory.mktemp("charts")
    register_digits(folder, ("1", "5"))
    ws = folder / ".mlops"
    sweep = jupyter_mlops.sweep(folder / "digits.ipynb", {"C": "0.1,1,10"}, maximize="accuracy", workspace=ws)
    model = load(jupyter_mlops.workspace.Workspace(ws), "digits")
    app = create_app(model, log_folder=ws / "logs" / "digits")
    server = serve_in_background(app)
    rng = np.random.default_rng(0)
    shifted = np.clip(DIGITS.data[rng.integers(0, len(DIGITS.data), 400)] + 4, 0, 16).tolist()
    try:
        with requests.Session() as session:
            for i in range(0, len(shifted), 20):
                assert session.post(f"{server.url}/invocations", json={"instances": shifted[i:i + 20]}).ok
        deadline = time.monotonic() + 30
        while app.state.request_log.written < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
        app.state.request_log.close()
    return {"folder": folder, "ws": ws, "sweep": sweep}


def test_a_sweep_chart_plots_the_metric_against_the_swept_parameter_with_the_best_trial_marked(workspace):
    sweep = workspace["sweep"]
    spec = jupyter_mlops.api.sweep_chart(sweep["id"], workspace=workspace["ws"])
    points = spec["data"]["values"]
    assert len(points) == 3 and sum(p["best"] for p in points) == 1
    best = next(p for p in points if p["best"])
    assert best["run"] == sweep["best"]["id"] and best["score"] == max(p["score"] for p in points)
    assert {p["p0"] for p in points} == {0.1, 1, 10}  # C, the one swept parameter
    [panel] = spec["concat"]
    assert panel["layer"][0]["encoding"]["x"] == {"field": "p0", "type": "quantitative", "scale": {"type": "log"},
                                                  "title": "C"}
    assert spec["title"]["text"] == "accuracy by C" and spec["title"]["subtitle"][0] == f"sweep {sweep['id']}"
    [svg] = draw(spec)
    assert ">best<" in svg and ">C<" in svg and ">accuracy<" in svg


def test_several_swept_parameters_get_a_panel_each_and_parallel_coordinates():
    trials = [{"id": f"r{i}", "status": "succeeded", "params": {"C": c, "gamma": g, "kernel": k, "seed": 0},
               "metrics": {"val.loss": 1 / (1 + i)}}
              for i, (c, g, k) in enumerate([(0.1, 0.001, "rbf"), (1, 0.01, "rbf"), (10, 0.1, "linear"),
                                             (100, 0.001, "linear")])]
    spec = charts.sweep(trials, "val.loss", maximize=False, best="r3")
    panels, parallel = spec["vconcat"]
    assert [p["layer"][0]["encoding"]["x"]["title"] for p in panels["concat"]] == ["C", "gamma", "kernel"]
    assert panels["concat"][2]["layer"][0]["encoding"]["x"]["type"] == "nominal"  # kernel: categories
    assert parallel["transform"][1]["fold"] == ["p0", "p1", "score"]  # numeric parameters and the metric
    assert "lowest val.loss" in " ".join(spec["title"]["subtitle"])
    [svg] = draw(spec)
    assert ">val.loss<" in svg and ">gamma<" in svg and ">kernel<" in svg  # a dotted metric name is no field path


def test_runs_chart_follows_one_notebooks_metric_and_compare_sets_runs_side_by_side(workspace):
    ws = workspace["ws"]
    other = workspace["folder"] / "other.ipynb"
    shutil.copy(EXAMPLES / "digits.ipynb", other)
    jupyter_mlops.run(other, {"C": "2"}, workspace=ws)
    everything = jupyter_mlops.api.runs_chart("accuracy", workspace=ws)
    assert len(everything["data"]["values"]) == 6 and "color" in everything["encoding"]  # two notebooks
    mine = jupyter_mlops.api.runs_chart(notebook=workspace["folder"] / "digits.ipynb", workspace=ws)
    values = mine["data"]["values"]
    assert len(values) == 5 and {v["notebook"] for v in values} == {"digits.ipynb"}
    assert [v["started"] for v in values] == sorted(v["started"] for v in values)  # oldest first
    assert mine["encoding"]["y"]["title"] == "accuracy" and "color" not in mine["encoding"]
    assert "digits.ipynb" in mine["title"]["text"]
    first, second = values[0]["run"], values[1]["run"]
    side = jupyter_mlops.api.compare_chart([first, second], workspace=ws)
    assert {(v["run"], v["metric"]) for v in side["data"]["values"]} >= {(first, "accuracy"), (second, "accuracy")}
    with pytest.raises(MlopsError, match="at least two runs"):
        jupyter_mlops.api.compare_chart([first], workspace=ws)
    svgs = draw(everything, mine, side)
    assert all(">accuracy<" in svg for svg in svgs)


def test_monitor_chart_puts_drifted_features_first_and_says_how_many_it_shows(workspace):
    spec = jupyter_mlops.api.monitor_chart("digits", workspace=workspace["ws"])
    found = jupyter_mlops.monitor("digits", workspace=workspace["ws"])
    shown = spec["facet"]["sort"]
    assert len(shown) == charts.MAX_FEATURES and all(s.endswith("(drifted)") for s in shown)
    assert spec["title"]["subtitle"][0].startswith(f"{charts.MAX_FEATURES} of 64 features")
    assert "Bonferroni" in found["drift_rule"] and "PSI" in found["drift_rule"]
    feature = found["features"][shown[0].removesuffix(" (drifted)")]
    assert abs(sum(b["live"] for b in feature["histogram"]) - 1) < 1e-9
    assert abs(sum(b["training"] for b in feature["histogram"]) - 1) < 1e-6
    [svg] = draw(spec)
    assert "(drifted)" in svg and ">training<" in svg and ">live<" in svg
    # the training and live bars of a bin stand side by side, each wide enough to see (they were 0.25 px)
    widths = [float(w) for w in re.findall(r'aria-roledescription="bar" d="M[-\d.e]+,[-\d.e]+h([-\d.e]+)', svg)]
    assert len(widths) >= 2 * charts.MAX_FEATURES and min(widths) > 2, sorted(widths)[:5]


def test_traffic_is_bucketed_per_variant_with_rates_latency_and_shares(tmp_path):
    log = tmp_path / "requests.jsonl"
    start = 1_700_000_000.0
    lines = [{"at": start + i, "variant": "canary" if i % 4 == 0 else "primary", "latency_ms": 2.0 + (i % 4)}
             for i in range(60)]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    series = traffic(tmp_path, buckets=6)
    assert {s["variant"] for s in series} == {"primary", "canary"}
    first = [s for s in series if s["time"] == series[0]["time"]]
    assert sum(s["share"] for s in first) == pytest.approx(1.0)
    canary = next(s for s in first if s["variant"] == "canary")
    assert canary["share"] == pytest.approx(0.25, abs=0.11) and canary["p50"] == 2.0
    assert sum(s["requests"] for s in series) == 60
    spec = charts.traffic(series, [{"shadow": "shadow", "agreement": 0.93, "compared": 1200}], title="wine")
    [svg] = draw(spec)
    assert ">requests/s<" in svg and ">latency ms<" in svg and ">shadow agreement<" in svg


def test_traffic_chart_of_a_served_model(workspace):
    spec = jupyter_mlops.api.traffic_chart("digits", workspace=workspace["ws"])
    assert sum(s["requests"] for s in spec["data"]["values"]) == 20
    assert "20 logged requests" in spec["title"]["subtitle"]
    with pytest.raises(MlopsError):
        jupyter_mlops.api.traffic_chart("../etc", workspace=workspace["ws"])


def test_the_command_line_prints_a_chart_as_a_vega_lite_spec(workspace):
    import sys

    ws = str(workspace["ws"])
    for args in (["runs", "--plot", "accuracy"], ["monitor", "digits", "--plot", "drift"]):
        done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args, "--workspace", ws],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        spec = json.loads(done.stdout)
        assert spec["$schema"] == charts.SCHEMA and spec["data"]["values"]
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "monitor", "digits", "--top", "5",
                           "--workspace", ws], capture_output=True, text=True, timeout=120)
    assert "5 of 64 features shown, drifted first, then by PSI" in done.stdout
    assert "rule: a feature has drifted when" in done.stdout and "Bonferroni" in done.stdout


def test_a_chart_fits_the_width_it_is_asked_for(workspace):
    """The panel asks for its own width: every view scaled alike, small multiples stacked when narrow."""
    wide = jupyter_mlops.api.monitor_chart("digits", workspace=workspace["ws"])
    narrow = jupyter_mlops.api.monitor_chart("digits", width=200, workspace=workspace["ws"])
    assert wide["columns"] == 2 and wide["spec"]["width"] == charts.WIDTH // 2
    assert narrow["columns"] == 1 and narrow["spec"]["width"] == 200 and narrow["title"]["limit"] == 280
    assert narrow["data"] == wide["data"]
    sweep = jupyter_mlops.api.sweep_chart(workspace["sweep"]["id"], width=160, workspace=workspace["ws"])
    assert sweep["concat"][0]["width"] == 160
    draw(narrow, sweep)
