"""The JupyterLab panel end to end in real Chromium: tag cells through the panel, run, see the run in the table,
open its output. Needs Debian's Chromium (`apt-get install chromium`, done by .ci/run) and the built labextension
(`pip install -e .` builds it)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, JupyterServer

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"  # git-ignored; look at them after a run
STEP_CELLS = {4: "data", 8: "train", 10: "evaluate", 12: "serve"}  # cell index -> the tag the test clicks

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Chromium is not installed (.ci/run installs it; in CI this never skips)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("panel") / "root"
    (root / "project").mkdir(parents=True)
    nb = json.loads((EXAMPLES / "digits.ipynb").read_text())
    for index in STEP_CELLS:  # the data scientist's notebook before tagging: no step tags yet
        nb["cells"][index]["metadata"].pop("tags", None)
    (root / "project" / "digits.ipynb").write_text(json.dumps(nb))
    built = Path(__file__).resolve().parent.parent / "jupyter_mlops" / "labextension"
    assert (built / "package.json").exists(), \
        "build the labextension first: pip install -e . (or jlpm build in labextension/)"
    # the checkout's build comes first on JupyterLab's extension path, ahead of an installed (maybe older) copy
    extra = root.parent / "jupyter-path"
    (extra / "labextensions").mkdir(parents=True)
    (extra / "labextensions" / "jupyter-mlops").symlink_to(built)
    settings = root.parent / "settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no "get notified about news?" toast over the panel
    running = JupyterServer(root, env={"JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_PATH": str(extra),
                                       "JUPYTERLAB_WORKSPACES_DIR": str(root.parent / "workspaces")}).wait()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield chromium
        chromium.close()


def open_panel(lab, browser, notebook: str, last_cell: int = 12):
    """The notebook open in JupyterLab with the MLOps panel shown: (page, panel, the page's uncaught errors, the
    errors it logged: React logs a render's crash there, and the panel goes blank)."""
    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    errors: list[str] = []
    logged: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: logged.append(m.text[:300]) if m.type == "error" else None)
    page.goto(f"{lab.url}/lab/tree/project/{notebook}?reset&token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").nth(last_cell).wait_for(timeout=60_000)
    page.locator('.jp-SideBar li[data-id="jupyter-mlops-panel"]').click()
    panel = page.locator("#jupyter-mlops-panel")
    panel.get_by_text("Tag the active cell").wait_for()
    return page, panel, errors, logged


