"""First-class app modules: health and metrics."""

from omnicore.modules.health import (
    CheckResult,
    ComponentHealth,
    HealthModule,
    HealthReport,
    HealthStatus,
)
from omnicore.modules.metrics import MetricsModule

__all__ = [
    "CheckResult",
    "ComponentHealth",
    "HealthModule",
    "HealthReport",
    "HealthStatus",
    "MetricsModule",
]
