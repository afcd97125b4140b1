"""Schedules with an injectable clock: real runs fire exactly once, policies, retries, bad input."""
import json
import multiprocessing as mp
import subprocess
import sys
from datetime import datetime, timezone

import pytest

import jupyter_mlops
from jupyter_mlops import schedule
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.owners import process_owner
from jupyter_mlops.workspace import Workspace

T0 = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc).timestamp()  # 30 s after midnight
TINY = [("limit = 10", "parameters"), ("x = limit", "data"),
        ("from jupyter_mlops import log_metrics\nif x > 50:\n    raise ValueError('too big')\nlog_metrics(x=x)",
         "train")]


@pytest.fixture
def ws(make_notebook):
    nb = make_notebook(TINY)
    workspace = Workspace(nb.parent / ".mlops")
    return workspace, nb


def test_a_due_tick_fires_one_real_run_with_its_schedule(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "every5", "*/5 * * * *", {"limit": "7"}, clock=lambda: T0)
    scheduler = schedule.Scheduler(workspace)
    assert scheduler.tick(now=T0 + 60, wait=True) == []  # 00:01:30: nothing due yet
    fired = scheduler.tick(now=T0 + 5 * 60, wait=True)  # 00:05:30: the 00:05 tick
    assert fired == [{"schedule": "every5", "tick": "2026-01-01T00:05:00+00:00", "status": "fired"}]
    assert scheduler.tick(now=T0 + 5 * 60 + 10, wait=True) == []  # same tick: never twice
    [run] = jupyter_mlops.list_runs(workspace=workspace.root)
    assert run["status"] == "succeeded" and run["params"]["limit"] == 7
    assert run["schedule"] == "every5" and run["scheduled_for"] == "2026-01-01T00:05:00+00:00"
    [tick] = workspace.store.tick_history("every5")
    assert tick["status"] == "succeeded" and tick["run_id"] == run["id"]


def _one_pass(root: str, now: float) -> None:
    schedule.Scheduler(Workspace(root)).tick(now=now, wait=True)


def test_two_scheduler_processes_fire_a_tick_exactly_once(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "hourly", "0 * * * *", clock=lambda: T0)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_one_pass, args=(str(workspace.root), T0 + 3600)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    runs = jupyter_mlops.list_runs(workspace=workspace.root)
    assert len(runs) == 1 and runs[0]["scheduled_for"] == "2026-01-01T01:00:00+00:00"
    assert len(workspace.store.tick_history("hourly")) == 1


def test_missed_ticks_are_skipped_or_the_latest_runs_once(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "skipper", "0 * * * *", missed="skip", clock=lambda: T0)
    schedule.add(workspace, nb, "catcher", "0 * * * *", missed="latest", clock=lambda: T0)
    later = T0 + 5 * 3600 + 20 * 60  # 05:20:30: ticks 01:00..05:00 were missed (no scheduler ran)
    fired = schedule.Scheduler(workspace).tick(now=later, wait=True)
    assert fired == [{"schedule": "catcher", "tick": "2026-01-01T05:00:00+00:00", "status": "fired"}]
    assert workspace.store.tick_history("skipper") == []
    assert workspace.store.get_schedule("skipper")["last_tick"] == T0 + 5 * 3600 - 30  # considered, not rerun
    assert schedule.Scheduler(workspace).tick(now=later + 60, wait=True) == []


def test_overlap_skips_a_tick_while_the_previous_run_runs(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "busy", "*/5 * * * *", clock=lambda: T0)
    # a run of this schedule that is still running, owned by this (live) process
    workspace.store.create_run("20260101-000000-aaaaaa", str(nb), "h", {}, "/tmp", [], owner=process_owner(),
                               schedule="busy")
    fired = schedule.Scheduler(workspace).tick(now=T0 + 5 * 60, wait=True)
    assert fired[0]["status"] == "skipped"
    [tick] = workspace.store.tick_history("busy")
    assert tick["status"] == "skipped" and "still running" in tick["error"]