def test_tag_run_and_open_the_output_from_the_panel(lab, browser):
    page, panel, errors, _ = open_panel(lab, browser, "digits.ipynb")

    # tag the four step cells through the panel's buttons; badges appear on the cells
    cells = page.locator(".jp-Notebook .jp-Cell")
    for index, role in STEP_CELLS.items():
        cells.nth(index).locator(".jp-InputPrompt").click()
        panel.locator(f'[data-testid="mlops-tag-{role}"]').click()
        page.wait_for_function(
            "([i, role]) => document.querySelectorAll('.jp-Notebook .jp-Cell')[i].dataset.mlopsRole === role",
            arg=[index, role])
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-steps\"] li').length === 4")
    names = panel.locator('[data-testid="mlops-steps"] li b').all_inner_texts()
    assert names == ["data", "train", "evaluate", "serve"]

    # the sweep form offers the metrics the notebook logs with log_metrics (it offered none)
    panel.locator('[data-testid="mlops-action-sweep"]').click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"mlops-sweep-metric\"] option')]"
                           ".some(o => o.textContent === 'accuracy')")
    assert panel.locator('[data-testid="mlops-sweep-metric"] option').all_inner_texts() == [
        "(no metric)", "accuracy", "f1_macro"]
    panel.locator('[data-testid="mlops-action-run"]').click()

    # with no scheduler running, the schedules tab says schedules will not fire, and how to start one
    panel.locator('[data-testid="mlops-tab-schedules"]').click()
    panel.locator('[data-testid="mlops-scheduler-state"]').get_by_text("no scheduler is running").wait_for()
    page.screenshot(path=str(SHOTS / "panel-scheduler-warning.png"))
    panel.locator('[data-testid="mlops-tab-runs"]').click()

    # clicking a tag button twice takes the tag off again, and the pipeline follows
    cells.nth(12).locator(".jp-InputPrompt").click()
    panel.locator('[data-testid="mlops-tag-serve"]').click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-steps\"] li').length === 3")
    panel.locator('[data-testid="mlops-tag-serve"]').click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-steps\"] li').length === 4")

    # the engines come from the server's registry: choosing kubernetes asks for its settings, and the server's
    # answer to a run without an image is shown in the panel
    panel.locator('[data-testid="mlops-run-backend"]').select_option("kubernetes")
    panel.locator('[data-testid="mlops-run-namespace"]').wait_for()
    panel.locator('[data-testid="mlops-run"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("needs --image").wait_for(timeout=30_000)
    # Kubeflow Pipelines is offered too, with its own settings (--host, --experiment)
    panel.locator('[data-testid="mlops-run-backend"]').select_option("kfp")
    panel.locator('[data-testid="mlops-run-experiment"]').wait_for()
    panel.locator('[data-testid="mlops-run"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("--backend kfp needs --host").wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "panel-run-kfp.png"))
    panel.locator('[data-testid="mlops-run-backend"]').select_option("local")

    # run with a parameter: the notebook is saved first, the run shows up in the table and succeeds
    panel.locator('[data-testid="mlops-run-params"]').fill("C = 7")
    panel.locator('[data-testid="mlops-run"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("started").wait_for(timeout=60_000)
    row = panel.locator('[data-testid="mlops-runs"] tbody tr.mlops-status-succeeded').first
    row.wait_for(timeout=180_000)
    assert "7" in row.inner_text()
    # the notice follows the run to its end (it kept saying "started")
    panel.locator('[data-testid="mlops-notice"]').get_by_text("succeeded accuracy=").wait_for(timeout=30_000)
    saved = json.loads((lab.root / "project" / "digits.ipynb").read_text())
    assert [saved["cells"][i]["metadata"].get("tags") for i in STEP_CELLS] == [[r] for r in STEP_CELLS.values()]

    # at the sidebar's default width the run's metric shows beside its status (it was past the right edge), and
    # the run's details open into view below the table
    assert page.evaluate("""() => {
        const box = document.querySelector('#jupyter-mlops-panel').getBoundingClientRect();
        const th = [...document.querySelectorAll('[data-testid="mlops-runs"] th')]
            .find(t => t.textContent.startsWith('accuracy'));
        const r = th.getBoundingClientRect();
        return r.left >= box.left && r.right <= box.right;
    }""")

    # open the train step's executed notebook in the main area
    row.click(position={"x": 10, "y": 5})  # where a user clicks: on its id (the row's centre is scrolled off)
    panel.locator('[data-testid="mlops-open-train"]').wait_for()
    page.wait_for_timeout(300)
    assert page.evaluate("""() => {
        const box = document.querySelector('#jupyter-mlops-panel').getBoundingClientRect();
        const r = document.querySelector('[data-testid="mlops-run-detail"]').getBoundingClientRect();
        return r.top >= box.top && r.top < box.bottom;
    }""")
    page.screenshot(path=str(SHOTS / "panel-run-detail.png"))
    panel.locator('[data-testid="mlops-open-train"]').click()
    frame = page.frame_locator(".jp-MainAreaWidget iframe").last
    frame.get_by_text("model.fit").first.wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "panel-output.png"))
    page.locator(".lm-TabBar-tab", has_text="digits.ipynb").click()
    cells.nth(8).locator(".jp-InputPrompt").click()
    # as a user would: widen the sidebar to see the table's parameter and metric columns, scrolled to the start
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    page.mouse.move(handle["x"] + 1, 400)
    page.mouse.down()
    page.mouse.move(560, 400, steps=5)
    page.mouse.up()
    page.evaluate("document.querySelector('.mlops-table-scroll').scrollLeft = 0")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / "panel-light.png"))

    # readable in the dark theme too
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "panel-dark.png"))
    assert not [e for e in errors if "mlops" in e.lower()], errors


def test_filter_and_sort_the_runs_table(lab, browser):
    import jupyter_mlops

    for c in ("1", "10"):  # two more runs, made outside the panel: the table shows them too
        jupyter_mlops.run(lab.root / "project" / "digits.ipynb", {"C": c}, workspace=lab.root / ".mlops")
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.locator('.jp-SideBar li[data-id="jupyter-mlops-panel"]').click()
    table = page.locator('#jupyter-mlops-panel [data-testid="mlops-runs"]')
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-runs\"] tbody tr').length >= 3",
                           timeout=60_000)
    page.locator('[data-testid="mlops-runs-filter"]').fill("C>=7")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-runs\"] tbody tr').length === 2")
    table.get_by_role("columnheader", name="C", exact=True).click()  # sort by C, descending
    page.wait_for_function("() => document.querySelector('[data-testid=\"mlops-runs\"] th[aria-sort=\"descending\"]')")
    first = table.locator("tbody tr").first.inner_text()
    assert "10" in first.split("\t")
    pager = page.locator('[data-testid="mlops-pager"]')
    assert pager.inner_text().startswith('2 runs match "C>=7"')
    page.locator('[data-testid="mlops-runs-filter"]').fill("epochs>1")  # the server's word, under the filter
    page.wait_for_selector('[data-testid="mlops-filter-error"]:has-text("epochs")')


