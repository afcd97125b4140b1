"""The Jupyter server extension's REST API, against a real `jupyter lab` process over real HTTP."""
from __future__ import annotations

import json
import os
import signal
import shutil
import time

import pytest
import requests

from conftest import EXAMPLES, JupyterServer, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab") / "root"
    (root / "project").mkdir(parents=True)
    shutil.copy(EXAMPLES / "digits.ipynb", root / "project" / "digits.ipynb")
    (root / "notes.txt").write_text("not a notebook")
    running = JupyterServer(root).wait()
    yield running
    running.stop()


def wait_job(server, job_id: str, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = server.api("GET", f"jobs/{job_id}").json()
        if job["status"] != "running":
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still running")


@pytest.fixture(scope="module")
def finished_run(server):
    reply = server.api("POST", "runs", json={"path": "project/digits.ipynb", "parameters": {"C": 3}})
    assert reply.status_code == 202, reply.text
    job = wait_job(server, reply.json()["job"])
    assert job["status"] == "done" and job["result"]["status"] == "succeeded", job
    return reply.json()["run_id"]


# -- auth, XSRF, paths --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "runs"), ("GET", "models"), ("POST", "validate"),
                                         ("POST", "runs"), ("GET", "schedules"), ("POST", "deployments"),
                                         ("GET", "charts/runs")])
def test_every_endpoint_needs_jupyters_auth(server, method, path):
    reply = requests.request(method, f"{server.url}/mlops/api/{path}", json={}, timeout=30)
    assert reply.status_code == 403


def test_cookie_sessions_need_the_xsrf_token(server):
    browser = requests.Session()
    browser.get(f"{server.url}/lab?token={server.token}", timeout=30).raise_for_status()  # logs in: cookies
    assert browser.get(f"{server.url}/mlops/api/runs", timeout=30).status_code == 200
    body = {"path": "project/digits.ipynb"}
    assert browser.post(f"{server.url}/mlops/api/validate", json=body, timeout=30).status_code == 403
    xsrf = browser.cookies["_xsrf"]
    reply = browser.post(f"{server.url}/mlops/api/validate", json=body, headers={"X-XSRFToken": xsrf}, timeout=30)
    assert reply.status_code == 200 and reply.json()["ok"]


@pytest.mark.parametrize("path,status", [("../outside.ipynb", 403), ("project/../../../etc/x.ipynb", 403),
                                         ("/project/missing.ipynb", 404), ("notes.txt", 400), ("", 400)])
def test_paths_stay_inside_the_root_dir(server, path, status):
    reply = server.api("POST", "validate", json={"path": path})
    assert reply.status_code == status, reply.text
    assert reply.json()["message"]


def test_a_body_that_is_not_json_is_a_400_naming_it(server):
    reply = server.api("POST", "runs", data=b"{not json")
    assert reply.status_code == 400 and "not JSON" in reply.json()["message"]


@pytest.mark.parametrize("endpoint, body, words", [
    # issue 14, items 9 and 10: each of these was a 500, or did something before answering 400
    ("validate", {"path": "project/\x00.ipynb"}, "NUL byte"),
    ("validate", {"path": "a/" * 5000 + "x.ipynb"}, "at most 1024"),
    ("validate", {"path": "x" * 300 + ".ipynb"}, "too long"),
    ("validate", {"path": "project/digits.ipynb", "notebook": {"cells": "x"}}, "not a notebook (nbformat 4)"),
    ("models", {"run": "best", "name": "m" * 256, "metric": "accuracy"}, "at most 63"),
    ("schedules", {"path": "project/digits.ipynb", "name": "s" * 300, "cron": "0 3 * * *"}, "at most 63"),
    ("schedules", {"path": "project/digits.ipynb", "name": "../x", "cron": "0 3 * * *"}, "not usable"),
    ("deployments", {"name": "--help"}, "not usable"),
    ("deployments", {"name": "digits", "sticky_header": "--x y"}, "header name"),
    ("runs", {"path": "project/digits.ipynb", "backend": "argo"}, "no engine `argo`; the engines here are local"),
    ("runs", {"path": "project/digits.ipynb", "backend": "kfp"}, "--backend kfp needs --host"),
    ("runs", {"path": "project/digits.ipynb", "backend": "kubernetes"}, "needs --image"),
    ("runs", {"path": "project/digits.ipynb", "settings": {"image": "x:1"}}, "takes no setting 'image'"),
    ("runs", {"path": "project/digits.ipynb", "backend": ["local"]}, "`backend` must be an engine's name"),
    ("sweeps", {"path": "project/digits.ipynb", "space": {"C": "1,10"}, "backend": "kfp"},
     "--backend kfp needs --host"),
])
def test_hostile_names_paths_and_bodies_are_400s_naming_the_field(server, endpoint, body, words):
    reply = server.api("POST", endpoint, json=body)
    assert reply.status_code == 400 and words in reply.json()["message"], reply.text