def test_retries_back_off_and_end_failed(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "flaky", "*/5 * * * *", {"limit": "99"}, retries=2, backoff=30, clock=lambda: T0)
    waited = []
    schedule.Scheduler(workspace, sleep=waited.append).tick(now=T0 + 5 * 60, wait=True)
    assert waited == [30, 60]
    [tick] = workspace.store.tick_history("flaky")
    assert tick["status"] == "failed" and tick["attempts"] == 3 and "too big" in tick["error"]
    assert len(jupyter_mlops.list_runs(workspace=workspace.root)) == 3


def test_paused_schedules_do_not_fire_and_bad_input_is_refused(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "quiet", "*/5 * * * *", clock=lambda: T0)
    workspace.store.set_schedule_status("quiet", "paused")
    assert schedule.Scheduler(workspace).tick(now=T0 + 300, wait=True) == []
    for kwargs, words in [({"cron": "61 * * * *"}, "not a cron expression"),
                          ({"timezone": "Mars/Base"}, "unknown timezone"),
                          ({"parameters": {"nope": "1"}}, "unknown parameter"),
                          ({"missed": "sometimes"}, "--missed"),
                          ({"name": "quiet"}, "exists already")]:
        args = {"name": "other", "cron": "0 * * * *", **kwargs}
        with pytest.raises(MlopsError, match=words):
            schedule.add(workspace, nb, args.pop("name"), args.pop("cron"), args.pop("parameters", None), **args)
    with pytest.raises(MlopsError, match="not found"):
        schedule.add(workspace, nb.parent / "missing.ipynb", "x", "0 * * * *")
    assert [s["name"] for s in workspace.store.schedules()] == ["quiet"]


def test_cli_schedule_verbs(ws):
    workspace, nb = ws
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]

    def call(*args):
        return subprocess.run(cli + list(args) + ["--workspace", str(workspace.root)], capture_output=True,
                              text=True, timeout=300)

    added = call("schedule", "add", str(nb), "--name", "nightly", "--cron", "0 3 * * *", "--timezone",
                 "Europe/Berlin", "-p", "limit", "5")
    assert added.returncode == 0, added.stderr
    listed = json.loads(call("schedule", "list", "--json").stdout)
    assert listed[0]["name"] == "nightly" and "T03:00:00+0" in listed[0]["next_tick"]  # Berlin time
    ran = call("schedule", "run", "nightly")
    assert ran.returncode == 0 and "succeeded" in ran.stdout
    history = json.loads(call("schedule", "history", "nightly", "--json").stdout)
    assert history[0]["status"] == "succeeded" and history[0]["run_id"]
    assert call("schedule", "pause", "nightly").returncode == 0
    assert json.loads(call("schedule", "list", "--json").stdout)[0]["status"] == "paused"
    assert call("schedule", "delete", "nightly").returncode == 0
    gone = call("schedule", "history", "nightly")
    assert gone.returncode == 1 and "no schedule `nightly`" in gone.stderr


def test_a_run_over_its_timeout_is_stopped_and_fails(make_notebook):
    nb = make_notebook([("import time", "setup"), ("x = 1", "data"), ("time.sleep(60)\ny = x", "train")])
    workspace = Workspace(nb.parent / ".mlops")
    schedule.add(workspace, nb, "slow", "*/5 * * * *", timeout=3, clock=lambda: T0)
    schedule.Scheduler(workspace).tick(now=T0 + 300, wait=True)
    [tick] = workspace.store.tick_history("slow")
    [run] = jupyter_mlops.list_runs(workspace=workspace.root)
    assert tick["status"] == "failed" and "timed out after 3 s" in tick["error"]
    assert run["status"] == "failed" and {s["name"]: s["status"] for s in run["steps"]}["train"] == "cancelled"


