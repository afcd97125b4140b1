"""Continuous training, part 1: each run records the data its steps read (found through audit hooks, fsspec and
--watch), fingerprinted; a schedule fires once per change of that data. Real kernels, real files."""
import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

import jupyter_mlops
from jupyter_mlops import data_reads, schedule
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.workspace import Workspace

T0 = 1_800_000_000.0

# a data scientist's notebook: a CSV and a folder of extra files read, a helper module imported from beside the
# notebook, a file written and read back, values handed between steps
READER = [
    ("data_path = 'sales.csv'\nextras = 'extras'", "parameters"),
    ("import os\nimport pandas as pd\nimport helpers", "imports"),
    ("df = pd.read_csv(data_path)\nnotes = sorted(os.listdir(extras))\n"
     "df.to_csv('cleaned.csv', index=False)\ndf = pd.read_csv('cleaned.csv')", "data"),
    ("from jupyter_mlops import log_metrics\nlog_metrics(rows=len(df), mean=helpers.mean(df['amount']))", "train"),
]


def _sales(folder, rows):
    (folder / "sales.csv").write_text("amount\n" + "\n".join(str(r) for r in rows) + "\n")


def _data(folder, rows=(10, 20, 30)):
    _sales(folder, rows)
    (folder / "extras").mkdir(exist_ok=True)
    (folder / "extras" / "a.txt").write_text("a")
    (folder / "helpers.py").write_text("def mean(values):\n    return float(sum(values) / len(values))\n")


@pytest.fixture
def reader(make_notebook):
    nb = make_notebook(READER)
    _data(nb.parent)
    return nb


def _by_path(run):
    return {os.path.basename(d["path"]): d for d in run["data"]}


def test_a_run_records_the_files_and_folders_its_steps_read_and_nothing_else(reader):
    run = jupyter_mlops.run(reader, check=True)
    found = _by_path(run)
    # not the helper module (an import), not cleaned.csv (written by the step), not the run's own artifacts
    assert set(found) == {"sales.csv", "extras"}, run["data"]
    sales = found["sales.csv"]
    assert sales["kind"] == "file" and sales["step"] == "data" and sales["method"] == "sha256"
    assert sales["size"] == (reader.parent / "sales.csv").stat().st_size
    import hashlib

    assert sales["digest"] == hashlib.sha256((reader.parent / "sales.csv").read_bytes()).hexdigest()
    assert found["extras"]["kind"] == "folder" and found["extras"]["method"] == "listing"
    # `show` and `runs --json` carry them
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "show", run["id"]], cwd=reader.parent,
                           capture_output=True, text=True, timeout=120)
    assert "data read" in shown.stdout and "sales.csv" in shown.stdout and "extras" in shown.stdout, shown
    listed = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "runs", "--json"], cwd=reader.parent,
                            capture_output=True, text=True, timeout=120)
    [row] = json.loads(listed.stdout)
    assert {os.path.basename(d["path"]) for d in row["data"]} == {"sales.csv", "extras"}


def test_two_runs_on_different_data_differ_visibly_in_compare(reader):
    first = jupyter_mlops.run(reader, check=True)
    _sales(reader.parent, rows=(10, 20, 31))
    second = jupyter_mlops.run(reader, check=True)
    from jupyter_mlops import api

    table = api.compare([first["id"], second["id"]], workspace=reader.parent / ".mlops")
    row = "data.sales.csv"  # named from the notebook's folder
    assert row in table.index, table
    assert table.loc[row, first["id"]] == _by_path(first)["sales.csv"]["digest"][:12]
    assert table.loc[row, first["id"]] != table.loc[row, second["id"]]
    assert "data.extras" not in table.index  # unchanged: not a difference


def test_watch_declares_data_the_hooks_cannot_see(reader):
    (reader.parent / "lookup.bin").write_bytes(b"\0" * 100)
    run = jupyter_mlops.run(reader, watch_paths=["lookup.bin"], check=True)
    entry = _by_path(run)["lookup.bin"]
    assert entry["step"] is None and entry["size"] == 100 and entry["method"] == "sha256"
    with pytest.raises(MlopsError, match="--watch nothere.bin: .* does not exist"):
        jupyter_mlops.run(reader, watch_paths=["nothere.bin"])


def test_fingerprints_of_urls_large_files_and_what_changed(tmp_path, monkeypatch):
    import fsspec

    fsspec.filesystem("memory").pipe("/bucket/events.csv", b"a\n1\n")
    data_reads.watch(str(tmp_path / "artifacts"))
    with fsspec.open("memory://bucket/events.csv") as f:
        f.read()
    with fsspec.open("memory://bucket/out.csv", "w") as f:  # written: not an input
        f.write("x")
    found = data_reads.report()
    [url] = found["reads"]
    assert url["kind"] == "url" and url["path"].endswith("bucket/events.csv") and url["method"] == "fsspec-checksum"

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3000))
    monkeypatch.setattr(data_reads, "HASH_WHOLE_UP_TO", 1000)
    monkeypatch.setattr(data_reads, "BLOCK", 100)
    entry = data_reads.fingerprint(str(big), "file")
    assert entry["method"] == "sampled"
    assert data_reads.changed([entry]) == []
    with open(big, "r+b") as f:  # a change inside the first sampled block
        f.write(b"\1\2\3")
    [change] = data_reads.changed([entry])
    assert change["now"]["digest"] != entry["digest"]
    big.unlink()
    [gone] = data_reads.changed([entry])
    assert gone["now"]["method"] == "missing"


