"""The base of every config section's model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict"]


class Strict(BaseModel):
    # Unknown keys are typos far more often than intentions: refuse them.
    model_config = ConfigDict(extra="forbid", validate_default=True)
