"""The cell-tag grammar: what role each code cell plays in the pipeline.

Our tags: ``parameters``, ``setup`` (also ``imports``, ``functions``), the step kinds ``data``, ``train``,
``evaluate``, ``serve``, ``step:NAME``, ``after:NAME`` and ``skip``. Kale's tags are read as their equivalents
(``block:NAME`` -> ``step:NAME``, ``prev:NAME`` -> ``after:NAME``, ``pipeline-parameters`` -> ``parameters``,
``pipeline-metrics`` -> a metrics step), so a Kale-tagged notebook runs unchanged.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from .errors import Problem

STEP_KINDS = ("data", "train", "evaluate", "serve")
SETUP_TAGS = ("setup", "imports", "functions")
PARAMETERS_TAGS = ("parameters", "pipeline-parameters")
METRICS_TAG = "pipeline-metrics"
METRICS_STEP = "pipeline_metrics"

# Tags other tools put on cells; they say nothing about the pipeline, so they are not mistakes.
_FOREIGN_EXACT = {"injected-parameters", "raises-exception", "thebe-init", "full-width", "margin", "scroll-output",
                  "output_scroll", "hide_input", "hide_output", "remove_cell", "remove_input", "remove_output"}
_FOREIGN_PREFIXES = ("hide-", "remove-", "nbval-", "jupyter-book-", "nbsphinx-")
# Kale's Kubernetes hints: meaningful on Kubeflow, nothing to do for the local engine.
_KALE_IGNORED_PREFIXES = ("limit:", "annotation:", "label:")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ALL_TAGS = (*PARAMETERS_TAGS, *SETUP_TAGS, *STEP_KINDS, METRICS_TAG, "skip", "step:NAME", "after:NAME",
            "block:NAME", "prev:NAME")


@dataclass(frozen=True)
class CellRole:
    """What one code cell is: ``parameters``, ``setup``, ``skip``, ``step`` (starts or joins a named step) or
    ``continue`` (untagged: belongs to the step above). ``after`` lists explicit dependencies of its step."""

    role: str
    step: str | None = None
    kind: str | None = None
    after: tuple[str, ...] = field(default_factory=tuple)


def _is_foreign(tag: str) -> bool:
    return tag in _FOREIGN_EXACT or tag.startswith(_FOREIGN_PREFIXES + _KALE_IGNORED_PREFIXES)


def _suggest(tag: str) -> str:
    close = difflib.get_close_matches(tag, [t.replace(":NAME", ":") for t in ALL_TAGS], n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return (f"{hint}known tags: {', '.join(ALL_TAGS)}; remove the tag or fix its spelling "
            "(JupyterLab: right sidebar, Common Tools, Cell Tags)")


def _step_name(tag: str, prefix: str, cell: int, snippet: str, problems: list[Problem]) -> str | None:
    name = tag[len(prefix):].strip()
    if _NAME.match(name):
        return name
    problems.append(Problem(f"tag `{tag}` has no valid step name", cell=cell, snippet=snippet,
                            fix=f"write it as `{prefix}NAME` with NAME made of letters, digits, `_` or `-`, "
                                f"starting with a letter (e.g. `{prefix}features`)"))
    return None


def read_cell_tags(tags: list[str], cell: int, snippet: str = "") -> tuple[CellRole, list[Problem]]:
    """Turn one cell's tags into its role; every unknown or conflicting tag becomes a Problem."""
    problems: list[Problem] = []
    roles: list[tuple[str, str | None, str | None, str]] = []  # (role, step, kind, tag as written)
    after: list[str] = []
    for raw in tags or []:
        tag = str(raw).strip()
        if not tag:
            continue
        if tag in PARAMETERS_TAGS:
            roles.append(("parameters", None, None, tag))
        elif tag in SETUP_TAGS:
            roles.append(("setup", None, None, tag))
        elif tag == "skip":
            roles.append(("skip", None, None, tag))
        elif tag in STEP_KINDS:
            roles.append(("step", tag, tag, tag))
        elif tag == METRICS_TAG:
            roles.append(("step", METRICS_STEP, "metrics", tag))
        elif tag.startswith(("step:", "block:")):
            prefix = tag.split(":", 1)[0] + ":"
            name = _step_name(tag, prefix, cell, snippet, problems)
            if name:
                roles.append(("step", name, name if name in STEP_KINDS else "custom", tag))
        elif tag.startswith(("after:", "prev:")):
            prefix = tag.split(":", 1)[0] + ":"
            name = _step_name(tag, prefix, cell, snippet, problems)
            if name:
                after.append(name)
        elif _is_foreign(tag):
            continue
        else:
            problems.append(Problem(f"unknown tag `{tag}`", cell=cell, snippet=snippet, fix=_suggest(tag)))

    # Kale writes `block:train` on every cell of a step; the same step named twice on one cell is not a conflict.
    distinct = {(r, s) for r, s, _, _ in roles}
    if len(distinct) > 1:
        written = ", ".join(f"`{t}`" for *_, t in roles)
        problems.append(Problem(f"tags {written} give this cell more than one role", cell=cell, snippet=snippet,
                                fix="keep one of them; split the cell if it really does two jobs"))
    if not roles:
        return CellRole("continue", after=tuple(after)), problems
    role, step, kind, _ = roles[0]
    if after and role in ("parameters", "setup", "skip"):
        problems.append(Problem(f"`after:`/`prev:` on a {role} cell has no effect", cell=cell, snippet=snippet,
                                fix="put `after:NAME` on a cell of the step that must wait for NAME"))
    return CellRole(role, step, kind, tuple(after)), problems
