"""Issue 14, item 12: a damaged, lost, read-only store or a full disk is said in one line naming the file and what
to do; nothing is recreated over existing runs, and a step notebook is never left half written."""
import json
import os
import resource
import signal
import subprocess
import sys

import pytest

import jupyter_mlops
from jupyter_mlops.workspace import Workspace

CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def cli(*args, env=None, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, **kw)


def one_line_error(done, *words) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture
def workspace_with_runs(make_notebook):
    nb = make_notebook([("x = 1", "data"), ("y = x + 1", "train")])
    jupyter_mlops.run(nb)
    return nb.parent / ".mlops"


def test_a_damaged_store_is_one_line_and_left_as_it_is(workspace_with_runs):
    db = workspace_with_runs / "mlops.db"
    import sqlite3

    with sqlite3.connect(db) as conn:  # everything into the main file first
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as f:  # overwrite the header and the first pages: what a bad copy or a bad disk does
        f.write(b"\0garbage" * 2000)
    before = db.read_bytes()
    one_line_error(cli("runs", "--workspace", str(workspace_with_runs)), str(db), "is damaged", "backup")
    assert db.read_bytes() == before


def test_a_zero_byte_store_beside_runs_is_refused_not_recreated(workspace_with_runs):
    """It was silently recreated empty: every run gone from every listing while runs/ still held them."""
    db = workspace_with_runs / "mlops.db"
    for leftover in (db, db.with_name("mlops.db-wal"), db.with_name("mlops.db-shm")):
        leftover.unlink(missing_ok=True)
    db.write_bytes(b"")
    one_line_error(cli("runs", "--workspace", str(workspace_with_runs)), "is empty (0 bytes)", "1 run folder",
                   "move")
    assert db.stat().st_size == 0
    db.unlink()
    one_line_error(cli("runs", "--workspace", str(workspace_with_runs)), "is missing")
    assert not db.exists()


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(workspace_with_runs):
    db = workspace_with_runs / "mlops.db"
    url = f"sqlite:///file:{db}?mode=ro&uri=true"  # read-only as SQLite sees it (root ignores file modes)
    env = {"MLOPS_STORE_URL": url}
    assert cli("runs", "--workspace", str(workspace_with_runs), env=env).returncode == 0
    notebook = workspace_with_runs.parent / "nb.ipynb"
    one_line_error(cli("run", str(notebook), "--workspace", str(workspace_with_runs), env=env),
                   "cannot be written", "writable")


def _limit_file_size():
    # what a full disk does to a write: it fails part way (EFBIG here; ENOSPC there), the process lives on
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))


def test_a_full_disk_leaves_the_step_notebook_whole(make_notebook):
    nb = make_notebook([("x = 1", "data"), ("print('x' * 4_000_000)", "train")])
    done = subprocess.run(CLI + ["run", str(nb)], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_file_size)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    run = Workspace(nb.parent / ".mlops").store.list_runs()[0]
    described = jupyter_mlops.get_run(run["id"], workspace=nb.parent / ".mlops")
    train = next(s for s in described["steps"] if s["name"] == "train")
    assert described["status"] == "failed" and "File too large" in train["error"]
    written = json.loads(open(train["output_notebook"]).read())  # the last whole save, still JSON
    assert written["cells"] and not [p for p in os.listdir(os.path.dirname(train["output_notebook"]))
                                     if p.endswith(".tmp")]
