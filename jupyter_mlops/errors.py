"""User-facing errors: every one names what is wrong (cell, variable, parameter, field) and how to fix it."""
from __future__ import annotations

from dataclasses import dataclass


def a(word: str) -> str:
    """`word` with its indefinite article, for messages that name a type: "an int", "a float"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class MlopsError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits 1."""


@dataclass(frozen=True)
class Problem:
    """One mistake found in a notebook, located at a cell (1-based, as JupyterLab counts them)."""

    message: str
    fix: str = ""
    cell: int | None = None
    snippet: str = ""

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        if self.snippet:
            where += f" ({self.snippet})"
        text = f"{where}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class NotebookError(MlopsError):
    """The notebook's tags or code cannot become a pipeline; carries every problem found, not just the first."""

    def __init__(self, notebook: str, problems: list[Problem]):
        self.notebook = notebook
        self.problems = list(problems)
        lines = [f"{notebook}: {len(self.problems)} problem(s) found, nothing was run"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class ParameterError(MlopsError):
    """A run parameter that the notebook does not declare, or a value of the wrong type."""


class StepFailed(MlopsError):
    """A pipeline step failed; the run is recorded as failed and its partial output notebook kept."""


class StoreError(MlopsError):
    """The store itself failed (damaged, read-only, disk full, unreachable): said in one line naming it."""
