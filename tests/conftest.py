"""Shared helpers: notebooks written on the fly from (source, tags) pairs, and an isolated workspace."""
from __future__ import annotations

import shutil
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
        import sys

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
