"""`jupyter-mlops build`: the build context holds only what the notebook needs, and a real podman image built from
it runs a pipeline step, and the whole pipeline, with no network, as a non-root user."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES

CONTAINER_STATE = Path("/var/tmp/jupyter-mlops-test-containers")  # images kept between runs: rebuilt only if gone
BASE_IMAGE = "localhost/mlops-test-python:bookworm"


def cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image")
    shutil.copy(EXAMPLES / "digits.ipynb", folder / "digits.ipynb")
    done = cli("build", str(folder / "digits.ipynb"), "--context-only", "-o", str(folder / "context"))
    assert done.returncode == 0, done.stderr
    return folder / "context"


def test_the_context_holds_only_what_the_notebook_needs(context):
    pins = dict(line.split("==") for line in (context / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for needed in ("scikit-learn", "numpy", "pandas", "papermill", "ipykernel", "pyarrow", "sqlalchemy"):
        assert needed in pins, needed
    # installed here (tests, the panel), never imported by the notebook: not in the image
    for unwanted in ("optuna", "jupyterlab", "jupyter-server", "playwright", "hypothesis", "pytest",
                     "kubernetes-validate", "jupyter-mlops"):
        assert unwanted not in pins, unwanted
    assert all(version for version in pins.values())  # every requirement pinned
    assert [p.name for p in (context / "wheels").iterdir()] == ["jupyter_mlops-0.1.0-py3-none-any.whl"]
    assert sorted(p.name for p in (context / "bundle" / "steps").iterdir()) == [
        "01-data.ipynb", "02-train.ipynb", "03-evaluate.ipynb", "04-serve.ipynb"]
    dockerfile = (context / "Dockerfile").read_text()
    assert "USER 1000:1000" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile


def test_no_builder_says_to_use_context_only(tmp_path):
    shutil.copy(EXAMPLES / "digits.ipynb", tmp_path / "digits.ipynb")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    done = cli("build", str(tmp_path / "digits.ipynb"), env={**os.environ, "PATH": str(bare)})
    assert done.returncode == 1 and "--context-only" in done.stderr and "no image builder" in done.stderr
    assert cli("build", str(tmp_path / "digits.ipynb"), "--context-only").returncode == 1  # needs -o


# -- a real image, built with podman ------------------------------------------------------------------------------
def _podman_env(tmp: Path) -> dict:
    """podman as it works on these machines (../shared/ENVIRONMENT.md): runc, cgroupfs, overlay, raised ulimits."""
    conf, storage = tmp / "containers.conf", tmp / "storage.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{CONTAINER_STATE}/graph"\n'
                       f'runroot = "{CONTAINER_STATE}/run"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


@pytest.fixture(scope="module")
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


def test_a_real_image_runs_a_step_and_the_pipeline_offline_as_non_root(podman, tmp_path):
    env, run = podman
    shutil.copy(EXAMPLES / "digits.ipynb", tmp_path / "digits.ipynb")
    tag = "localhost/mlops-test-digits:latest"
    # pip inside the build reaches the package index through the host's network and CA bundle
    done = cli("build", str(tmp_path / "digits.ipynb"), "--tag", tag, "--base-image", BASE_IMAGE,
               "--builder", "podman", "--builder-arg=--network=host", "--builder-arg=--isolation=chroot",
               "--builder-arg=--volume=/etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro",
               "--builder-arg=--build-arg=PIP_CERT=/host-ca.crt", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"built {tag} with podman" in done.stdout and " MB" in done.stdout

    offline = ["run", "--rm", "--network", "none", tag]
    user = run(*offline, "id", "-u")
    assert user.stdout.strip() == "1000", user.stderr
    step = run(*offline, "papermill", "/opt/mlops/bundle/steps/01-data.ipynb", "/tmp/data.ipynb",
               "-p", "mlops_artifacts", "/tmp/artifacts", "-p", "test_size", "0.3", "--log-output")
    assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
    pipeline = run(*offline, "jupyter-mlops", "run", "/opt/mlops/notebook/digits.ipynb", "--workspace", "/tmp/ws",
                   "-p", "C", "2", "--json")
    assert pipeline.returncode == 0, pipeline.stdout[-3000:] + pipeline.stderr[-3000:]
    result = json.loads(pipeline.stdout)
    assert result["status"] == "succeeded" and result["metrics"]["accuracy"] > 0.9 and result["params"]["C"] == 2.0
