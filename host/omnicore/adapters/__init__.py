"""Environment adapters: where omnicore runs and the defaults that suit it."""

from omnicore.adapters.detect import KINDS, Environment, cpu_quota, detect

__all__ = ["KINDS", "Environment", "cpu_quota", "detect"]
