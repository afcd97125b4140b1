"""The cell-tag grammar: what role each code cell plays in the pipeline.

Our tags: ``parameters``, ``setup`` (also ``imports``, ``functions``), the step kinds ``data``, ``train``,
``evaluate``, ``serve``, ``step:NAME``, ``after:NAME`` and ``skip``. Kale's tags are read as their equivalents
(``block:NAME`` -> ``step:NAME``, ``prev:NAME`` -> ``after:NAME``, ``pipeline-parameters`` -> ``parameters``,
``pipeline-metrics`` -> a metrics step), so a Kale-tagged notebook runs unchanged. Where Kale accepts a tag we would
read differently, the tag is accepted and a warning says what we do: an empty ``block:``/``step:`` (no step name: the
cell joins the step above, as in Kale), ``prev:`` on a cell that is not a step, a special tag beside a step tag (Kale
lets ``skip``, ``imports``, ``functions``, ``pipeline-parameters`` and ``pipeline-metrics`` win). Kale's pod hints
``limit:RESOURCE:VALUE``, ``annotation:KEY:VALUE`` and ``label:KEY:VALUE`` are kept with the step: they shape its pod
on Kubernetes and mean nothing to the local engine.
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
# Kale's pod hints: the value may hold colons (`annotation:team.io/owner:a:b`), so everything after the key is kept
POD_HINTS = {"limit": "limits", "annotation": "annotations", "label": "labels"}
_POD_HINT = re.compile(r"^(?P<kind>limit|annotation|label):(?P<key>[A-Za-z0-9][A-Za-z0-9_./-]*):(?P<value>.*)$")
_LABEL_VALUE = re.compile(r"^(?=.{0,63}$)([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# a Kubernetes resource quantity: 2, 500m, 4Gi, 1.5, 1e3
QUANTITY = re.compile(r"^(?P<number>\d+(\.\d*)?|\.\d+)(?P<suffix>[eE][+-]?\d+|[KMGTPE]i|m|k|M|G|T|P|E)?$")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ALL_TAGS = (*PARAMETERS_TAGS, *SETUP_TAGS, *STEP_KINDS, METRICS_TAG, "skip", "step:NAME", "after:NAME",
            "block:NAME", "prev:NAME", "limit:RESOURCE:VALUE", "annotation:KEY:VALUE", "label:KEY:VALUE")
# Kale's special tags: beside a step tag, the special one decides the cell's role (Kale's nbprocessor)
_SPECIAL_ROLES = ("skip", "parameters", "setup")


@dataclass(frozen=True)
class CellRole:
    """What one code cell is: ``parameters``, ``setup``, ``skip``, ``step`` (starts or joins a named step) or
    ``continue`` (untagged: belongs to the step above). ``after`` lists explicit dependencies of its step."""

    role: str
    step: str | None = None
    kind: str | None = None
    after: tuple[str, ...] = field(default_factory=tuple)
    # Kale's pod hints for this cell's step: {"limits": {"nvidia.com/gpu": "1"}, "annotations": {...}, ...}
    pod: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)


def _is_foreign(tag: str) -> bool:
    return tag in _FOREIGN_EXACT or tag.startswith(_FOREIGN_PREFIXES)


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


def read_cell_tags(tags: list[str], cell: int, snippet: str = "") -> tuple[CellRole, list[Problem], list[str]]:
    """Turn one cell's tags into its role; every unknown or conflicting tag becomes a Problem, every tag that Kale
    accepts but that means something other than it looks (or nothing here) a warning."""
    problems: list[Problem] = []
    warnings: list[str] = []
    roles: list[tuple[str, str | None, str | None, str]] = []  # (role, step, kind, tag as written)
    after: list[str] = []
    pod: dict[str, dict[str, str]] = {}
    for raw in tags or []:
        tag = str(raw).strip()
        if not tag:
            continue
        hint = _POD_HINT.match(tag)
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
        elif tag in ("step:", "block:"):
            # Kale's panel leaves an empty `block:` behind; Kale reads it as no step name: the cell joins the step
            # above. So do we, and say so, since it looks like a step of its own.
            warnings.append(f"cell {cell}: tag `{tag}` names no step, so the cell joins the step above it (as in "
                            f"Kale); write `{tag}NAME` to start a step")
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
        elif hint and hint["kind"] == "limit" and not QUANTITY.match(hint["value"]):
            problems.append(Problem(f"tag `{tag}`: `{hint['value']}` is not a Kubernetes quantity", cell=cell,
                                    snippet=snippet, fix="write a number with an optional unit, e.g. `limit:memory:4Gi`"
                                                         ", `limit:cpu:500m`, `limit:nvidia.com/gpu:1`"))
        elif hint and hint["kind"] == "label" and not _LABEL_VALUE.match(hint["value"]):
            problems.append(Problem(f"tag `{tag}`: `{hint['value']}` is not a Kubernetes label value", cell=cell,
                                    snippet=snippet, fix="at most 63 letters, digits, `-`, `_` or `.`, starting and "
                                                         "ending with a letter or digit, e.g. `label:team:vision`"))
        elif hint:
            pod.setdefault(POD_HINTS[hint["kind"]], {})[hint["key"]] = hint["value"]
        elif tag.startswith(tuple(f"{k}:" for k in POD_HINTS)):
            kind = tag.split(":", 1)[0]
            example = "limit:nvidia.com/gpu:1" if kind == "limit" else f"{kind}:team:vision"
            problems.append(Problem(f"tag `{tag}` is not `{kind}:KEY:VALUE`", cell=cell, snippet=snippet,
                                    fix=f"write e.g. `{example}` (Kale's pod hints; they apply when the pipeline "
                                        "runs on Kubernetes)"))
        elif _is_foreign(tag):
            continue
        else:
            problems.append(Problem(f"unknown tag `{tag}`", cell=cell, snippet=snippet, fix=_suggest(tag)))

    # Kale writes `block:train` on every cell of a step; the same step named twice on one cell is not a conflict.
    distinct = {(r, s) for r, s, _, _ in roles}
    special = [r for r in roles if r[0] in _SPECIAL_ROLES or r[3] == METRICS_TAG]
    if len(distinct) > 1:
        written = ", ".join(f"`{t}`" for *_, t in roles)
        if special and len({(r, s) for r, s, _, _ in special}) == 1:
            # Kale lets the special tag decide (a `skip` beside `block:train` skips the cell): accepted, and said
            warnings.append(f"cell {cell}: tags {written} give the cell more than one role; it is read as "
                            f"`{special[0][3]}`, as Kale reads it (remove the other tag to make that plain)")
            roles = special
        else:
            problems.append(Problem(f"tags {written} give this cell more than one role", cell=cell,
                                    snippet=snippet, fix="keep one of them; split the cell if it really does two jobs"))
    if not roles:
        return CellRole("continue", after=tuple(after), pod=pod), problems, warnings
    role, step, kind, written = roles[0]
    if after and role in _SPECIAL_ROLES:
        warnings.append(f"cell {cell}: `prev:`/`after:` on a `{written}` cell has no effect (Kale ignores it too); "
                        "put it on a cell of the step that must wait")
    if pod and role in _SPECIAL_ROLES:
        warnings.append(f"cell {cell}: pod hints ({pod_hints_text(pod)}) on a `{written}` cell have no effect; put "
                        "them on a cell of the step they are for")
        pod = {}
    return CellRole(role, step, kind, tuple(after), pod), problems, warnings


def pod_hints_text(pod: dict[str, dict[str, str]]) -> str:
    singular = {v: k for k, v in POD_HINTS.items()}
    return ", ".join(f"`{singular[kind]}:{k}:{v}`" for kind, values in pod.items() for k, v in values.items())
