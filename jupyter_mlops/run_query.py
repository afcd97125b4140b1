"""The run list's filter and sort, said in words and answered by the database: `accuracy>0.9 status=failed C=10
digits` keeps the runs whose metric `accuracy` is above 0.9, whose status is `failed`, whose parameter `C` is 10
and whose id, status, notebook, sweep or schedule contains `digits`. A page of the result comes from the indexes,
however many runs the store holds (the panel's table, `jupyter-mlops runs --filter`).

A comparison names a metric, else a parameter, else a run field (status, id, duration, sweep_id, schedule);
`metrics.NAME` and `params.NAME` say which. Numbers compare as numbers, anything else as text; a run without the
value never matches, and sorts last whichever the direction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .errors import MlopsError

COMPARISON = re.compile(r"^([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*(.+)$")
FIELDS = ("status", "id", "duration", "sweep_id", "schedule", "started", "notebook")
SEARCHED = ("id", "status", "notebook", "sweep_id", "schedule")  # what a plain word is looked for in
_OPERATORS = {"=": "__eq__", "!=": "__ne__", ">": "__gt__", "<": "__lt__", ">=": "__ge__", "<=": "__le__"}
MAX_WORDS = 20


@dataclass(frozen=True)
class Term:
    """One word of a filter: a comparison (`key` is `metrics.X`, `params.X` or a field) or a plain word."""
    word: str
    key: str | None = None
    op: str | None = None
    value: Any = None


def _typed(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw


def parse(text: str, has_metric, has_param) -> list[Term]:
    """The terms of `text`; `has_metric(name)`/`has_param(name)` say whether any run has one by that name. An error
    names the word that means nothing."""
    terms = []
    words = (text or "").split()
    if len(words) > MAX_WORDS:
        raise MlopsError(f"the filter has {len(words)} words; at most {MAX_WORDS}")
    for word in words:
        match = COMPARISON.match(word)
        if not match:
            terms.append(Term(word))
            continue
        name, op, raw = match.groups()
        if name.startswith(("metrics.", "params.")):
            key = name
        elif has_metric(name):
            key = f"metrics.{name}"
        elif has_param(name):
            key = f"params.{name}"
        elif name in FIELDS:
            key = name
        else:
            raise MlopsError(f'no run has a parameter or metric named "{name}" (in "{word}"); a comparison names a '
                             f"metric, a parameter or one of {', '.join(FIELDS)}")
        value = _typed(raw)
        if key.startswith("metrics.") and not isinstance(value, float):
            raise MlopsError(f'"{word}": metrics are numbers; compare {name} with a number, e.g. {name}>0.9')
        terms.append(Term(word, key, op, value))
    return terms


def sort_key(key: str) -> str:
    if key in FIELDS or (key.startswith(("metrics.", "params.")) and len(key.split(".", 1)[1]) > 0):
        return key
    raise MlopsError(f'cannot sort by "{key}"; sort by {", ".join(FIELDS)}, params.NAME or metrics.NAME')


class Translator:
    """Terms and sort keys as SQL over the store's tables, for SQLite and PostgreSQL (parameters are JSON text)."""

    def __init__(self, runs: sa.Table, metrics: sa.Table, dialect: str):
        self.runs, self.metrics, self.dialect = runs, metrics, dialect

    def param(self, name: str, numeric: bool) -> sa.ColumnElement:
        """The parameter's value in a run's JSON; `numeric`: only where it is a JSON number (else NULL), so a text
        value never compares with a number."""
        params = self.runs.c.params
        if self.dialect == "sqlite":
            path = f'$."{name}"'
            value = sa.func.json_extract(params, path)
            return sa.case((sa.func.json_type(params, path).in_(("integer", "real")), value)) if numeric else value
        from sqlalchemy.dialects.postgresql import JSONB

        node = sa.cast(params, JSONB)[name]
        if numeric:
            return sa.case((sa.func.jsonb_typeof(node) == "number", node.astext.cast(sa.Float)))
        return node.astext

    def where(self, terms: list[Term]) -> sa.ColumnElement:
        conditions = []
        for term in terms:
            if term.key is None:
                conditions.append(sa.or_(*(self.runs.c[c].icontains(term.word, autoescape=True) for c in SEARCHED)))
                continue
            if term.key.startswith("metrics."):  # a range of the (name, value) index, not a lookup per run
                m = self.metrics
                keeps = getattr(m.c.value, _OPERATORS[term.op])(term.value)
                chosen = sa.select(m.c.run_id).where((m.c.name == term.key.split(".", 1)[1]) & keeps)
                conditions.append(self.runs.c.id.in_(chosen))
                continue
            kind, _, name = term.key.partition(".")
            column = self.param(name, isinstance(term.value, float)) if kind == "params" else self.runs.c[term.key]
            conditions.append(column.isnot(None) & getattr(column, _OPERATORS[term.op])(term.value))
        return sa.and_(sa.true(), *conditions)

    def sorted_from(self, key: str) -> tuple[sa.FromClause, sa.ColumnElement | None]:
        """What to select from to sort by `key`: a metric joined once (a lookup per run in ORDER BY cost 1.5x)."""
        if not key.startswith("metrics."):
            return self.runs, None
        m = self.metrics.alias("sorted_by")
        joined = self.runs.outerjoin(m, (m.c.run_id == self.runs.c.id) & (m.c.name == key.split(".", 1)[1]))
        return joined, m.c.value

    def order(self, key: str, descending: bool, joined: sa.ColumnElement | None = None) -> list:
        """ORDER BY for `key` (`joined`: the metric's value from `sorted_from`); missing values last."""
        column = joined if joined is not None else self.runs.c[key] if not key.startswith("params.") else None
        if column is None:
            name = key.split(".", 1)[1]
            if self.dialect == "sqlite":
                column = sa.func.json_extract(self.runs.c.params, f'$."{name}"')
            else:
                from sqlalchemy.dialects.postgresql import JSONB

                column = sa.cast(self.runs.c.params, JSONB)[name]  # jsonb orders numbers as numbers
        if key == "started":  # the start-time index, as it is
            return [column.desc(), self.runs.c.id.desc()] if descending else [column.asc(), self.runs.c.id.asc()]
        return [column.is_(None), column.desc() if descending else column.asc(),
                self.runs.c.started.desc(), self.runs.c.id.desc()]
