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
