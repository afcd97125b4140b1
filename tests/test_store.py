"""The SQLite store under concurrent writers: nothing lost, never "database is locked"."""
import multiprocessing as mp

from jupyter_mlops.store import Store


def _writer(url: str, worker: int, runs: int) -> None:
    store = Store(url)
    for i in range(runs):
        run_id = f"w{worker}-r{i}"
        store.create_run(run_id, "nb.ipynb", "h", {"worker": worker, "i": i}, "/tmp",
                         [{"name": "data", "position": 0, "kind": "data"},
                          {"name": "train", "position": 1, "kind": "train"}])
        store.update_step(run_id, "data", status="succeeded", duration=0.1)
        store.record_metrics(run_id, "train", {"accuracy": i / runs, "loss": 1.0})
        store.update_step(run_id, "train", status="succeeded")
        store.finish_run(run_id, "succeeded")
    store.close()


def test_eight_processes_writing_at_once_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'mlops.db'}"
    ctx = mp.get_context("spawn")  # fresh interpreters, like separate `jupyter-mlops run` commands
    procs = [ctx.Process(target=_writer, args=(url, w, 25)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * 8
    runs = Store(url).list_runs()
    assert len(runs) == 200
    assert all(r["status"] == "succeeded" and len(r["steps"]) == 2 and r["metrics"]["loss"] == 1.0 for r in runs)
    assert {(r["params"]["worker"], r["params"]["i"]) for r in runs} == {(w, i) for w in range(8) for i in range(25)}


def test_run_lookup_by_prefix_and_clear_errors(tmp_path):
    import pytest

    from jupyter_mlops.errors import MlopsError

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for run_id in ("20260101-000000-aaaaaa", "20260101-000000-aaaabb", "20260102-000000-cccccc"):
        store.create_run(run_id, "nb", "h", {}, "/tmp", [])
    assert store.get_run("20260102")["id"] == "20260102-000000-cccccc"
    with pytest.raises(MlopsError, match="matches several runs"):
        store.get_run("20260101-000000-aaaa")
    with pytest.raises(MlopsError, match="no run `nope`"):
        store.get_run("nope")


def test_a_store_from_an_older_version_is_migrated_without_loss(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the version-1 layout: runs without `owner`
        conn.executescript("""
            CREATE TABLE runs (id VARCHAR(40) PRIMARY KEY, notebook TEXT NOT NULL, notebook_hash VARCHAR(64) NOT NULL,
              params TEXT NOT NULL, status VARCHAR(16) NOT NULL, started FLOAT NOT NULL, finished FLOAT,
              duration FLOAT, error TEXT, run_dir TEXT NOT NULL, sweep_id VARCHAR(40), schedule VARCHAR(200),
              scheduled_for VARCHAR(40));
            CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO runs (id, notebook, notebook_hash, params, status, started, run_dir)
              VALUES ('old-run', 'nb.ipynb', 'h', '{"C": 1}', 'succeeded', 1.0, '/tmp');
        """)
    store = Store(f"sqlite:///{db}")
    [run] = store.list_runs()
    assert run["id"] == "old-run" and run["params"] == {"C": 1} and run["owner"] is None
    store.create_run("new-run", "nb.ipynb", "h", {}, "/tmp", [], owner="host:1:2")
    assert store.get_run("new-run")["owner"] == "host:1:2"


def test_a_version_5_store_gains_package_digests(tmp_path):
    import sqlite3

    db = tmp_path / "v5.db"
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:  # the version-5 layout: model versions without `files`
        conn.executescript("""
            ALTER TABLE model_versions DROP COLUMN files;
            UPDATE meta SET value = '5' WHERE key = 'schema_version';
            INSERT INTO model_versions (name, version, run_id, notebook, notebook_hash, params, metrics, package,
              created) VALUES ('old', 1, 'r', 'nb.ipynb', 'h', '{}', '{}', '/pkg', 1.0);
        """)
    store = Store(f"sqlite:///{db}")
    assert store.model_versions("old")[0]["files"] is None  # verified by nothing: registered before digests
    store.add_model_version("old", lambda v: {"package": f"/pkg{v}", "files": '{"predict.pkl": "ab"}'},
                            run_id="r", notebook="nb.ipynb", notebook_hash="h", params={}, metrics={},
                            data_fingerprint=None)
    assert store.model_versions("old")[1]["files"] == '{"predict.pkl": "ab"}'


def test_statuses_are_typed_and_stored_as_their_plain_values(tmp_path):
    import json
    import sqlite3

    import pytest

    from jupyter_mlops.records import RunStatus, StepStatus

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_run("r1", "nb", "h", {}, "/tmp", [{"name": "train", "position": 0, "kind": "train",
                                                    "fingerprint": "f"}])
    store.update_step("r1", "train", status=StepStatus.REUSED)
    store.finish_run("r1", RunStatus.SUCCEEDED)
    run = store.get_run("r1")
    assert run["status"] == RunStatus.SUCCEEDED == "succeeded" and json.dumps(run["status"]) == '"succeeded"'
    raw = sqlite3.connect(tmp_path / "db.sqlite").execute("SELECT r.status, s.status FROM runs r JOIN steps s "
                                                          "ON s.run_id = r.id").fetchall()
    assert raw == [("succeeded", "reused")]
    with pytest.raises(ValueError, match="'finished' is not a valid RunStatus"):
        store.finish_run("r1", "finished")
    assert store.get_run("r1")["status"] == "succeeded"


def _filled(tmp_path, count: int) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for i in range(count):
        run_id = f"run-{i:03d}"
        store.create_run(run_id, "nb", "h", {"i": i}, "/tmp", [{"name": "train", "position": 0, "kind": "train",
                                                                 "fingerprint": "f"}])
        store.record_metrics(run_id, "train", {"accuracy": (i * 37 % 101) / 100})
        store.finish_run(run_id, "failed" if i % 5 == 0 else "succeeded")
        store.update_run(run_id, started=1000.0 + i // 4, sweep_id="s1" if i % 2 else None)  # ties in start time
    return store


def test_the_best_run_is_ranked_by_the_database_in_one_query(tmp_path):
    """`register best` loaded every run with its steps and metrics and ranked them in Python (13 s at 100k)."""
    import sqlalchemy as sa

    store = _filled(tmp_path, 60)
    runs = store.list_runs()

    def best(candidates, maximize=True):
        return (max if maximize else min)(candidates, key=lambda r: r["metrics"]["accuracy"])["id"]

    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    ok = [r for r in runs if r["status"] == "succeeded"]
    assert store.best_run("accuracy") == best(ok)
    assert store.best_run("accuracy", maximize=False) == best(ok, maximize=False)
    assert store.best_run("accuracy", sweep_id="s1") == best([r for r in ok if r["sweep_id"] == "s1"])
    assert store.best_run("loss") is None
    queries = [s for s in statements if s.lstrip().startswith("SELECT")]
    assert len(queries) == 4 and not any("steps" in q for q in queries)  # one query each, no run loaded


def test_runs_are_read_a_page_at_a_time_in_the_lists_order(tmp_path):
    store = _filled(tmp_path, 23)
    expected = [r["id"] for r in store.list_runs()]
    assert [r["id"] for r in store.iter_runs(page=3)] == expected  # pages split runs that started together
    assert [r["id"] for r in store.iter_runs(page=3, sweep_id="s1")] == \
        [r["id"] for r in store.list_runs(sweep_id="s1")]
    assert all(r["steps"] == [] for r in store.list_runs(steps=False))


def test_a_version_6_store_gains_the_indexes_lists_use(tmp_path):
    import sqlite3

    db = tmp_path / "v6.db"
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP INDEX ix_runs_started; DROP INDEX ix_runs_status; DROP INDEX ix_metrics_name_value;"
                           "UPDATE meta SET value = '6' WHERE key = 'schema_version';")
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 10"))
    assert {"ix_runs_started", "ix_runs_status", "ix_metrics_name_value"} <= indexes
    assert "ix_runs_started" in plan and "TEMP B-TREE" not in plan  # no sort of the whole table


def test_the_runs_dataframe_is_the_run_list_column_by_column_without_steps(tmp_path):
    """`jupyter_mlops.runs()` built a dict and a Timestamp per run from fully loaded runs (14.5 s at 100k runs);
    now it is built column-wise from one query per table. Same frame as the straightforward construction."""
    import os

    import pandas as pd
    import sqlalchemy as sa

    import jupyter_mlops
    from jupyter_mlops.workspace import Workspace

    store = Workspace(tmp_path / ".mlops").store
    for i in range(12):
        run_id = f"r{i:02d}"
        params = {"C": [0.1, 1, 10][i % 3], **({"kernel": "rbf"} if i % 4 == 0 else {})}
        store.create_run(run_id, f"/work/nb{i % 2}.ipynb", "h", params, "/tmp", [])
        if i % 3:
            store.record_metrics(run_id, "train", {"loss": i / 10, **({"accuracy": 1 - i / 20} if i % 2 else {})})
        store.finish_run(run_id, "succeeded")
        store.update_run(run_id, started=1_700_000_000.5 + i, sweep_id="s" if i < 6 else None)

    def expected(**options):  # the straightforward construction, from the fully described runs
        rows = []
        for r in jupyter_mlops.list_runs(workspace=tmp_path / ".mlops", **options):
            rows.append({"run": r["id"], "notebook": os.path.basename(r["notebook"]), "status": r["status"],
                         "started": pd.Timestamp(r["started"]), "duration": r["duration"],
                         **{f"params.{k}": v for k, v in r["params"].items()},
                         **{f"metrics.{k}": v for k, v in sorted(r["metrics"].items())}})
        frame = pd.DataFrame(rows)
        metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
        return frame[[c for c in frame.columns if not c.startswith("metrics.")] + metrics]

    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for options in ({}, {"limit": 5}, {"sweep_id": "s"}):
        statements.clear()
        got = jupyter_mlops.runs(workspace=tmp_path / ".mlops", **options)
        queries = [q for q in statements if q.lstrip().startswith("SELECT")]
        assert sum("FROM metrics" in q for q in queries) == 1 and not any("steps" in q for q in queries)
        pd.testing.assert_frame_equal(got, expected(**options), check_dtype=False)


def fill_for_paging(store) -> None:
    """30 runs: C cycles 0.1, 1, 10; kernel alternates linear, rbf; accuracy i/30 except every fifth run, which
    logged none; every fourth failed; the last ten are of wine.ipynb."""
    for i in range(30):
        run_id = f"run-{i:03d}"
        store.create_run(run_id, "/w/wine.ipynb" if i >= 20 else "/w/digits.ipynb", "h",
                         {"C": [0.1, 1, 10][i % 3], "kernel": "rbf" if i % 2 else "linear"}, "/tmp",
                         [{"name": "train", "position": 0, "kind": "train"}])
        store.update_run(run_id, started=1000.0 + i)
        if i % 5:
            store.record_metrics(run_id, "train", {"accuracy": i / 30})
        store.update_step(run_id, "train", status="failed" if i % 4 == 0 else "succeeded")
        store.finish_run(run_id, "failed" if i % 4 == 0 else "succeeded")


def assert_run_page(store) -> None:
    """The run list's filter, sort and pages (run_query.py), answered by the database: the same on every
    dialect, and reading no more runs than a page holds."""
    import pytest

    from jupyter_mlops.errors import MlopsError

    def ids(text="", sort="started", descending=True, offset=0, limit=100):
        rows, total, _ = store.run_page(text, sort, descending, offset, limit)
        return [int(r["id"][-3:]) for r in rows], total

    assert ids(limit=10) == (list(range(29, 19, -1)), 30)
    assert ids(offset=25, limit=10) == ([4, 3, 2, 1, 0], 30)
    assert ids("accuracy>0.5") == ([29, 28, 27, 26, 24, 23, 22, 21, 19, 18, 17, 16], 12)
    ranked, _ = ids(sort="metrics.accuracy", descending=False)
    assert ranked[:3] == [1, 2, 3] and sorted(ranked[-6:]) == [0, 5, 10, 15, 20, 25]  # no accuracy: last
    assert ids("C=10 status=failed") == ([20, 8], 2)
    assert ids("kernel=rbf WINE") == ([29, 27, 25, 23, 21], 5)  # a plain word: in the notebook, any case
    assert ids("C>1")[1] == 10 and ids("kernel>1") == ([], 0)  # a text value never compares with a number
    by_c, _ = ids(sort="params.C", descending=False, limit=10)
    assert {i % 3 for i in by_c} == {0}  # C = 0.1 first
    rows, _, _ = store.run_page("run-007")
    assert [(r["id"], r["steps_total"], r["steps_done"], r["metrics"]) for r in rows] == [
        ("run-007", 1, 1, {"accuracy": 7 / 30})]
    with pytest.raises(MlopsError, match='no run has a parameter or metric named "gamma"'):
        store.run_page("gamma>1")
    with pytest.raises(MlopsError, match="compare accuracy with a number"):
        store.run_page("accuracy>high")
    with pytest.raises(MlopsError, match='cannot sort by "bogus"'):
        store.run_page("", "bogus")
    read: list[int] = []
    real = store._runs
    store._runs = lambda *a, **k: read.append(len(rows := real(*a, **k))) or rows
    try:
        store.run_page("", limit=5)
    finally:
        del store._runs
    assert read == [5]  # a page's runs, not the store's


def test_the_run_list_is_filtered_sorted_and_paged_by_the_database(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    fill_for_paging(store)
    assert_run_page(store)
