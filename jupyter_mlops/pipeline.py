"""From a tagged notebook to a validated pipeline: steps, their data edges, inputs, outputs and parameters.

A step depends on the earlier steps that last bound the names it reads; those names are its inputs. Names bound by
an `import` are not marshalled: the consumer repeats the import. Every mistake is collected with its cell number
and a fix, and reported together before anything runs.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tags as T
from .analysis import KERNEL_NAMES, CellNames, analyze_source, reported_names
from .errors import NotebookError, Problem
from .parameters import Parameter, read_parameters


@dataclass
class Step:
    name: str
    kind: str  # data | train | evaluate | serve | metrics | custom
    cells: list[int] = field(default_factory=list)  # 0-based indices into the source notebook
    after: list[str] = field(default_factory=list)  # explicit `after:` dependencies
    inputs: dict[str, str] = field(default_factory=dict)  # name -> producing step
    imports: dict[str, str] = field(default_factory=dict)  # name -> import statement repeated from upstream
    outputs: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)  # parameters this step reads itself
    depends_on: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # Kale `pipeline-metrics`: names logged as metrics
    pod: dict[str, dict[str, str]] = field(default_factory=dict)  # Kale's limit:/annotation:/label: tags

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "cells": [c + 1 for c in self.cells],
               "depends_on": self.depends_on, "inputs": self.inputs, "imports": self.imports,
               "outputs": self.outputs, "parameters": self.parameters, "metrics": self.metrics}
        if self.pod:
            out["pod"] = self.pod
        return out


@dataclass
class Pipeline:
    notebook: str
    notebook_hash: str
    kernel_name: str
    cells: list[dict]  # the source notebook's cells (nbformat nodes)
    parameters: dict[str, Parameter]
    parameters_cell: int | None
    setup_cells: list[int]
    setup_parameters: list[str]  # parameters the setup code reads: they reach every step
    steps: list[Step]  # in a valid execution order
    warnings: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the notebook's own `mlops` metadata (e.g. data_checks: strict)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(dep, s.name) for s in self.steps for dep in s.depends_on]

    def downstream(self, names: set[str]) -> set[str]:
        """The given steps and every step that depends on them, directly or not."""
        out = set(names)
        for step in self.steps:  # topological order: one pass suffices
            if any(d in out for d in step.depends_on):
                out.add(step.name)
        return out

    def reached_by(self, parameter_names: set[str]) -> set[str]:
        """Steps whose result can change with these parameters; the others can be shared across a sweep."""
        if set(self.setup_parameters) & parameter_names:
            return {s.name for s in self.steps}
        return self.downstream({s.name for s in self.steps if set(s.parameters) & parameter_names})

    def logged_metrics(self) -> set[str] | None:
        """Metric names the steps log with `log_metrics(name=...)`; None when a call hides them (`**values`)."""
        names, hidden = self._metric_calls()
        return None if hidden else names

    def _metric_calls(self) -> tuple[set[str], bool]:
        """The metric names the steps log (Kale's `pipeline-metrics` names and `log_metrics(name=...)` keywords),
        and whether some call hides its names (`log_metrics(**values)`)."""
        import ast

        from .analysis import to_python

        names, hidden = {m for s in self.steps for m in s.metrics}, False
        for step in self.steps:
            for i in step.cells:
                try:
                    tree = ast.parse(to_python(_source(self.cells[i])))
                except SyntaxError:
                    continue
                for node in ast.walk(tree):
                    func = getattr(node, "func", None)
                    called = getattr(func, "id", None) or getattr(func, "attr", None)
                    if isinstance(node, ast.Call) and called == "log_metrics":
                        hidden |= bool(node.args) or any(k.arg is None for k in node.keywords)
                        names |= {k.arg for k in node.keywords if k.arg is not None}
        return names, hidden

    def to_dict(self) -> dict:
        return {
            "notebook": self.notebook, "notebook_hash": self.notebook_hash, "kernel": self.kernel_name,
            "parameters": {n: p.to_dict() for n, p in self.parameters.items()},
            "setup_cells": [c + 1 for c in self.setup_cells], "setup_parameters": self.setup_parameters,
            "steps": [s.to_dict() for s in self.steps],
            "edges": [list(e) for e in self.edges],
            "metrics": sorted(self._metric_calls()[0]),  # what the notebook logs, as far as its code says
        }


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _snippet(cell: dict) -> str:
    for line in _source(cell).splitlines():
        if line.strip() and not line.strip().startswith("#"):
            line = line.strip()
            return f"`{line[:40]}{'...' if len(line) > 40 else ''}`"
    return "`(empty)`"


def notebook_hash(cells: list[dict]) -> str:
    """Hash of what defines the pipeline (code and tags), not of outputs: re-executing keeps the hash."""
    digest = hashlib.sha256()
    for cell in cells:
        if cell.get("cell_type") == "code":
            tags = cell.get("metadata", {}).get("tags", [])
            digest.update(json.dumps([_source(cell), tags]).encode())
    return digest.hexdigest()


def read_notebook(path: str | os.PathLike) -> Any:
    import warnings

    import nbformat  # lazy: nbformat pulls in jsonschema

    from .errors import MlopsError

    path = Path(path)
    if not path.is_file():
        raise MlopsError(f"notebook {path} not found; give the path of an .ipynb file")
    try:
        with warnings.catch_warnings():
            # notebooks saved by older front ends have cells without ids: nbformat warns on every read, and there
            # is nothing for the user to do about it here (we never write their notebook)
            warnings.filterwarnings("ignore", message="Cell is missing an id field")
            return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for unreadable files
        raise MlopsError(f"{path} is not a readable notebook ({exc}); open and save it in JupyterLab") from None


HOW_TO_TAG = ("tag cells with `data`, `train`, `evaluate`, `serve` or `step:NAME` (JupyterLab: select a cell, "
              "open the right sidebar, Common Tools, Cell Tags, add the tag); cells below a tagged cell join its "
              "step, `setup` cells run before every step, the `parameters` cell holds the parameters")


def build_pipeline(path: str | os.PathLike, nb: Any = None) -> Pipeline:
    """Analyse a tagged notebook; raise NotebookError listing every problem with its cell and fix."""
    nb = nb if nb is not None else read_notebook(path)
    cells = nb.cells
    problems: list[Problem] = []
    warnings: list[str] = []
    parameters: dict[str, Parameter] = {}
    parameters_cell: int | None = None
    setup_cells: list[int] = []
    steps: dict[str, Step] = {}
    order: list[Step] = []
    loose: list[int] = []  # untagged cells that belong to no step
    # role of the nearest tagged cell above that is not `skip`: a step name, "setup" or "parameters". A skipped cell
    # is passed over (Kale's rule, and what running the notebook top to bottom does), so cells below it continue
    # the step above it.
    current: str | None = None
    skipped: list[int] = []  # skipped cells since the last code cell that took part in the pipeline
    across: list[tuple[str, list[int], int]] = []  # (step, skipped cells, the cell that joined it across them)

    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        number, snippet = index + 1, _snippet(cell)
        role, found, notes = T.read_cell_tags(cell.get("metadata", {}).get("tags", []), number, snippet)
        problems += found
        warnings += notes
        if role.role == "skip":
            skipped.append(number)
            continue
        if role.role == "parameters":
            skipped = []
            if parameters_cell is not None:
                problems.append(Problem(f"a second cell tagged `parameters` (the first is cell {parameters_cell + 1})",
                                        cell=number, snippet=snippet,
                                        fix="merge the two into one parameters cell; papermill injects values "
                                            "after exactly one"))
                continue
            parameters_cell, current = index, "parameters"
            parameters, found = read_parameters(_source(cell), number)
            problems += found
            continue
        if role.role == "continue":
            if current in (None, "parameters"):
                if _source(cell).strip():
                    loose.append(number)
                continue
            if skipped and _source(cell).strip():
                across.append((current, skipped, number))
            role = T.CellRole("setup") if current == "setup" else \
                T.CellRole("step", current, None, role.after, role.pod)
        if _source(cell).strip():
            skipped = []
        if role.role == "setup":
            setup_cells.append(index)
        elif role.role == "step":
            step = steps.get(role.step)
            if step is None:
                step = steps[role.step] = Step(role.step, role.kind)
                order.append(step)
            step.cells.append(index)
            step.after += [a for a in role.after if a not in step.after]
            for kind, values in role.pod.items():
                step.pod.setdefault(kind, {}).update(values)
        current = role.step if role.role == "step" else role.role

    for name, skipped_cells, joined in across:
        where = "setup" if name == "setup" else f"step `{name}`"
        warnings.append(f"cell {joined} joins {where} across the skipped cell(s) {', '.join(map(str, skipped_cells))} "
                        "(a `skip` cell is passed over, as in Kale and when the notebook runs top to bottom); tag "
                        f"cell {joined} to put it elsewhere")
    if loose:
        listed = ", ".join(map(str, loose))
        warnings.append(f"cells {listed} are not part of the pipeline (untagged, above any step or right after the "
                        "parameters cell); tag them `setup` to run them before every step, a step tag, or `skip`")
    hinted = [s for s in order if s.pod]
    if hinted:
        warnings.append("pod hints (" + "; ".join(f"step `{s.name}`: {T.pod_hints_text(s.pod)}" for s in hinted) +
                        ") apply when the pipeline runs on Kubernetes (`--backend kubernetes` or `kfp`, `export k8s` "
                        "or `kfp`; on Kubeflow Pipelines each step's own); local runs ignore them")
    if not order:
        problems.append(Problem("no cell is tagged as a pipeline step", fix=HOW_TO_TAG))

    names = {i: analyze_source(_source(cells[i])) for s in order for i in s.cells}
    names.update({i: analyze_source(_source(cells[i])) for i in setup_cells})
    for i, result in names.items():
        if result.syntax_error:
            problems.append(Problem(f"the cell does not parse ({result.syntax_error})", cell=i + 1,
                                    snippet=_snippet(cells[i]), fix="fix the syntax; it must run as a notebook cell"))

    # setup: runs first in every step; what it binds is available everywhere
    setup_bound: set[str] = set()
    setup_parameters: set[str] = set()
    star = False
    for i in setup_cells:
        result = names[i]
        star = star or bool(result.star_imports)
        for name in result.star_imports:
            warnings.append(f"cell {i + 1}: `from {name} import *` hides which names it defines; names it provides "
                            "cannot be checked (import them by name to get full checking)")
        for name in result.reads:
            if name in parameters:
                setup_parameters.add(name)
            elif name not in setup_bound and name not in KERNEL_NAMES and not star:
                problems.append(Problem(f"setup code reads `{name}`, which no earlier setup cell or parameter "
                                        "defines", cell=i + 1, snippet=_snippet(cells[i]),
                                        fix=f"define `{name}` in a setup cell above, or add it to the parameters"))
        setup_parameters |= result.deferred & set(parameters)
        setup_bound |= set(result.writes)

    _resolve_steps(order, names, cells, parameters, setup_bound, star, problems, warnings)
    for step in order:
        if all(not _code_lines(_source(cells[i])) for i in step.cells):
            # Kale accepts it (a placeholder step, or one a `skip` emptied): it runs and does nothing
            warnings.append(f"step `{step.name}` (cells {', '.join(str(i + 1) for i in step.cells)}) has no code: "
                            "it runs and does nothing; put code in its cells or remove its tag")
        if step.kind == "serve" and not any("predict" in names[i].functions or "predict" in names[i].writes
                                            for i in step.cells):
            problems.append(Problem("the `serve` step defines no `predict` function", cell=step.cells[0] + 1,
                                    snippet=_snippet(cells[step.cells[0]]),
                                    fix="define `def predict(X):` returning predictions in the serve step; the "
                                        "model server calls it"))

    known = {s.name for s in order}
    for step in order:
        for dep in step.after:
            if dep not in known:
                close = difflib.get_close_matches(dep, known, n=1)
                problems.append(Problem(f"`after:{dep}` names no step", cell=step.cells[0] + 1,
                                        snippet=_snippet(cells[step.cells[0]]),
                                        fix=(f"did you mean `after:{close[0]}`? " if close else "") +
                                            f"the steps are: {', '.join(sorted(known))}"))
            elif dep != step.name and dep not in step.depends_on:
                step.depends_on.append(dep)
    ordered = _topological(order, cells, problems)

    nb_path = str(path)
    if problems:
        raise NotebookError(nb_path, problems)
    kernel = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    return Pipeline(nb_path, notebook_hash(cells), kernel, list(cells), parameters, parameters_cell, setup_cells,
                    sorted(setup_parameters), ordered, warnings, _settings(nb))


def _settings(nb) -> dict:
    """The notebook's own `mlops` metadata: settings it asks for itself (e.g. {"data_checks": "strict"})."""
    found = nb.metadata.get("mlops")
    return dict(found) if isinstance(found, dict) else {}


def _code_lines(source: str) -> list[str]:
    return [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _resolve_steps(order: list[Step], names: dict[int, CellNames], cells: list, parameters: dict,
                   setup_bound: set[str], star: bool, problems: list[Problem], warnings: list[str]) -> None:
    """Link each name a step reads to the earlier step that last bound it (notebook order)."""
    bound_by: dict[str, tuple[str, str | None]] = {}  # name -> (step, import statement or None)
    deleted_by: dict[str, str] = {}
    for step in order:
        local: set[str] = set()
        reads: list[tuple[str, int]] = []
        deferred: set[str] = set()
        for i in step.cells:
            result = names[i]
            reads += [(n, i) for n in result.reads if n not in local]
            deferred |= result.deferred
            local |= set(result.writes)
            local -= result.deletes
            if result.star_imports:
                warnings.append(f"cell {i + 1}: `from {', '.join(result.star_imports)} import *` hides which "
                                "names it defines (import them by name to get full checking)")
            if step.kind == "metrics":  # the names it shows, as Kale reads it (not every name it reads: a model)
                step.metrics += [n for n in reported_names(_source(cells[i]))
                                 if n not in step.metrics and n not in KERNEL_NAMES]
        if step.kind == "metrics" and not step.metrics and any(_code_lines(_source(cells[i])) for i in step.cells):
            warnings.append(f"cell {step.cells[0] + 1} is tagged `pipeline-metrics` but shows no metric, so none is "
                            "logged: end it with `print(name)` (or a bare `name`) for each metric, as Kale reads it")
        for name, i in reads:
            if name in bound_by:
                producer, statement = bound_by[name]
                if statement is not None:
                    step.imports[name] = statement
                else:
                    step.inputs[name] = producer
            elif name in deleted_by:
                problems.append(Problem(f"step `{step.name}` reads `{name}`, but step `{deleted_by[name]}` "
                                        f"deleted it with `del {name}`", cell=i + 1, snippet=_snippet(cells[i]),
                                        fix=f"remove `del {name}` or stop reading `{name}` here"))
            elif name in parameters:
                if name not in step.parameters:
                    step.parameters.append(name)
            elif name not in setup_bound and name not in KERNEL_NAMES and not star:
                problems.append(Problem(
                    f"step `{step.name}` reads `{name}`, which no earlier step, setup cell or parameter defines",
                    cell=i + 1, snippet=_snippet(cells[i]),
                    fix=f"define `{name}` in an earlier step (move its cell up), tag the cell that imports or "
                        f"defines it `setup`, or add `{name}` to the parameters cell"))
        for name in sorted(deferred - local):  # globals used inside functions: linked when known, never errors
            if name in bound_by and bound_by[name][1] is None:
                step.inputs.setdefault(name, bound_by[name][0])
            elif name in bound_by:
                step.imports.setdefault(name, bound_by[name][1])
            elif name in parameters and name not in step.parameters:
                step.parameters.append(name)
        for i in step.cells:
            for name, statement in names[i].writes.items():
                bound_by[name] = (step.name, statement)
                deleted_by.pop(name, None)
            for name in names[i].deletes:
                bound_by.pop(name, None)
                deleted_by[name] = step.name
        step.inputs = {n: p for n, p in step.inputs.items() if p != step.name}
    by_name = {s.name: s for s in order}
    for step in order:
        if step.kind == "serve" and "predict" not in step.outputs:
            step.outputs.append("predict")  # saved (with what it reads) for the model registry
        for name, producer in step.inputs.items():
            if name not in by_name[producer].outputs:
                by_name[producer].outputs.append(name)
            if producer not in step.depends_on:
                step.depends_on.append(producer)


def _topological(order: list[Step], cells: list, problems: list[Problem]) -> list[Step]:
    """Steps in an order that respects every edge (notebook order breaks ties); a cycle is a Problem."""
    by_name = {s.name: s for s in order}
    done: list[Step] = []
    placed: set[str] = set()
    remaining = list(order)
    while remaining:
        ready = next((s for s in remaining if all(d in placed or d not in by_name for d in s.depends_on)), None)
        if ready is None:
            cycle = _find_cycle(remaining, by_name)
            first = by_name[cycle[0]]
            problems.append(Problem("steps depend on each other in a cycle: " + " -> ".join(cycle),
                                    cell=first.cells[0] + 1, snippet=_snippet(cells[first.cells[0]]),
                                    fix="remove one of the `after:` tags in the cycle, or move the cell that "
                                        "defines a shared name into the earlier step"))
            return done + remaining
        done.append(ready)
        placed.add(ready.name)
        remaining.remove(ready)
    return done


def _find_cycle(remaining: list[Step], by_name: dict[str, Step]) -> list[str]:
    start = remaining[0].name
    path, seen = [start], {start}
    while True:
        nxt = next(d for d in by_name[path[-1]].depends_on if d in {s.name for s in remaining})
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)
