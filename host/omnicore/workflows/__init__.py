"""Workflows: ``omniflow/v1`` definitions chaining plugin handlers, connectors and other
workflows, run durably by the app (``app.workflows``; specs/workflows.md).

::

    definition.py   parse and check a definition (YAML/JSON, JSON Schema, needs, expressions)
    expressions.py  ${{ }} expressions in CEL; secrets only as references
    entries.py      the workflows/ folder: loaded and failed definitions
    validation.py   one verdict on a definition text (the CLI's validate, the console's editor)
    files.py        definition files written over what was read only, the replaced one kept
    roundtrip.py    a draft's data written into its file's text, comments and key order kept
    service.py      app.workflows: runs (start, advance, approve, cancel, restart), workers
    advance.py      pure step-advance rules: ready steps, their rows, a run's outcome
    executors.py    one leased step: plugin call, connector call, sleep, sub-workflow
    triggers.py     cron/event triggers, signed webhooks, event waits and their timeouts
    connector.py    a connector step's request: secret references recorded, sent through app.egress
    errors.py       the error tree
"""

from omnicore.workflows.definition import FORMAT, Step, Workflow, parse
from omnicore.workflows.entries import WorkflowEntry
from omnicore.workflows.errors import (
    DefinitionError,
    ExpressionError,
    InputInvalid,
    Problem,
    RunStateError,
    WorkflowError,
    WorkflowNotFound,
)
from omnicore.workflows.service import WorkflowRunChanged, Workflows
from omnicore.workflows.triggers import SIGNATURE_HEADER, sign_webhook

__all__ = ["FORMAT", "SIGNATURE_HEADER", "DefinitionError", "ExpressionError", "InputInvalid",
           "Problem", "RunStateError", "Step", "Workflow", "WorkflowEntry", "WorkflowError",
           "WorkflowNotFound", "WorkflowRunChanged", "Workflows", "parse", "sign_webhook"]
