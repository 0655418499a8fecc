"""Workflows: ``omniflow/v1`` definitions chaining plugin handlers, connectors and other
workflows, run durably by the app (``app.workflows``; specs/workflows.md).

::

    definition.py   parse and check a definition (YAML/JSON, JSON Schema, needs, expressions)
    expressions.py  ${{ }} expressions in CEL; secrets only as references
    registry.py     the workflows/ folder: loaded and failed definitions
    engine.py       runs: start, advance, workers, approvals, restart, triggers, webhooks
    connector.py    a connector step's request: secret references recorded, sent through app.egress
    errors.py       the error tree
"""

from omnicore.workflows.definition import FORMAT, Step, Workflow, parse
from omnicore.workflows.engine import SIGNATURE_HEADER, WorkflowRunChanged, Workflows, sign_webhook
from omnicore.workflows.errors import (
    DefinitionError,
    ExpressionError,
    InputInvalid,
    Problem,
    RunStateError,
    WorkflowError,
    WorkflowNotFound,
)
from omnicore.workflows.registry import WorkflowEntry

__all__ = ["FORMAT", "SIGNATURE_HEADER", "DefinitionError", "ExpressionError", "InputInvalid",
           "Problem", "RunStateError", "Step", "Workflow", "WorkflowEntry", "WorkflowError",
           "WorkflowNotFound", "WorkflowRunChanged", "Workflows", "parse", "sign_webhook"]
