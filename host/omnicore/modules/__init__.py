"""First-class app modules: health and metrics."""

from omnicore.modules.health import CheckResult, ComponentHealth, HealthModule, HealthReport, Status
from omnicore.modules.metrics import MetricsModule

__all__ = [
    "CheckResult",
    "ComponentHealth",
    "HealthModule",
    "HealthReport",
    "MetricsModule",
    "Status",
]
