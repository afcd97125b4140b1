"""The compiled bundle: `pipeline.yaml` plus one papermill-ready notebook per step, plain files anyone can read.

A step notebook holds, in order: the parameters cell (tagged `parameters`, plus `mlops_artifacts`, the folder or
fsspec URL where steps exchange values), the setup cells, a cell loading its inputs, the step's own cells, and a
cell saving the outputs later steps read. Run alone with plain papermill, step by step in the bundle's order with
the same `-p mlops_artifacts DIR`, it behaves as in `jupyter-mlops run`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .files import write_atomic, write_notebook
from .pipeline import Pipeline, Step, _source

ARTIFACTS_PARAMETER = "mlops_artifacts"


_OWN_MAGIC = re.compile(r"^(\s*)(%mlops\b|%load_ext\s+jupyter_mlops\b|%reload_ext\s+jupyter_mlops\b)",
                        re.MULTILINE)


def _code(source: str) -> str:
    """A cell's code for a step: `%mlops` lines are left out, or a step would start the pipeline again."""
    return _OWN_MAGIC.sub(r"\1# (not run inside the pipeline) \2", source)


def step_filename(position: int, step: Step) -> str:
    return f"{position + 1:02d}-{step.name}.ipynb"


def _cell(kind: str, source: str, origin: int | None = None, tags: list[str] | None = None) -> dict:
    metadata: dict[str, Any] = {"mlops": {"source_cell": origin + 1} if origin is not None else {"generated": True}}
    if tags:
        metadata["tags"] = tags
    cell = {"cell_type": kind, "metadata": metadata, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def step_notebook(pipeline: Pipeline, step: Step) -> Any:
    """The papermill-ready notebook of one step. Built as plain dicts and validated once, when written: nbformat's
    `new_code_cell` validates every cell, ~6 ms each, most of a `compile`."""
    import nbformat

    cells = pipeline.cells
    where = ", ".join(str(c + 1) for c in step.cells)
    inputs = ", ".join(f"`{n}` from `{p}`" for n, p in step.inputs.items()) or "none"
    nb_cells = [_cell("markdown", f"# Step `{step.name}` ({step.kind})\n\nCompiled by jupyter-mlops from cells "
                                  f"{where} of `{os.path.basename(pipeline.notebook)}`; inputs: {inputs}. "
                                  "Edit the source notebook and recompile rather than this file.")]
    params = _source(cells[pipeline.parameters_cell]) if pipeline.parameters_cell is not None else ""
    params = (params.rstrip() + "\n" if params.strip() else "") + \
        f'{ARTIFACTS_PARAMETER} = "artifacts"  # where steps save and load values: a folder or an fsspec URL\n'
    nb_cells.append(_cell("code", params, pipeline.parameters_cell, ["parameters"]))
    nb_cells += [_cell("code", _code(_source(cells[i])), i) for i in pipeline.setup_cells]
    load = list(dict.fromkeys(step.imports.values()))
    if step.inputs:
        names = ", ".join(step.inputs) + ("," if len(step.inputs) == 1 else "")
        load += ["from jupyter_mlops.artifacts import load_inputs",
                 f"{names} = load_inputs({ARTIFACTS_PARAMETER}, {json.dumps(step.inputs)})"]
    if load:
        nb_cells.append(_cell("code", "# inputs from upstream steps\n" + "\n".join(load)))
    nb_cells += [_cell("code", _code(_source(cells[i])), i) for i in step.cells]
    if step.metrics:  # Kale's pipeline-metrics cell: the variables it names become metrics
        logged = ", ".join(f"{n}={n}" for n in step.metrics)
        nb_cells.append(_cell("code", f"from jupyter_mlops import log_metrics\nlog_metrics({logged})"))
    if step.outputs:
        values = ", ".join(f'"{n}": {n}' for n in step.outputs)
        nb_cells.append(_cell("code", "# outputs for downstream steps\nfrom jupyter_mlops.artifacts import "
                                      f"save_outputs\nsave_outputs({ARTIFACTS_PARAMETER}, \"{step.name}\", "
                                      f"{{{values}}})"))
    for position, cell in enumerate(nb_cells):
        cell["id"] = f"{step.name[:50]}-{position}"  # stable: the same notebook compiles to the same bytes
    kernelspec = {"name": pipeline.kernel_name, "display_name": pipeline.kernel_name, "language": "python"}
    return nbformat.from_dict({
        "nbformat": 4, "nbformat_minor": 5, "cells": nb_cells,
        "metadata": {"kernelspec": kernelspec, "mlops": {"step": step.name, "kind": step.kind,
                                                         "notebook": pipeline.notebook,
                                                         "notebook_hash": pipeline.notebook_hash}}})


def code_fingerprint(nb: Any) -> str:
    """What a step's result depends on besides its inputs and parameter values: the code it runs. The parameters
    cell is left out: the values of the parameters a step reads are part of its fingerprint instead."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def compile_pipeline(pipeline: Pipeline, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the bundle; returns {step name: path of its notebook}."""
    import yaml

    out = Path(out_dir)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    description = pipeline.to_dict()
    for position, step in enumerate(pipeline.steps):
        nb = step_notebook(pipeline, step)
        path = out / "steps" / step_filename(position, step)
        write_notebook(nb, path, validate=False)  # made to the schema by step_notebook
        paths[step.name] = path
        entry = description["steps"][position]
        entry["notebook"] = f"steps/{path.name}"
        entry["code_fingerprint"] = code_fingerprint(nb)
    description["artifacts_parameter"] = ARTIFACTS_PARAMETER
    write_atomic(out / "pipeline.yaml",
                 "# Compiled by jupyter-mlops; run the step notebooks in this order with papermill, passing the "
                 f"same -p {ARTIFACTS_PARAMETER} DIR\n" + yaml.safe_dump(description, sort_keys=False, width=120))
    return paths