def test_the_runs_table_shows_a_page_of_a_large_store(lab, browser):
    """The server filters, sorts and pages (the panel fetched every run, up to 5,000, on each poll)."""
    from jupyter_mlops.workspace import Workspace

    store = Workspace(lab.root / ".mlops").store
    for i in range(150):
        run_id = f"20250101-{i:06d}-abcdef"
        store.create_run(run_id, str(lab.root / "project" / "digits.ipynb"), "h", {"C": i}, "/tmp", [])
        store.record_metrics(run_id, "evaluate", {"score": i / 150})
        store.update_run(run_id, started=1_700_000_000.0 + i)
        store.finish_run(run_id, "succeeded")
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.locator('.jp-SideBar li[data-id="jupyter-mlops-panel"]').click()
    pager = page.locator('[data-testid="mlops-pager"]')
    pager.locator("text=page 1 / 2").wait_for(timeout=60_000)
    assert page.locator('[data-testid="mlops-runs"] tbody tr').count() == 100
    pager.get_by_role("button", name="›").click()
    pager.locator("text=page 2 / 2").wait_for()
    rows = page.locator('[data-testid="mlops-runs"] tbody tr')
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-runs\"] tbody tr').length < 100")
    assert rows.count() == int(pager.inner_text().split()[0]) - 100
    page.locator('[data-testid="mlops-runs-filter"]').fill("score>0.975")  # runs 147, 148, 149
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-runs\"] tbody tr').length === 3")
    assert pager.inner_text().startswith('3 runs match "score>0.975"')
    page.locator(".mlops-tables").screenshot(path=str(SHOTS / "panel-runs-page.png"))


@pytest.fixture(autouse=True, scope="module")
def _chromium_present():
    if os.environ.get("CI") and not shutil.which("chromium"):
        pytest.fail("CI must install Debian's chromium: apt-get install -y chromium")


