"""Shared helpers: notebooks written on the fly from (source, tags) pairs, and an isolated workspace."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import nbformat.v4 as v4
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "example_notebooks"


def write_notebook(path: Path, cells: list) -> Path:
    """cells: strings (untagged code), (source, tag, ...) tuples, or ("md", text) for markdown."""
    nb_cells = []
    for cell in cells:
        if isinstance(cell, str):
            nb_cells.append(v4.new_code_cell(cell))
        elif cell[0] == "md":
            nb_cells.append(v4.new_markdown_cell(cell[1]))
        else:
            code = v4.new_code_cell(cell[0])
            code.metadata["tags"] = list(cell[1:])
            nb_cells.append(code)
    nb = v4.new_notebook(cells=nb_cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def make_notebook(tmp_path):
    def make(cells: list, name: str = "nb.ipynb") -> Path:
        return write_notebook(tmp_path / name, cells)

    return make


@pytest.fixture
def example(tmp_path):
    """A copy of an example notebook in a fresh folder (its workspace lands there too)."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copy(EXAMPLES / name, target)
        return target

    return copy


@pytest.fixture(autouse=True)
def _isolated_workspace(monkeypatch):
    monkeypatch.delenv("MLOPS_WORKSPACE", raising=False)
    monkeypatch.delenv("MLOPS_STORE_URL", raising=False)
    monkeypatch.delenv("MLOPS_ARTIFACTS_URL", raising=False)


def register_digits(folder: Path, c_values: tuple = ("5",), name: str = "digits") -> list[dict]:
    """Run the digits example once per C in `folder` and register each run as the next version of `name`
    (version 1 promoted to production); returns the registered versions. The workspace is folder/.mlops."""
    import jupyter_mlops

    notebook = folder / "digits.ipynb"
    shutil.copy(EXAMPLES / "digits.ipynb", notebook)
    workspace = folder / ".mlops"
    versions = [jupyter_mlops.register(jupyter_mlops.run(notebook, {"C": c})["id"], name, workspace=workspace)
                for c in c_values]
    jupyter_mlops.promote(name, 1, workspace=workspace)
    return versions


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """A real `jupyter lab` process (our server extension enabled) on 127.0.0.1, rooted at `root`."""

    def __init__(self, root: Path, *args: str, env: dict | None = None):
        import os
        import subprocess

        self.root, self.port, self.token = root, free_port(), "test-token"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root.parent / f"jupyter-{self.port}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
             "--port", str(self.port), f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.jpserver_extensions={'jupyter_mlops': True}", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait(self, timeout: float = 60.0) -> "JupyterServer":
        import time

        import requests

        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if requests.get(f"{self.url}/api/status", headers=self.headers, timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"jupyter did not start:\n{self.output()}")

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, **kwargs):
        import requests

        return requests.request(method, f"{self.url}/mlops/api/{path}", headers=self.headers, timeout=120, **kwargs)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except Exception:
            self.process.kill()
        self.log.close()


# -- real images, built with podman -------------------------------------------------------------------------------
CONTAINER_STATE = Path("/var/tmp/jupyter-mlops-test-containers")  # images kept between runs: rebuilt only if gone
BASE_IMAGE = "localhost/mlops-test-python:bookworm"
PIP_SECRET_MARKER = "pip-setting-marker-7f3a.invalid"


def cli(*args: str, env: dict | None = None, timeout: float = 900):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _podman_env(tmp: Path) -> dict:
    """podman as it works on these machines (../shared/ENVIRONMENT.md): runc, cgroupfs, overlay, raised ulimits."""
    conf, storage = tmp / "containers.conf", tmp / "storage.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{CONTAINER_STATE}/graph"\n'
                       f'runroot = "{CONTAINER_STATE}/run"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    if not shutil.which("podman") or not shutil.which("debootstrap"):
        if os.environ.get("CI"):
            pytest.fail("CI must install podman and debootstrap (apt-get install podman buildah runc debootstrap)")
        pytest.skip("podman/debootstrap not installed (.ci/run installs them)")
    env = _podman_env(tmp_path_factory.mktemp("podman"))

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)

    if run("image", "exists", BASE_IMAGE).returncode != 0:
        # no registry is reachable: a Debian base made here, with python3 and venv from Debian's mirror
        rootfs = CONTAINER_STATE / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)], check=True,
                       capture_output=True, timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["podman", "import", "-", "localhost/mlops-test-debian:bookworm"],
                                  stdin=tar.stdout, capture_output=True, env=env, timeout=600)
        assert imported.returncode == 0, imported.stderr
        base = tmp_path_factory.mktemp("base")
        (base / "Dockerfile").write_text(
            "FROM localhost/mlops-test-debian:bookworm\nRUN apt-get update -qq && apt-get install -y -qq "
            "--no-install-recommends python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*\n")
        built = run("build", "--network", "host", "--isolation", "chroot", "-t", BASE_IMAGE, str(base), timeout=900)
        assert built.returncode == 0, built.stdout + built.stderr
        shutil.rmtree(rootfs, ignore_errors=True)
    return env, run


@pytest.fixture(scope="session")
def digits_image(podman, tmp_path_factory):
    """The digits example's image, built by `jupyter-mlops build` with podman: (tag, podman runner, CLI output)."""
    env, run = podman
    folder = tmp_path_factory.mktemp("digits-image")
    shutil.copy(EXAMPLES / "digits.ipynb", folder / "digits.ipynb")
    tag = "localhost/mlops-test-digits:latest"
    # pip inside the build reaches the package index through the host's network and CA bundle; pip's settings
    # go in as a build secret (PIP_CERT, and a marker that test_image looks for in the image's metadata)
    done = cli("build", str(folder / "digits.ipynb"), "--tag", tag, "--base-image", BASE_IMAGE,
               "--builder", "podman", "--builder-arg=--network=host", "--builder-arg=--isolation=chroot",
               "--builder-arg=--volume=/etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro", "--with", "s3fs",
               env={**env, "PIP_CERT": "/host-ca.crt", "PIP_TRUSTED_HOST": PIP_SECRET_MARKER})
    assert done.returncode == 0, done.stdout + done.stderr
    return tag, run, done.stdout


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 with a bucket `team-bucket`: (env, fs)."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    port = free_port()
    import sys

    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]})
    import time

    deadline = time.time() + 30
    while True:
        try:
            fs.mkdir("team-bucket")
            break
        except Exception:
            assert time.time() < deadline and server.poll() is None, "moto's S3 server did not start"
            time.sleep(0.3)
    yield env, fs
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="session")
def kfp_python(tmp_path_factory) -> str:
    """A python with the kfp SDK (and the docker SDK its local DockerRunner drives): kfp pins kubernetes<31 and exact
    requests/urllib3 versions, so it gets a virtual environment of its own (this environment's packages visible),
    built once per test session from the registry."""
    folder = tmp_path_factory.mktemp("kfp-venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "kfp>=2.7", "docker>=7"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"pip could not install kfp: {done.stderr[-2000:]}"
    return python
