"""Pipeline parameters: read from the `parameters` cell (defaults and inferred types) and checked before a run."""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError, Problem, a

_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict", tuple: "list",
          type(None): "none"}
_ANNOTATIONS = {"bool": "bool", "int": "int", "float": "float", "str": "str", "list": "list", "dict": "dict"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # bool | int | float | str | list | dict | none | any
    default: Any  # the literal value, or None when the default is an expression
    source: str  # the default as written in the cell
    help: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "source": self.source,
                "help": self.help}


def read_parameters(source: str, cell: int) -> tuple[dict[str, Parameter], list[Problem]]:
    """Parse `name = literal  # help` lines; an expression default is allowed but its type is `any`."""
    from .analysis import to_python

    problems: list[Problem] = []
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError as exc:
        return {}, [Problem(f"the parameters cell does not parse (line {exc.lineno}: {exc.msg})", cell=cell,
                            fix="fix the syntax; a parameters cell holds lines like `C = 1.0`")]
    lines = source.splitlines()
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value, annotation = node.targets[0], node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value, annotation = node.target, node.value, ast.unparse(node.annotation)
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue
        else:
            problems.append(Problem(f"`{ast.unparse(node).splitlines()[0]}` is not a parameter assignment",
                                    cell=cell, fix="a parameters cell holds only `NAME = value` lines; move other "
                                                   "code to a `setup` or step cell"))
            continue
        text = ast.get_source_segment(to_python(source), value) or ast.unparse(value)
        try:
            default = ast.literal_eval(value)
            kind = _TYPES.get(type(default), "any")
            if isinstance(default, tuple):
                default = list(default)
        except ValueError:
            default, kind = None, "any"
        if annotation in _ANNOTATIONS:
            kind = _ANNOTATIONS[annotation]
        line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        params[target.id] = Parameter(target.id, kind, default, text, help_text)
    return params, problems


def _coerce(param: Parameter, value: Any) -> Any:
    kind = param.type
    if not isinstance(value, str):  # from the Python API: check the type, don't parse
        ok = {"bool": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": False, "list": isinstance(value, (list, tuple)), "dict": isinstance(value, dict)}
        if kind in ("any", "none") or ok.get(kind):
            return float(value) if kind == "float" else (list(value) if kind == "list" else value)
        raise ValueError
    if kind == "str":
        return value
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    parsed = json.loads(value) if kind in ("list", "dict") else _literal_or_text(value)
    if kind == "list" and not isinstance(parsed, list) or kind == "dict" and not isinstance(parsed, dict):
        raise ValueError
    return parsed


def _literal_or_text(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


_EXAMPLES = {"bool": "true", "int": "3", "float": "0.5", "list": "'[1, 2]'", "dict": "'{\"a\": 1}'"}


def coerce_parameters(declared: dict[str, Parameter], given: dict[str, Any]) -> dict[str, Any]:
    """Typed values for the given parameters; an unknown name or a wrong type raises before anything runs."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none: the notebook has no cell tagged `parameters`"
            raise ParameterError(f"unknown parameter `{name}`; the notebook's parameters are: {known}. "
                                 "Add it to the cell tagged `parameters` or fix the name.")
        param = declared[name]
        try:
            out[name] = _coerce(param, value)
        except (ValueError, TypeError, json.JSONDecodeError):
            example = _EXAMPLES.get(param.type, "a value")
            raise ParameterError(f"parameter `{name}` is {param.type} (default {param.source}) but got {value!r}; "
                                 f"pass {a(param.type)}, e.g. -p {name} {example}") from None
    return out