def test_charts_deploy_and_stop_from_the_panel(lab, browser):
    """Issue 18: a sweep's chart drawn in the panel (a canvas, not just a spec), this notebook's runs charted, a
    deployment started from the panel with its traffic and drift charts, then stopped from the panel."""
    import requests
    from sklearn.datasets import load_digits

    from conftest import free_port

    shutil.copy(EXAMPLES / "digits.ipynb", lab.root / "project" / "charted.ipynb")  # tagged already
    page, panel, errors, logged = open_panel(lab, browser, "charted.ipynb")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-steps\"] li').length === 4")

    def drawn(chart: str) -> None:  # JupyterLab's Vega renderer draws on a canvas (or an SVG)
        panel.locator(f'[data-testid="mlops-chart-{chart}"] canvas, [data-testid="mlops-chart-{chart}"] svg') \
            .first.wait_for(timeout=60_000)
        size = panel.locator(f'[data-testid="mlops-chart-{chart}"] canvas, '
                             f'[data-testid="mlops-chart-{chart}"] .marks').first.bounding_box()
        assert size and size["width"] > 150 and size["height"] > 100, (chart, size)

    # a sweep from the form; its example comes from the notebook's own parameter (it was the digits example's)
    panel.locator('[data-testid="mlops-action-sweep"]').click()
    space = panel.locator('[data-testid="mlops-sweep-space"]')
    assert space.get_attribute("placeholder") == "C = 0.5, 5, 50"
    space.fill("C = 1, 10")
    panel.locator('[data-testid="mlops-sweep-metric"]').select_option("accuracy")
    panel.locator('[data-testid="mlops-sweep"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("ended").wait_for(timeout=300_000)
    drawn("sweep")
    page.screenshot(path=str(SHOTS / "panel-sweep-chart.png"))  # at the sidebar's default width

    # the runs of this notebook only, charted
    panel.locator('[data-testid="mlops-this-notebook"]').check()
    page.wait_for_function("() => document.querySelector('[data-testid=\"mlops-pager\"]').textContent"
                           ".startsWith('2 runs')")
    panel.locator('[data-testid="mlops-runs-chart-toggle"]').click()
    drawn("runs")
    # two runs side by side: open one, "compare with another run", open the other (opening a second run crashed
    # the panel: Chromium's scrollIntoView returns a promise, which React took for an effect's clean-up)
    trials = panel.locator('[data-testid="mlops-runs"] tbody tr')
    trials.nth(0).click(position={"x": 10, "y": 5})
    panel.locator('[data-testid="mlops-compare"]').click()
    trials.nth(1).click(position={"x": 10, "y": 5})
    drawn("compare")

    # register the sweep's best, deploy it from the panel, send it traffic, look at its charts, stop it
    registered = lab.api("POST", "models", json={"run": "best", "metric": "accuracy", "name": "charted",
                                                 "path": "project/charted.ipynb"})
    assert registered.status_code == 201, registered.text
    panel.locator('[data-testid="mlops-action-deploy"]').click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"mlops-deploy-model\"] option')]"
                           ".some(o => o.textContent === 'charted')")
    panel.locator('[data-testid="mlops-deploy-model"]').select_option("charted")
    port = free_port()
    panel.locator('[data-testid="mlops-deploy-port"]').fill(str(port))
    panel.locator('[data-testid="mlops-deploy"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("started at").wait_for(timeout=90_000)
    digits = load_digits()
    rows = digits.data[:200].tolist()
    with requests.Session() as session:  # with feedback: each answer's labels, sent back by its request id
        for i in range(0, 200, 20):
            answer = session.post(f"http://127.0.0.1:{port}/invocations", json={"instances": rows[i:i + 20]})
            assert answer.ok
            assert session.post(f"http://127.0.0.1:{port}/feedback", json={
                "request_id": answer.headers["x-request-id"], "label": digits.target[i:i + 20].tolist()}).ok
    panel.locator('[data-testid="mlops-tab-deployments"]').click()
    panel.locator('[data-testid="mlops-charts-charted"]').click()
    drawn("traffic")
    drawn("monitor")
    abtest = panel.locator('[data-testid="mlops-abtest"]')
    abtest.get_by_text("primary v1").wait_for(timeout=30_000)  # 10 outcomes of 20 rows each, judged
    assert "baseline" in abtest.inner_text()
    abtest.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "panel-abtest.png"))
    page.screenshot(path=str(SHOTS / "panel-deployment-charts.png"))
    # the charts follow the dark theme: drawn again with vega's dark colours (its background, not white)
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_function("""() => {  // the chart's own background: a dark pixel in its corner
        const canvas = document.querySelector('[data-testid="mlops-chart-traffic"] canvas');
        if (!canvas) { return false; }
        const [r, g, b] = canvas.getContext('2d').getImageData(2, 2, 1, 1).data;
        return r + g + b < 3 * 100;
    }""", timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "panel-charts-dark.png"))
    panel.locator('[data-testid="mlops-undeploy-charted"]').click()
    panel.get_by_text("no deployments yet").wait_for(timeout=60_000)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5)
    assert not [e for e in errors if "mlops" in e.lower() or "vega" in e.lower()], errors
    assert not [e for e in logged if "TypeError" in e], logged