def test_the_engines_the_panel_offers_come_from_the_registry(server):
    engines = {e["name"]: e for e in server.api("GET", "engines").json()["engines"]}
    assert list(engines) == ["local", "kubernetes", "kfp"]
    assert "--image" in [o["flag"] for o in engines["kubernetes"]["options"]] and engines["local"]["options"] == []
    assert engines["kfp"]["verbs"] == ["run", "sweep"] and "--host" in [o["flag"] for o in engines["kfp"]["options"]]


def test_deeply_nested_json_is_a_400(server):
    reply = server.api("POST", "validate", data=b'{"path": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["message"]


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/mlops-escaped-deployment"])
def test_a_deployment_name_never_makes_a_folder_outside_the_workspace(server, name):
    reply = server.api("POST", "deployments", json={"name": name})
    assert reply.status_code == 400 and "not usable" in reply.json()["message"]
    workspace = server.root / ".mlops"
    assert not (workspace / "logs" / name).resolve().exists()


# -- notebooks and runs -------------------------------------------------------------------------------------------
def test_validate_the_saved_notebook_and_unsaved_content(server):
    saved = server.api("POST", "validate", json={"path": "project/digits.ipynb"}).json()
    assert saved["ok"] and [s["name"] for s in saved["pipeline"]["steps"]] == ["data", "train", "evaluate", "serve"]
    content = json.loads((server.root / "project" / "digits.ipynb").read_text())
    code = [c for c in content["cells"] if c["cell_type"] == "code"]
    code[-1]["metadata"]["tags"] = ["trian"]  # the user's typo, not saved yet
    unsaved = server.api("POST", "validate", json={"path": "project/digits.ipynb", "notebook": content}).json()
    assert not unsaved["ok"]
    problem = unsaved["problems"][0]
    assert problem["cell"] == content["cells"].index(code[-1]) + 1 and "train" in problem["fix"]


def test_validate_offers_the_metrics_the_code_and_earlier_runs_logged(server, finished_run):
    """What the sweep form's "Optimise" list shows: the digits example logs accuracy and f1_macro."""
    reply = server.api("POST", "validate", json={"path": "project/digits.ipynb"}).json()
    assert reply["pipeline"]["metrics"] == ["accuracy", "f1_macro"]
    assert reply["seen_metrics"] == ["accuracy", "f1_macro"]  # finished_run's
    other = server.root / "project" / "other.ipynb"
    other.write_text((server.root / "project" / "digits.ipynb").read_text())
    assert server.api("POST", "validate", json={"path": "project/other.ipynb"}).json()["seen_metrics"] == []


def test_a_run_appears_in_the_table_with_its_step_notebooks(server, finished_run):
    table = server.api("GET", "runs").json()["runs"]
    run = next(r for r in table if r["id"] == finished_run)
    assert run["path"] == "project/digits.ipynb" and run["params"]["C"] == 3.0
    assert run["metrics"]["accuracy"] > 0.9 and run["steps_done"] == run["steps_total"] == 4
    detail = server.api("GET", f"runs/{finished_run}").json()
    assert [s["has_notebook"] for s in detail["steps"]] == [True] * 4
    html = server.api("GET", f"runs/{finished_run}/steps/train/notebook")
    assert html.status_code == 200 and "text/html" in html.headers["Content-Type"] and "SVC" in html.text
    assert "sandbox" in html.headers["Content-Security-Policy"]  # outputs' scripts never run on our origin
    raw = server.api("GET", f"runs/{finished_run}/steps/train/notebook", params={"format": "ipynb"}).json()
    assert raw["nbformat"] == 4
    assert server.api("GET", f"runs/{finished_run}/steps/nope/notebook").status_code == 404
    assert server.api("GET", "runs/20990101-000000-000000").status_code == 400


def test_the_run_list_is_paged_filtered_and_sorted_by_the_server(server, finished_run):
    """The panel asks for one page (it fetched every run, up to 5,000, on every poll)."""
    page = server.api("GET", "runs", params={"filter": "C=3 accuracy>0.5", "sort": "metrics.accuracy",
                                             "limit": 1}).json()
    assert page["total"] >= 1 and len(page["runs"]) == 1 and page["runs"][0]["params"]["C"] == 3.0
    assert {"running", "offset", "limit", "jobs"} <= set(page)
    assert server.api("GET", "runs", params={"filter": "C=3 status=cancelled"}).json()["total"] == 0
    bad = server.api("GET", "runs", params={"filter": "epochs>1"})
    assert bad.status_code == 400 and '"epochs"' in bad.json()["message"]
    for query, named in (({"sort": "nope"}, "cannot sort"), ({"limit": "5000"}, "1 to 1000"),
                         ({"order": "up"}, "`order`"), ({"offset": "-1"}, "`offset`")):
        reply = server.api("GET", "runs", params=query)
        assert reply.status_code == 400 and named in reply.json()["message"], (query, reply.text)


def test_a_failed_run_is_resumed_from_the_panels_api(server, finished_run):
    """Issue 18, item 5: resume from the panel. A step fails on a missing file; once it exists, resuming reruns the
    failed step only and the run succeeds."""
    from conftest import write_notebook

    flag = server.root / "project" / "flag.txt"
    write_notebook(server.root / "project" / "flaky.ipynb", [
        ("rows = list(range(10))", "data"),
        (f"total = sum(rows) * int(open({str(flag)!r}).read())", "train"),
        ("from jupyter_mlops import log_metrics\nlog_metrics(total=total)", "evaluate")])
    started = server.api("POST", "runs", json={"path": "project/flaky.ipynb"})
    failed = wait_job(server, started.json()["job"])["result"]
    assert failed["status"] == "failed" and "flag.txt" in failed["error"], failed
    flag.write_text("2")
    again = server.api("POST", f"runs/{failed['id']}/resume")
    assert again.status_code == 202, again.text
    resumed = wait_job(server, again.json()["job"])
    assert resumed["kind"] == "run" and resumed["result"]["status"] == "succeeded", resumed
    assert resumed["result"]["id"] == failed["id"] and resumed["result"]["metrics"] == {"total": 90.0}
    for run_id, words in ((failed["id"], "nothing to resume"), (finished_run, "nothing to resume"),
                          ("20990101-000000-000000", "no run")):
        refused = server.api("POST", f"runs/{run_id}/resume")
        assert refused.status_code == 400 and words in refused.json()["message"], refused.text
    assert server.api("POST", "runs/..%2Fx/resume").status_code in (400, 404)


def test_bad_parameters_are_refused_and_nothing_is_stored(server, finished_run):
    before = len(server.api("GET", "runs").json()["runs"])
    reply = server.api("POST", "runs", json={"path": "project/digits.ipynb", "parameters": {"C": "lots"}})
    assert reply.status_code == 400 and "C" in reply.json()["message"]
    reply = server.api("POST", "runs", json={"path": "project/digits.ipynb", "parameters": {"Cee": 1}})
    assert reply.status_code == 400 and "Cee" in reply.json()["message"]
    assert len(server.api("GET", "runs").json()["runs"]) == before


def test_a_notebook_with_bad_tags_is_refused_with_its_problems(server):
    content = json.loads((server.root / "project" / "digits.ipynb").read_text())
    next(c for c in content["cells"] if c["cell_type"] == "code")["metadata"]["tags"] = ["step:has space"]
    (server.root / "project" / "broken.ipynb").write_text(json.dumps(content))
    reply = server.api("POST", "runs", json={"path": "project/broken.ipynb"})
    assert reply.status_code == 400 and reply.json()["problems"][0]["cell"] is not None


def test_sweep_from_the_api(server):
    reply = server.api("POST", "sweeps", json={"path": "project/digits.ipynb", "space": {"C": "1,10"},
                                               "parallel": 2, "metric": "accuracy"})
    assert reply.status_code == 202 and reply.json()["trials"] == 2, reply.text
    job = wait_job(server, reply.json()["job"])
    assert job["status"] == "done" and job["result"]["status"] == "succeeded", job
    sweep_id = job["result"]["id"]
    trials = server.api("GET", "runs", params={"sweep": sweep_id}).json()["runs"]
    assert sorted(r["params"]["C"] for r in trials) == [1.0, 10.0]
    bad = server.api("POST", "sweeps", json={"path": "project/digits.ipynb", "space": {"C": "1,10"},
                                             "metric": "acuracy"})
    assert bad.status_code == 400 and "acuracy" in bad.json()["message"]
    chart = server.api("GET", "charts/sweep", params={"id": sweep_id}).json()  # the panel draws it (issue 18)
    assert chart["$schema"].endswith("vega-lite/v5.json") and len(chart["data"]["values"]) == 2
    assert sum(v["best"] for v in chart["data"]["values"]) == 1


def test_charts_and_the_runs_of_one_notebook(server, finished_run):
    other = server.root / "project" / "other.ipynb"
    shutil.copy(server.root / "project" / "digits.ipynb", other)
    reply = server.api("POST", "runs", json={"path": "project/other.ipynb", "parameters": {"C": 0.0001}})
    assert wait_job(server, reply.json()["job"])["status"] == "done"  # a poor model: never the workspace's best
    mine = server.api("GET", "runs", params={"notebook": "project/other.ipynb"}).json()
    assert mine["total"] == 1 and mine["runs"][0]["path"] == "project/other.ipynb"
    chart = server.api("GET", "charts/runs", params={"notebook": "project/other.ipynb"}).json()
    assert chart["title"]["text"] == "accuracy across runs of other.ipynb" and len(chart["data"]["values"]) == 1
    both = server.api("GET", "charts/compare", params={"runs": f"{finished_run},{mine['runs'][0]['id']}"}).json()
    assert {v["run"] for v in both["data"]["values"]} == {finished_run, mine["runs"][0]["id"]}
    for path, query, words in (("charts/runs", {"notebook": "../x.ipynb"}, "outside"),
                               ("charts/sweep", {}, "`id` is required"),
                               ("charts/sweep", {"id": "nope"}, "no sweep `nope`"),
                               ("charts/compare", {"runs": finished_run}, "at least two runs"),
                               ("charts/compare", {"runs": "a/../b,c"}, "run id"),
                               ("charts/compare", {"runs": ",".join([finished_run] * 21)}, "at most 20 runs"),
                               ("charts/monitor", {"name": "../etc"}, "deployment"),
                               ("charts/monitor", {"name": "nothing"}, "nothing"),
                               ("charts/traffic", {"name": "w", "window": "0"}, "`window`"),
                               ("runs", {"notebook": "../x.ipynb"}, "outside")):
        reply = server.api("GET", path, params=query)
        assert 400 <= reply.status_code < 500 and words in reply.json()["message"], (path, query, reply.text)
    assert server.api("GET", "charts/pie").status_code == 404
    # `register best` from the panel ranks the runs of the notebook in front, not the whole workspace's (issue 18)
    mine_best = server.api("POST", "models", json={"run": "best", "metric": "accuracy", "name": "other",
                                                   "path": "project/other.ipynb"})
    assert mine_best.status_code == 201 and mine_best.json()["run_id"] == mine["runs"][0]["id"], mine_best.text


# -- registry and deployments -------------------------------------------------------------------------------------
def test_register_behind_a_gate_promote_and_rollback(server, finished_run):
    failed = server.api("POST", "models", json={"run": finished_run, "name": "digits",
                                                "require": ["accuracy>=1.01"]})
    assert failed.status_code == 400 and "accuracy" in failed.json()["message"]
    assert "digits" not in [m["name"] for m in server.api("GET", "models").json()["models"]]
    for _ in range(2):
        done = server.api("POST", "models", json={"run": finished_run, "name": "digits",
                                                  "require": ["accuracy>=0.9"]})
        assert done.status_code == 201, done.text
    assert server.api("POST", "models/digits/promote", json={"version": 1}).json()["version"] == 1
    assert server.api("POST", "models/digits/promote", json={"version": 2}).json()["previous"] == 1
    assert server.api("POST", "models/digits/rollback", json={}).json()["version"] == 1
    model = next(m for m in server.api("GET", "models").json()["models"] if m["name"] == "digits")
    assert model["aliases"] == {"production": 1} and len(model["versions"]) == 2
    assert server.api("POST", "models/digits/promote", json={"version": 9}).status_code == 400


@pytest.mark.parametrize("progressive, words", [
    ({"steps": "50"}, "--steps `50`: each weight between 0 and 100, the last one 100"),
    ({"steps": "10,100", "interval": "soon"}, "--interval `soon` is not a duration"),
    ({"min_requests": 0}, "`min_requests` must be at least 1"),
    ("yes", "`progressive` must be an object")])
def test_a_bad_progressive_rollout_is_refused_before_a_process_starts(server, progressive, words):
    reply = server.api("POST", "deployments", json={"name": "digits", "canary": 2, "progressive": progressive})
    assert reply.status_code == 400 and words in reply.json()["message"], reply.text
    assert not (server.root / ".mlops" / "logs" / "digits" / "server.log").exists()


def test_deploy_starts_a_server_of_its_own_and_lists_it(server, finished_run):
    from jupyter_mlops.owners import owner_is_gone
    from jupyter_mlops.workspace import Workspace

    if not any(m["name"] == "digits" for m in server.api("GET", "models").json()["models"]):
        test_register_behind_a_gate_promote_and_rollback(server, finished_run)
    port = free_port()
    reply = server.api("POST", "deployments", json={"name": "digits", "port": port, "canary": 2, "weight": 50})
    assert reply.status_code == 200 and reply.json()["status"] == "started", reply.text
    try:
        from sklearn.datasets import load_digits

        rows = load_digits().data[:4].tolist()
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200 and answer.headers["x-mlops-variant"] in ("primary", "canary")
        listed = server.api("GET", "deployments").json()["deployments"]
        assert listed[0]["up"] and listed[0]["spec"]["canary"] == 2 and listed[0]["requests"] >= 0
        bad = server.api("POST", "deployments", json={"name": "digits", "port": port, "canary": 7})
        assert bad.status_code == 400 and "7" in bad.json()["message"]
        # the Stop button: the server process ends (cleanly: the request log holds the request), the row goes
        owner = Workspace(server.root / ".mlops").store.get_deployment("digits")["owner"]
        stopped = server.api("DELETE", "deployments/digits")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
        assert server.api("GET", "deployments").json()["deployments"] == []
        assert owner_is_gone(owner)  # ended (a zombie until the Jupyter server reaps it counts as ended)
        logged = (server.root / ".mlops" / "logs" / "digits" / "requests.jsonl").read_text().splitlines()
        assert len(logged) == 1
        again = server.api("DELETE", "deployments/digits")
        assert again.status_code == 400 and "no deployment `digits`" in again.json()["message"]
    finally:
        row = Workspace(server.root / ".mlops").store.get_deployment("digits")
        if row:  # the test failed before the Stop button: do not leave the server running
            os.kill(int(row["owner"].rsplit(":", 2)[1]), signal.SIGTERM)


def test_deployments_the_server_started_stop_with_it_unless_kept(tmp_path):
    """Issue 18, item 2: a deployment started from the panel kept serving after `jupyter lab` exited (re-parented
    to PID 1). Now it stops with the Jupyter server that started it, unless the user chose to keep it; the table
    then shows it down."""
    import subprocess
    import sys

    import jupyter_mlops
    from jupyter_mlops.owners import owner_is_gone
    from jupyter_mlops.workspace import Workspace

    from conftest import register_digits

    root = tmp_path / "root"
    root.mkdir()
    [version] = register_digits(root)
    jupyter_mlops.register(version["run_id"], "kept", workspace=root / ".mlops")
    store = Workspace(root / ".mlops").store
    running = JupyterServer(root).wait()
    ports = {"digits": free_port(), "kept": free_port()}
    try:
        for name, keep in (("digits", False), ("kept", True)):
            reply = running.api("POST", "deployments", json={"name": name, "port": ports[name], "keep": keep})
            assert reply.status_code == 200 and reply.json()["status"] == "started", reply.text
        assert all(d["up"] for d in running.api("GET", "deployments").json()["deployments"])
    finally:
        running.stop()
    owners = {name: store.get_deployment(name)["owner"] for name in ports}
    try:
        deadline = time.time() + 30
        while not owner_is_gone(owners["digits"]) and time.time() < deadline:
            time.sleep(0.2)
        assert owner_is_gone(owners["digits"]), "the deployment outlived the Jupyter server that started it"
        assert not owner_is_gone(owners["kept"])
        assert requests.get(f"http://127.0.0.1:{ports['kept']}/v2/health/live", timeout=5).status_code == 200
        listed = {d["name"]: d["up"] for d in jupyter_mlops.deployments(workspace=root / ".mlops")}
        assert listed == {"digits": False, "kept": True}
    finally:
        done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "undeploy", "kept", "--workspace",
                               str(root / ".mlops")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert owner_is_gone(owners["kept"])


# -- schedules ----------------------------------------------------------------------------------------------------
def test_schedules_through_the_api(server):
    bad = server.api("POST", "schedules", json={"path": "project/digits.ipynb", "name": "nightly",
                                                "cron": "0 3 * *"})
    assert bad.status_code == 400 and "cron" in bad.json()["message"]
    bad_zone = server.api("POST", "schedules", json={"path": "project/digits.ipynb", "name": "nightly",
                                                     "cron": "0 3 * * *", "timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 400 and "Mars/Olympus" in bad_zone.json()["message"]
    assert server.api("GET", "schedules").json()["schedules"] == []
    added = server.api("POST", "schedules", json={"path": "project/digits.ipynb", "name": "nightly",
                                                  "cron": "0 3 * * *", "parameters": {"C": 2}})
    assert added.status_code == 201 and added.json()["next_tick"].endswith("03:00:00+00:00")
    listed = server.api("GET", "schedules").json()
    assert listed["schedules"][0]["path"] == "project/digits.ipynb" and listed["scheduler"] is False
    assert added.json()["warning"].startswith("no scheduler is running") and listed["schedulers"] == []
    assert "jupyter-mlops scheduler" in listed["warning"]
    assert server.api("POST", "schedules/nightly", json={"action": "pause"}).json()["status"] == "paused"
    assert server.api("GET", "schedules").json()["schedules"][0]["next_tick"] is None
    job = server.api("POST", "schedules/nightly", json={"action": "run"}).json()["job"]
    assert wait_job(server, job)["result"]["status"] == "succeeded"
    ticks = server.api("GET", "schedules/nightly").json()["ticks"]
    assert len(ticks) == 1 and ticks[0]["run_id"]


def test_cron_preview_is_the_next_ticks_in_the_schedules_timezone(server):
    """Issue 14, item 8: `* * * * *` previewed a date a year ahead after 52 s; `* * * * * *` burnt a core."""
    import datetime

    shown = server.api("POST", "cron", json={"cron": "* * * * *", "timezone": "Asia/Kolkata"}).json()["next"]
    first = datetime.datetime.fromisoformat(shown[0])
    assert len(shown) == 5 and shown[0].endswith("+05:30") and first.second == 0
    assert 0 < (first - datetime.datetime.now(datetime.timezone.utc)).total_seconds() <= 60
    seconds = server.api("POST", "cron", json={"cron": "* * * * * *"})
    assert seconds.status_code == 400 and "6 fields" in seconds.json()["message"]
    assert server.api("POST", "cron", json={"cron": "0 0 31 2 *"}).json()["message"].endswith(
        "no date matches its day and month fields")
    assert server.api("DELETE", "schedules/nightly").status_code == 204
    assert server.api("DELETE", "schedules/nightly").status_code == 400


def test_the_scheduler_loop_runs_inside_the_server_when_enabled(tmp_path):
    from jupyter_mlops import schedule
    from jupyter_mlops.workspace import Workspace

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(EXAMPLES / "digits.ipynb", root / "digits.ipynb")
    ws = Workspace(root / ".mlops")
    # created two minutes ago: the tick of the last minute is due as soon as the loop makes its first pass
    schedule.add(ws, str(root / "digits.ipynb"), "every-minute", "* * * * *", clock=lambda: time.time() - 120)
    lab = JupyterServer(root, "--JupyterMlops.scheduler=True", "--JupyterMlops.scheduler_interval=0.5").wait()
    try:
        listed = lab.api("GET", "schedules").json()
        assert listed["scheduler"] is True and listed["warning"] is None and len(listed["schedulers"]) == 1
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = [r for r in lab.api("GET", "runs").json()["runs"] if r["schedule"] == "every-minute"]
            if runs and runs[0]["status"] == "succeeded":
                break
            time.sleep(0.5)
        assert runs and runs[0]["status"] == "succeeded" and runs[0]["scheduled_for"].endswith(":00+00:00")
    finally:
        lab.stop()