def test_urls_are_noted_when_fsspec_is_imported_after_the_step_began(tmp_path):
    """pandas imports fsspec only when it reads a URL: the wrapper goes on at that import."""
    code = ("from jupyter_mlops import data_reads\n"
            "import sys\nassert 'fsspec' not in sys.modules\n"
            "data_reads.watch('')\n"
            "import fsspec\n"
            "assert data_reads._fsspec_wrapped\n"  # by the import itself
            "fsspec.filesystem('memory').pipe('/b/x.csv', b'a')\n"  # written by this step: not its input
            "fsspec.filesystem('memory').pipe('/b/y.csv', b'a')\n"
            "data_reads.watch('')\n"  # the next step
            "fsspec.open('memory://b/x.csv').open().read()\n"
            "print([e['path'] for e in data_reads.report()['reads']])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "['memory:///b/x.csv']", done


@pytest.fixture
def triggered(reader):
    ws = Workspace(reader.parent / ".mlops")
    schedule.add(ws, reader, "retrain", None, on_data_change=True, every="1m", clock=lambda: T0)
    return ws, reader


def test_a_data_change_schedule_runs_a_baseline_then_fires_once_per_change(triggered):
    ws, nb = triggered
    scheduler = schedule.Scheduler(ws)
    [fired] = scheduler.tick(now=T0 + 1, wait=True)
    assert fired["status"] == "fired" and "baseline" in fired["reason"]
    assert scheduler.tick(now=T0 + 30, wait=True) == []  # not a minute yet
    assert scheduler.tick(now=T0 + 120, wait=True) == []  # a minute later: nothing changed
    os.utime(nb.parent / "sales.csv")  # touched, same content: not a change
    assert scheduler.tick(now=T0 + 240, wait=True) == []
    _sales(nb.parent, rows=(10, 20, 30, 40))
    [fired] = scheduler.tick(now=T0 + 360, wait=True)
    assert fired["status"] == "fired" and fired["reason"].endswith(": sales.csv"), fired
    assert scheduler.tick(now=T0 + 480, wait=True) == []  # the new run read the new data: nothing to do
    runs = jupyter_mlops.list_runs(workspace=ws.root)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["metrics"]["rows"] == 4.0 and runs[1]["metrics"]["rows"] == 3.0
    history = jupyter_mlops.schedule_history("retrain", workspace=ws.root)
    assert [h["reason"].split(":")[0] for h in history] == ["first run", f"data changed since run {runs[1]['id']}"]


def _one_pass(root: str, now: float) -> None:
    schedule.Scheduler(Workspace(root)).tick(now=now, wait=True)


def test_two_schedulers_fire_a_data_change_exactly_once(triggered):
    ws, nb = triggered
    schedule.Scheduler(ws).tick(now=T0 + 1, wait=True)  # the baseline
    _sales(nb.parent, rows=(1, 2))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_one_pass, args=(str(ws.root), T0 + 100 + i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(jupyter_mlops.list_runs(workspace=ws.root)) == 2
    assert len(ws.store.tick_history("retrain")) == 2


def test_a_schedulers_pass_on_one_schedule_checks_it_now(triggered):
    """What a Kubernetes CronJob's pod runs: `scheduler --once --only NAME` (the CronJob keeps the interval)."""
    ws, nb = triggered
    schedule.add(ws, nb, "other", None, on_data_change=True, every="1h", clock=lambda: T0)
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "scheduler", "--once", "--only", "retrain"],
                          cwd=nb.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("retrain ") and "fired" in done.stdout, done
    assert [h["name"] for h in ws.store.tick_history("retrain")] == ["retrain"]
    assert ws.store.tick_history("other") == []  # not asked for
    _sales(nb.parent, rows=(7,))
    again = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "scheduler", "--once", "--only", "retrain"],
                           cwd=nb.parent, capture_output=True, text=True, timeout=300)
    assert "fired" in again.stdout, again  # checked at once, though its minute had not passed
    unknown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "scheduler", "--once", "--only", "nope"],
                             cwd=nb.parent, capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "no schedule `nope`" in unknown.stderr


def test_triggered_schedules_refuse_bad_input_naming_the_option(reader):
    ws = Workspace(reader.parent / ".mlops")
    with pytest.raises(MlopsError, match="needs --cron .*--on-data-change"):
        schedule.add(ws, reader, "s", None)
    with pytest.raises(MlopsError, match="not both"):
        schedule.add(ws, reader, "s", "0 3 * * *", on_data_change=True)
    with pytest.raises(MlopsError, match="--every 5s is too short: at least 10 s"):
        schedule.add(ws, reader, "s", None, on_data_change=True, every="5s")
    with pytest.raises(MlopsError, match="--every `soon` is not a duration"):
        schedule.add(ws, reader, "s", None, on_data_change=True, every="soon")
    with pytest.raises(MlopsError, match="--watch gone.csv: .* does not exist"):
        schedule.add(ws, reader, "s", None, on_data_change=True, watch_paths=["gone.csv"])
    with pytest.raises(MlopsError, match="--every and --watch go with --on-data-change"):
        schedule.add(ws, reader, "s", "0 3 * * *", every="5m")
    assert ws.store.schedules() == []
    added = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "schedule", "add", str(reader), "--name",
                            "retrain", "--on-data-change", "--every", "5m"], cwd=reader.parent,
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0 and "on data change (checked every 300 s)" in added.stdout, added
