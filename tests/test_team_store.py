"""The team store: the run table and registry on a real PostgreSQL server, artifacts and model packages on a real
S3-compatible server (moto's server mode), shared by clients with workspaces of their own."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, free_port


def _initdb() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def postgres():
    initdb = _initdb()
    if not initdb:
        if os.environ.get("CI"):
            pytest.fail("CI must install PostgreSQL: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    pytest.importorskip("psycopg")
    bin_dir = Path(initdb).parent
    # the server refuses to run as root: a folder the `postgres` user (made by Debian's package) owns
    home = Path(tempfile.mkdtemp(prefix="mlops-pg-", dir="/var/tmp"))
    os.chmod(home, 0o755)
    shutil.chown(home, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, str(initdb), "-D", str(home / "data"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([*as_postgres, str(bin_dir / "postgres"), "-D", str(home / "data"), "-p", str(port),
                               "-k", str(home), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import psycopg

    deadline = time.time() + 60
    while True:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            assert time.time() < deadline and server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.3)
    counter = iter(range(1000))

    def database() -> str:
        """A fresh, empty database on the server; its URL."""
        name = f"team{next(counter)}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    yield database
    server.terminate()
    server.wait(30)
    shutil.rmtree(home, ignore_errors=True)


WRITER = textwrap.dedent("""
    import sys, time
    from jupyter_mlops.store import Store
    url, who = sys.argv[1], sys.argv[2]
    store = Store(url)
    for i in range(25):
        run_id = f"{who}-{i:03d}"
        store.create_run(run_id, "nb.ipynb", "h", {"i": i}, "/tmp", [{"name": "data", "position": 0, "kind": "data",
                                                                      "fingerprint": "f"}])
        store.finish_run(run_id, "succeeded")
        if i % 5 == 0:
            store.add_model_version("shared", lambda v: {"package": f"pkg-{who}-{v}"}, run_id=run_id,
                                    notebook="nb.ipynb", notebook_hash="h", params={}, metrics={},
                                    data_fingerprint=None)
""")


def test_two_clients_writing_at_once_lose_nothing(postgres):
    url = postgres()  # a fresh database: both clients also race to create the tables
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, who]) for who in ("alice", "bob")]
    assert [w.wait(300) for w in writers] == [0, 0]
    from jupyter_mlops.store import Store

    store = Store(url)
    runs = store.list_runs()
    assert len(runs) == 50 and {r["status"] for r in runs} == {"succeeded"}
    versions = [v["version"] for v in store.model_versions("shared")]
    assert versions == list(range(1, 11))  # every version allocated once, none lost


def test_the_run_list_is_filtered_sorted_and_paged_by_postgresql(postgres):
    """The panel's filter and sort in SQL on PostgreSQL too (parameters are JSON text: cast to jsonb there)."""
    from jupyter_mlops.store import Store
    from test_store import assert_run_page, fill_for_paging

    store = Store(postgres())
    fill_for_paging(store)
    assert_run_page(store)


def test_a_team_shares_runs_artifacts_and_models(postgres, s3, tmp_path, monkeypatch):
    import jupyter_mlops
    from jupyter_mlops.serving.server import load
    from jupyter_mlops.workspace import Workspace

    env, fs = s3
    for key, value in {**env, "MLOPS_STORE_URL": postgres(), "MLOPS_ARTIFACTS_URL": "s3://team-bucket/mlops"}.items():
        monkeypatch.setenv(key, value)  # kernels inherit them
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    shutil.copy(EXAMPLES / "digits.ipynb", alice / "digits.ipynb")

    run = jupyter_mlops.run(alice / "digits.ipynb", {"C": 5})
    assert run["status"] == "succeeded", run["error"]
    assert fs.ls(f"team-bucket/mlops/{run['id']}/train")  # the step outputs went to the object store
    sweep = jupyter_mlops.sweep(alice / "digits.ipynb", {"C": "1,10"}, parallel=2, maximize="accuracy")
    assert sweep["status"] == "succeeded"
    trial = sweep["trials"][1]["id"]
    assert fs.ls(f"team-bucket/mlops/{trial}/data")  # the shared data step, copied for the second trial
    version = jupyter_mlops.register(run["id"], "digits", require=["accuracy>=0.9"], workspace=alice / ".mlops")
    assert version["package"] == "s3://team-bucket/mlops/models/digits/v1"

    # Bob, on his own machine (another workspace), sees Alice's runs and serves her model
    bobs = Workspace(bob / ".mlops")
    assert {r["id"] for r in bobs.store.list_runs()} >= {run["id"], trial}
    assert [m["name"] for m in jupyter_mlops.models(workspace=bob / ".mlops")] == ["digits"]
    served = load(bobs, "digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert served.predict(digits.data[:20].tolist()) == digits.target[:20].tolist()
    assert (bob / ".mlops" / "models" / "digits" / "v1" / "predict.pkl").exists()  # fetched once, then local

    # issue 14, item 7: a cached copy changed on Bob's disk is fetched again; a package changed in the bucket is
    # refused before it is unpickled
    from jupyter_mlops.registry import PackageChanged

    cached = bob / ".mlops" / "models" / "digits" / "v1" / "predict.pkl"
    cached.write_bytes(b"not the registered pickle")
    assert load(bobs, "digits").predict(digits.data[:2].tolist()) == digits.target[:2].tolist()
    original = fs.cat("team-bucket/mlops/models/digits/v1/schema.json")
    fs.pipe("team-bucket/mlops/models/digits/v1/schema.json", b"[]")
    shutil.rmtree(bob / ".mlops" / "models")
    with pytest.raises(PackageChanged, match="schema.json"):
        load(bobs, "digits")
    fs.pipe("team-bucket/mlops/models/digits/v1/schema.json", original)

    # item 6: an upload that fails half way registers nothing, leaves nothing, and blocks nothing
    import fsspec.core

    url_to_fs = fsspec.core.url_to_fs

    class CutOff:
        """The bucket, whose connection resets once an upload has sent its files."""

        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def put(self, *args, **kwargs):
            self.fs.put(*args, **kwargs)
            raise OSError("the connection was reset")

    monkeypatch.setattr(fsspec.core, "url_to_fs", lambda url, **kw: (CutOff(url_to_fs(url, **kw)[0]),
                                                                     url_to_fs(url, **kw)[1]))
    with pytest.raises(OSError, match="reset"):
        jupyter_mlops.register(run["id"], "digits", workspace=alice / ".mlops")
    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    fs.invalidate_cache()
    assert not fs.exists("team-bucket/mlops/models/digits/v2") and \
        not (alice / ".mlops" / "models" / "digits" / "v2").exists()
    assert jupyter_mlops.register(run["id"], "digits", workspace=alice / ".mlops")["version"] == 2
