"""%mlops executed in a real kernel through nbclient (no widget frontend), as a notebook would."""
import nbformat.v4 as v4
from nbclient import NotebookClient

from conftest import write_notebook
from test_sweep import SWEPT


def execute(path, cells):
    nb = v4.new_notebook(cells=[v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path)}}).execute()
    return nb


def outputs(cell):
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


def test_magics_run_sweep_runs_compare_in_a_kernel(tmp_path):
    write_notebook(tmp_path / "target.ipynb", SWEPT)
    nb = execute(tmp_path, [
        "%load_ext jupyter_mlops",
        "r = %mlops run target.ipynb -p C 2\nassert r['status'] == 'succeeded', r\n"
        "assert r['metrics'] == {'score': 90.0}\nr",
        "df = %mlops sweep target.ipynb -p C 1,3 --maximize score\n"
        "assert list(df['metrics.score']) == [135.0, 45.0], df\nassert list(df['params.C']) == [3.0, 1.0]",
        "table = %mlops runs\n"
        "assert len(table) == 3 and {'params.C', 'metrics.score', 'status'} <= set(table.columns)\n"
        "kept = %mlops runs --filter score>50 --sort metrics.score --ascending\n"
        "assert list(kept['metrics.score']) == [90.0, 135.0], kept",
        "first, second = df.run[0], df.run[1]\ndiff = %mlops compare {first} {second}\n"
        "assert {'params.C', 'metrics.score'} <= set(diff.index), diff",
        "import os\nos.environ['JPY_SESSION_NAME'] = 'target.ipynb'\n%mlops validate",
        "del os.environ['JPY_SESSION_NAME']\n%mlops run",
        "%mlops schedule add target.ipynb --name weekly --cron '0 6 * * 1'\n%mlops schedule list",
        "os.environ['JPY_SESSION_NAME'] = 'target.ipynb'\n%mlops runs --plot",
        "%mlops compare {first} {second} --plot",
    ])
    assert "<run " in outputs(nb.cells[1]) and "succeeded" in outputs(nb.cells[1])
    assert "best (maximize score)" in outputs(nb.cells[2])
    # the sweep's live table is an ipywidgets HTML model, even with no frontend to show it
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in nb.cells[2].outputs)
    assert "train [train]" in outputs(nb.cells[5])
    assert "cannot tell which notebook" in outputs(nb.cells[6])
    assert "weekly" in outputs(nb.cells[7]) and "0 6 * * 1" in outputs(nb.cells[7])
    # charts (issue 18): JupyterLab draws application/vnd.vegalite.v5+json with its own Vega renderer
    [swept] = charts(nb.cells[2])
    assert swept["title"]["text"] == "score by C" and len(swept["data"]["values"]) == 2
    [across] = charts(nb.cells[8])
    assert across["title"]["text"] == "score across runs of target.ipynb" and len(across["data"]["values"]) == 3
    [side] = charts(nb.cells[9])
    assert {v["metric"] for v in side["data"]["values"]} == {"score"}


def charts(cell) -> list[dict]:
    return [o["data"]["application/vnd.vegalite.v5+json"] for o in cell.outputs
            if "application/vnd.vegalite.v5+json" in o.get("data", {})]


def test_a_notebook_that_drives_itself_does_not_recurse(make_notebook, tmp_path):
    from jupyter_mlops.compile import step_notebook
    from jupyter_mlops.pipeline import build_pipeline

    nb = make_notebook([("x = 1", "data"), "%load_ext jupyter_mlops\n%mlops run\ny = x"])
    step = step_notebook(build_pipeline(nb), build_pipeline(nb).step("data"))
    code = "\n".join(c.source for c in step.cells if c.cell_type == "code")
    assert "# (not run inside the pipeline) %mlops run" in code
    assert "# (not run inside the pipeline) %load_ext jupyter_mlops" in code


def test_deploy_and_monitor_magics(tmp_path):
    import shutil

    from conftest import EXAMPLES

    shutil.copy(EXAMPLES / "digits.ipynb", tmp_path / "digits.ipynb")
    nb = execute(tmp_path, [
        "%load_ext jupyter_mlops",
        "r = %mlops run digits.ipynb\nv = %mlops register {r['id']} --name digits --require accuracy>=0.9",
        "server = %mlops deploy digits --port 0\nimport requests\nfrom sklearn.datasets import load_digits\n"
        "rows = load_digits().data[:300].tolist()\n"
        "for i in range(0, 300, 30):\n"
        "    assert requests.post(server.url + '/invocations', json={'instances': rows[i:i+30]}).status_code == 200",
        "import time\ntime.sleep(1)\ndrift = %mlops monitor digits\ntraffic = %mlops monitor digits --plot traffic\n"
        "display(traffic)\nserver.stop()\ndrift",
        # the same verb from Python, as the CLI and the panel call it
        "import jupyter_mlops\nfound = jupyter_mlops.monitor('digits')\n"
        "print(found['version'], found['window_rows'], found['requests'])\n"
        "print([d['name'] for d in jupyter_mlops.deployments()])",
        # a verb with no Python answer prints what it did, as on the command line
        "%mlops undeploy digits\n%mlops schedule list",
    ])
    assert "deployed digits at http://127.0.0.1:" in outputs(nb.cells[2])
    assert "digits v1: 300 rows" in outputs(nb.cells[3]) and "drifted features" in outputs(nb.cells[3])
    assert any("text/html" in o.get("data", {}) for o in nb.cells[3].outputs)  # the table with PSI bars
    assert "rule: a feature has drifted when" in outputs(nb.cells[3])
    traffic, drifted, alone = charts(nb.cells[3])  # the monitor's two charts, then --plot traffic's
    assert traffic["title"]["text"] == "digits: traffic" and alone["title"]["text"] == "digits: traffic"
    assert sum(s["requests"] for s in traffic["data"]["values"]) == 10
    assert drifted["title"]["subtitle"][0].startswith("12 of 64 features")
    assert "1 300 10" in outputs(nb.cells[4]) and "['digits']" in outputs(nb.cells[4])
    assert "removed the deployment digits" in outputs(nb.cells[5]) and "no schedules" in outputs(nb.cells[5])


def test_continuous_training_magics(tmp_path):
    """Issue 19 from a notebook: a schedule on data change, a webhook, a baseline, as %mlops verbs."""
    write_notebook(tmp_path / "target.ipynb", SWEPT)
    nb = execute(tmp_path, [
        "%load_ext jupyter_mlops",
        "r = %mlops run target.ipynb -p C 2\nassert r['status'] == 'succeeded', r",
        "%mlops schedule add target.ipynb --name retrain --on-data-change --every 5m\n%mlops schedule list",
        "%mlops notify add --webhook https://hooks.example.com/services/T0/B0/secret --events run.failed\n"
        "%mlops notify list",
        "%mlops baseline target.ipynb",
    ])
    assert "on data change (checked every 300 s)" in outputs(nb.cells[2])
    assert "notification 1: webhook https://hooks.example.com/... on run.failed" in outputs(nb.cells[3])
    assert "secret" not in outputs(nb.cells[3])
    assert "data checks compare with run" in outputs(nb.cells[4])