def test_data_checks_and_a_data_change_schedule_in_the_panel(lab, browser):
    """Issue 19: a run's data-check findings and the data it read in its details; a schedule fired on data change
    added from the form and listed as such."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from retrain_on_data_change import write_orders

    import jupyter_mlops

    project = lab.root / "project"
    shutil.copy(EXAMPLES / "orders.ipynb", project / "orders.ipynb")
    write_orders(project / "orders.csv", ("DE", "FR", "NL"), seed=1)
    jupyter_mlops.run(project / "orders.ipynb", workspace=lab.root / ".mlops", check=True)
    write_orders(project / "orders.csv", ("DE", "FR", "NL", "PL"), seed=2)  # a new export: a new country
    failed = jupyter_mlops.run(project / "orders.ipynb", workspace=lab.root / ".mlops")
    assert failed["status"] == "failed"  # the notebook asks for strict checks

    page, panel, errors, logged = open_panel(lab, browser, "orders.ipynb", last_cell=8)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"mlops-steps\"] li').length === 3")
    panel.locator('[data-testid="mlops-this-notebook"]').check()
    row = panel.locator('[data-testid="mlops-runs"] tbody tr.mlops-status-failed').first
    row.wait_for(timeout=60_000)
    row.click(position={"x": 10, "y": 5})
    findings = panel.locator('[data-testid="mlops-data-findings"]')
    findings.get_by_text("`raw` column `country` has categories the baseline never had: 'PL'").wait_for()
    panel.locator('[data-testid="mlops-run-data"] summary').click()
    panel.locator('[data-testid="mlops-run-data"]').get_by_text("project/orders.csv").wait_for()
    findings.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "panel-data-checks.png"))

    panel.locator('[data-testid="mlops-action-schedule"]').click()
    form = panel.locator(".mlops-form")
    form.locator("input").first.fill("retrain")
    panel.locator('[data-testid="mlops-schedule-trigger"]').select_option("data-change")
    assert not panel.locator('[data-testid="mlops-cron-preview"]').count()  # no cron to preview
    form.get_by_role("button", name="Add schedule").click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("on data change (checked every 300 s)") \
        .wait_for(timeout=30_000)
    panel.locator('[data-testid="mlops-tab-schedules"]').click()
    panel.locator('[data-testid="mlops-schedules"]').get_by_text("on data change").wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "panel-data-change-schedule.png"))
    assert not errors and not [e for e in logged if "mlops" in e.lower() or "TypeError" in e], (errors, logged)


def test_a_progressive_rollout_from_the_panel(lab, browser):
    """Issue 20, part 3: a canary deployed from the panel's form as a progressive rollout, advanced by a scheduler
    on real traffic to production; the deployments table says where it is, and its decisions show with reasons."""
    import subprocess
    import sys
    import threading

    import requests
    from sklearn.datasets import load_digits

    import jupyter_mlops
    from conftest import free_port

    notebook = lab.root / "project" / "rolled.ipynb"
    shutil.copy(EXAMPLES / "digits.ipynb", notebook)
    workspace = lab.root / ".mlops"
    for c in ("5", "10"):
        jupyter_mlops.register(jupyter_mlops.run(notebook, {"C": c}, workspace=workspace)["id"], "rolled",
                               workspace=workspace)
    jupyter_mlops.promote("rolled", 1, workspace=workspace)
    page, panel, errors, logged = open_panel(lab, browser, "rolled.ipynb")
    panel.locator('[data-testid="mlops-action-deploy"]').click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"mlops-deploy-model\"] option')]"
                           ".some(o => o.textContent === 'rolled')")
    panel.locator('[data-testid="mlops-deploy-model"]').select_option("rolled")
    panel.locator('.mlops-form select').nth(1).select_option("2")  # the canary version
    panel.locator('[data-testid="mlops-deploy-progressive"]').check()
    panel.locator('[data-testid="mlops-deploy-steps"]').fill("20,60,100")
    panel.locator('[data-testid="mlops-deploy-interval"]').fill("1s")
    panel.locator('[data-testid="mlops-deploy-min-requests"]').fill("15")
    port = free_port()
    panel.locator('[data-testid="mlops-deploy-port"]').fill(str(port))
    panel.locator('[data-testid="mlops-deploy"]').click()
    panel.locator('[data-testid="mlops-notice"]').get_by_text("started at").wait_for(timeout=90_000)
    panel.locator('[data-testid="mlops-tab-deployments"]').click()
    state = panel.locator('[data-testid="mlops-rollout-state"]')
    state.get_by_text("no scheduler is running").wait_for(timeout=30_000)  # nothing advances it yet: said
    assert "rolled v2: rolling out step 1 of 2" in state.inner_text()

    stop = threading.Event()

    def traffic():
        rows = load_digits().data[:50].tolist()
        with requests.Session() as session:
            while not stop.is_set():
                session.post(f"http://127.0.0.1:{port}/invocations", json={"instances": rows[:1]})

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    scheduler = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "scheduler", "--interval", "0.5",
                                  "--workspace", str(workspace)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state.get_by_text("promoted").wait_for(timeout=120_000)
        panel.locator('[data-testid="mlops-charts-rolled"]').click()
        decisions = panel.locator('[data-testid="mlops-rollout"]')
        decisions.get_by_text("promoted").wait_for(timeout=30_000)
        text = decisions.inner_text()
        assert "started" in text and "advanced, canary at 60%" in text and "healthy: errors 0.0% vs 0.0%" in text, text
        decisions.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "panel-rollout.png"))
        # the deployment now serves version 2 as production
        assert "primary v2" in panel.locator('[data-testid="mlops-deployments"]').inner_text()
    finally:
        stop.set()
        scheduler.kill()
        sender.join(10)
    panel.locator('[data-testid="mlops-undeploy-rolled"]').click()
    panel.get_by_text("no deployments yet").wait_for(timeout=60_000)
    assert not [e for e in errors if "mlops" in e.lower()], errors
    assert not [e for e in logged if "TypeError" in e], logged
