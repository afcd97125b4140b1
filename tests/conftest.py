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