def test_next_fire_times_are_the_next_ones_whatever_the_frequency():
    """Issue 14, item 8: `* * * * *` answered a date a year ahead (the last of 10,000 ticks walked)."""
    assert [schedule.iso(t) for t in schedule.next_ticks("* * * * *", "UTC", T0, 3)] == [
        "2026-01-01T00:01:00+00:00", "2026-01-01T00:02:00+00:00", "2026-01-01T00:03:00+00:00"]
    # shown in the schedule's own timezone: 03:00 in Berlin is 02:00 UTC
    berlin = schedule.next_ticks("0 3 * * *", "Europe/Berlin", T0)[0]
    assert schedule.iso(berlin, "Europe/Berlin") == "2026-01-01T03:00:00+01:00"
    # the scheduler, down for a year on a per-minute cron, finds the latest due tick directly
    assert schedule.latest_tick("* * * * *", "UTC", T0, T0 + 365 * 86400 + 20) == T0 + 365 * 86400 - 30
    assert schedule.latest_tick("0 3 * * *", "UTC", T0, T0 + 3600) is None
    at_tick = datetime(2026, 1, 1, 3, tzinfo=timezone.utc).timestamp()
    assert schedule.latest_tick("0 3 * * *", "UTC", T0, at_tick) == at_tick


@pytest.mark.parametrize("cron, words", [("* * * * * *", "6 fields"), ("0 0 31 2 *", "never fires"),
                                         ("61 * * * *", "not a cron expression")])
def test_crons_that_cannot_be_scheduled_are_refused_naming_why(cron, words):
    with pytest.raises(MlopsError, match=words):
        schedule.check_cron(cron)


def test_a_per_minute_schedule_lists_its_next_minute(ws):
    workspace, nb = ws
    schedule.add(workspace, nb, "often", "* * * * *", clock=lambda: T0)
    described = schedule.describe(workspace.store.get_schedule("often"), T0)
    assert described["next_tick"] == "2026-01-01T00:01:00+00:00"


def test_adding_a_schedule_says_when_no_scheduler_will_fire_it(ws):
    """A schedule added with no scheduler running never fires: `schedule add` and `list` say so, with the fix, and
    stop saying it once a real scheduler (`jupyter-mlops scheduler`) makes its passes; not after it ends."""
    import time

    workspace, nb = ws
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]

    def call(*args):
        return subprocess.run(cli + list(args) + ["--workspace", str(workspace.root)], capture_output=True,
                              text=True, timeout=300)

    added = call("schedule", "add", str(nb), "--name", "nightly", "--cron", "0 3 * * *")
    assert added.returncode == 0 and "warning: no scheduler is running on this workspace" in added.stdout
    assert "`jupyter-mlops scheduler`" in added.stdout and "c.JupyterMlops.scheduler = True" in added.stdout
    assert "no scheduler is running" in call("schedule", "list").stderr
    daemon = subprocess.Popen(cli + ["scheduler", "--interval", "0.5", "--workspace", str(workspace.root)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not schedule.schedulers_alive(workspace.store) and time.time() < deadline:
            time.sleep(0.2)
        [alive] = schedule.schedulers_alive(workspace.store)
        assert alive["owner"] == process_owner(daemon.pid) and alive["interval"] == 0.5
        added = call("schedule", "add", str(nb), "--name", "weekly", "--cron", "0 3 * * 1")
        assert added.returncode == 0 and "warning" not in added.stdout
        assert "no scheduler" not in call("schedule", "list").stderr
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert schedule.schedulers_alive(workspace.store) == []  # its process has ended


def test_beats_of_schedulers_long_gone_are_forgotten(ws):
    """One beat per scheduler process ever started would pile up in the store: a day-old one goes at the next beat."""
    workspace, _ = ws
    workspace.store.beat("scheduler", "host:1:1", {"last_pass": T0, "interval": 5.0})
    workspace.store.beat("scheduler", "host:2:2", {"last_pass": T0 + 3600, "interval": 5.0})
    assert len(workspace.store.beats("scheduler")) == 2
    workspace.store.beat("scheduler", "host:3:3", {"last_pass": T0 + 86400 + 60, "interval": 5.0})
    assert sorted(b["owner"] for b in workspace.store.beats("scheduler")) == ["host:2:2", "host:3:3"]
