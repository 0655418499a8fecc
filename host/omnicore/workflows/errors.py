"""The errors of workflows, under :class:`omnicore.errors.OmniError`.

::

    OmniError
    └── WorkflowError
        ├── DefinitionError     a definition is invalid: every problem with its path and line
        ├── ExpressionError     a ${{ }} expression does not compile or failed to evaluate
        ├── InputInvalid        a run's inputs fail the workflow's input schema (names the field)
        ├── WorkflowNotFound    no workflow of that name is loaded (or it failed to load)
        ├── FileChanged         a definition file changed on disk since the editor opened it
        └── RunStateError       the run or step is not in a state that allows the action
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from omnicore.errors import OmniError

__all__ = ["DefinitionError", "ExpressionError", "FileChanged", "InputInvalid", "Problem",
           "RunStateError", "WorkflowError", "WorkflowNotFound"]


class WorkflowError(OmniError):
    """Anything about a workflow, its definition or its runs."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition: where (``steps[2].uses``), the line, what.

    A ``warning`` does not stop the workflow from loading (a step's plugin the app does not
    have yet may still arrive); an ``error`` does.
    """

    path: str
    message: str
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        at = f"line {self.line}: " if self.line else ""
        warn = "warning: " if self.severity == "warning" else ""
        return f"{warn}{at}{self.path or '(document)'}: {self.message}"


class DefinitionError(WorkflowError):
    """The definition in ``source`` has ``problems`` (all of them, not only the first)."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the workflow definition:\n"
                         f"{lines}")


class ExpressionError(WorkflowError):
    def __init__(self, message: str, *, where: str = "", column: int | None = None) -> None:
        super().__init__(message)
        self.where = where
        self.column = column


class InputInvalid(WorkflowError):
    """The inputs fail the schema; ``field`` is the JSON path of the first bad value."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class WorkflowNotFound(WorkflowError):
    pass


class RunStateError(WorkflowError):
    pass


class FileChanged(WorkflowError):
    """A save was refused: the file is not the one the editor opened (``current`` is the
    digest it has now, None when it is gone)."""

    def __init__(self, message: str, *, current: str | None) -> None:
        super().__init__(message)
        self.current = current
