"""`jupyter-mlops build`: the build context holds only what the notebook needs, and a real podman image built from
it runs a pipeline step, and the whole pipeline, with no network, as a non-root user."""
from __future__ import annotations

import json
import os
import shutil
import sys

import pytest



from conftest import EXAMPLES, PIP_SECRET_MARKER, cli


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


# -- a real image, built with podman (the session's `digits_image` in conftest.py, by this CLI command) ---------
def test_a_real_image_runs_a_step_and_the_pipeline_offline_as_non_root(digits_image):
    tag, run, built = digits_image
    assert f"built {tag} with podman" in built and " MB" in built

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


def test_pips_settings_are_not_kept_in_the_image(digits_image):
    """Issue 14, item 13: PIP_CERT and PIP_INDEX_URL were build arguments, kept in the image's history."""
    tag, run, _ = digits_image
    history = run("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
    inspected = run("image", "inspect", tag)
    assert history.returncode == 0 and inspected.returncode == 0
    for text in (history.stdout, inspected.stdout):
        assert PIP_SECRET_MARKER not in text and "host-ca.crt" not in text and "PIP_INDEX_URL" not in text
    assert "--mount=type=secret" in history.stdout  # the build did get pip's settings, as a secret
    environment = run("run", "--rm", "--network", "none", tag, "env")
    assert PIP_SECRET_MARKER not in environment.stdout and "PIP_CERT" not in environment.stdout
